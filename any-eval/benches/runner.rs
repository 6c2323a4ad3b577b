//! The runner's own overhead: cases per second over a service that answers at once, so
//! everything measured is the runner (request building, the stream, metrics, aggregation).
//! Run with
//!
//! ```text
//! cargo bench -p any-eval --bench runner
//! ```

use std::sync::Arc;
use std::time::Instant;

use any_core::{ChatChunk, ChatRequest, ChatStream, FinishReason, Usage};
use any_eval::{Builtin, Case, Dataset, Metric, Runner};

#[tokio::main]
async fn main() {
    let n = 20_000;
    let data = Dataset {
        name: "instant".into(),
        cases: (0..n)
            .map(|i| {
                Case::new(
                    i.to_string(),
                    format!("question {i}: what is the capital of France?"),
                    "The capital of France is Paris.",
                )
            })
            .collect(),
    };
    let instant = tower::service_fn(|_req: ChatRequest| async {
        Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![
            ChatChunk::text("The capital of France "),
            ChatChunk::text("is Paris."),
            ChatChunk::finish(
                FinishReason::Stop,
                Some(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 7,
                    cached_prompt_tokens: None,
                }),
            ),
        ]))
    });
    println!("| metrics | concurrency | cache | cases/s |");
    println!("|---|---:|---|---:|");
    let sets: [&[&str]; 2] = [&["latency"], &["exact", "f1", "rougeL", "bleu", "latency"]];
    for names in sets {
        let metrics: Vec<Arc<dyn Metric>> = names
            .iter()
            .map(|m| Arc::new(Builtin::from_name(m).expect("a metric")) as Arc<dyn Metric>)
            .collect();
        for concurrency in [1, 8] {
            let runner = Runner::new().concurrency(concurrency).progress(false);
            let t = Instant::now();
            let report = runner.run("instant", instant, &data, &metrics).await;
            assert_eq!(report.cases.len(), n);
            println!(
                "| {} | {concurrency} | off | {:.0} |",
                names.join(", "),
                n as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    // With a cache: the first run writes every output, the second reads them back.
    let dir = std::env::temp_dir().join(format!("any-eval-bench-{}", std::process::id()));
    let metrics: Vec<Arc<dyn Metric>> = vec![Arc::new(Builtin::ExactMatch)];
    let runner = Runner::new().concurrency(8).progress(false).cache_dir(&dir);
    for pass in ["write", "read"] {
        let t = Instant::now();
        runner.run("instant", instant, &data, &metrics).await;
        println!(
            "| exact | 8 | {pass} | {:.0} |",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
