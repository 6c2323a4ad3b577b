//! Run with `cargo run --release -p example-eval-stacks [DATASET.jsonl] [OUT_DIR]`
//!
//! Compares two stacks on one dataset: the local default model as it is, and the same model
//! behind guardrails (prompt injection and invisible text blocked and PII redacted on the way
//! in, secrets redacted on the way out), each answer also scored 1–5 by the same model as a
//! judge, G-Eval style (the expectation under its probabilities for the five scores). Prints
//! the Markdown report and writes report.html (default dataset: any-eval's smoke set; default
//! output: `eval-stacks-out/`).

use std::sync::Arc;

use any_core::ChatServiceExt;
use any_eval::{Builtin, Dataset, Judge, Metric, Report, Runner};
use any_guard::{Guards, ServiceBuilderExt};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dataset = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../any-eval/data/smoke.jsonl"
        )
        .into()
    });
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "eval-stacks-out".into()));
    let data = Dataset::open(&dataset)?;
    let model = any_llm::local::default_model().await?;
    // ANCHOR: stacks
    let bare = model.clone().boxed_chat();
    let guarded = ServiceBuilder::new()
        .guard_input(Guards::recommended_input())
        .guard_output(Guards::recommended_output())
        .service(model.clone())
        .boxed_chat();
    let mut metrics: Vec<Arc<dyn Metric>> = ["contains", "rougeL", "latency"]
        .into_iter()
        .map(|m| Builtin::from_name(m).map(|m| Arc::new(m) as Arc<dyn Metric>))
        .collect::<Result<_, _>>()?;
    // A judge scoring 1–5 from its log-probabilities; a capable model judges better.
    metrics.push(Arc::new(Judge::new(model).scale(1, 5)?.named("judge 1-5")));
    let runner = Runner::new().seed(0).temperature(0.0).max_tokens(48);
    let report = Report {
        dataset: data.name.clone(),
        metrics: metrics.iter().map(|m| m.name()).collect(),
        services: vec![
            runner.run("bare", bare, &data, &metrics).await,
            runner.run("guarded", guarded, &data, &metrics).await,
        ],
        definitions: Default::default(),
    };
    // ANCHOR_END: stacks
    println!("{}", report.to_markdown());
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.html"), report.to_html())?;
    std::fs::write(out.join("report.json"), report.to_json())?;
    eprintln!("wrote {}", out.join("report.html").display());
    Ok(())
}
