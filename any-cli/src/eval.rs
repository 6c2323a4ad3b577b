//! `any eval`: a dataset through one or more models (or guarded stacks), scored, with
//! reports written as JSON, Markdown and HTML.

use std::path::PathBuf;
use std::sync::Arc;

use any_core::{BoxChatService, ChatServiceExt};
use any_eval::{
    BUILTIN_NAMES, Builtin, Dataset, Judge, LogLikelihood, Metric, PERPLEXITY_METRICS, Report,
    RollingLogLikelihood, Runner, Score, TextLogLikelihood, metric_fn,
};
use any_guard::{Guardrail, Guards, ServiceBuilderExt, Subject};
use anyhow::{Context, Result};
use clap::Args;
use tower::ServiceBuilder;

use crate::local::{ModelChoice, open_file};

/// `any eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The dataset: JSONL (one case per line: `input`, `expected`, `choices`, `context`,
    /// `id`, `metadata`) or CSV with a header (`input`, `expected…` columns).
    dataset: PathBuf,
    /// A model to evaluate: a GGUF path, a `provider:model` id, or `local` (the default
    /// model). Repeat to compare several side by side (default: the local default model).
    #[arg(long, short = 'm', value_name = "PATH|ID")]
    model: Vec<PathBuf>,
    /// Also evaluate each model behind the built-in guardrails (prompt injection, invisible
    /// text and PII on the way in, secrets on the way out), as "MODEL + guards".
    #[arg(long)]
    guarded: bool,
    /// A metric (repeatable; default: exact, f1, rougeL, latency). Built in: exact,
    /// contains, contains_all, regex:PATTERN, f1, rouge1, rouge2, rougeL, bleu, levenshtein,
    /// json, schema:PATH (a JSON Schema file), latency, ttft, tokens_per_second, tokens; and
    /// guard:pii|secrets|injection|invisible (a guardrail on the answer).
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// Score multiple-choice cases by log-likelihood (acc and acc_norm, as
    /// lm-evaluation-harness) instead of generating answers: the context is each case's
    /// input, each choice a continuation. Local GGUF models only.
    #[arg(long, conflicts_with_all = ["guarded", "judge", "metrics"])]
    likelihood: bool,
    /// Score each case's text (`input` or `text`) as a document by its log-likelihood,
    /// every token scored, and report token, word and byte perplexity and bits per byte
    /// (weighted over the set, as lm-evaluation-harness). Local GGUF models only.
    #[arg(long, conflicts_with_all = ["guarded", "judge", "metrics", "likelihood"])]
    perplexity: bool,
    /// With --perplexity: the most tokens the model reads at once; longer documents are
    /// scored in rolling windows (default: the model's context window less one).
    #[arg(long, value_name = "N", requires = "perplexity")]
    ctx: Option<usize>,
    /// Also grade every answer with this model as a judge (a GGUF path, a `provider:model`
    /// id or `local`): pass or fail with its reasoning, by --rubric (or a score, with
    /// --judge-scale).
    #[arg(long, value_name = "PATH|ID")]
    judge: Option<PathBuf>,
    /// What the judge checks (default: the answer says what the expected answer says and
    /// adds nothing false).
    #[arg(long, value_name = "TEXT", requires = "judge")]
    rubric: Option<String>,
    /// Have the judge score each answer on this scale of digits (as 1-5) instead of pass or
    /// fail, G-Eval style: the score is the expectation over the scale under the judge's
    /// probabilities at the score's token, mapped onto 0..1; where the judge gives no
    /// log-probabilities, the sampled score, marked so in the report.
    #[arg(long, value_name = "LO-HI", requires = "judge")]
    judge_scale: Option<String>,
    /// Cases in flight at once, per model.
    #[arg(long, value_name = "N", default_value_t = 1)]
    concurrency: usize,
    /// The most tokens per answer.
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 128
    )]
    max_tokens: u32,
    /// Sampling seed sent with every request.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Sampling temperature (default 0: greedy, so reruns agree).
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    temperature: f32,
    /// Where report.json, report.md, report.html and the output cache go.
    #[arg(long, value_name = "DIR", default_value = "eval-out")]
    out: PathBuf,
    /// Call the models even for cases the cache has answered before.
    #[arg(long)]
    no_cache: bool,
}

fn service(value: &std::path::Path) -> Result<(String, BoxChatService)> {
    match ModelChoice::of(value)? {
        ModelChoice::Registry(id) => {
            let model = any_llm::model(&id).with_context(|| format!("model `{id}`"))?;
            Ok((id, model))
        }
        ModelChoice::Local(path) => {
            let path = match path {
                Some(p) => p,
                None => any_llm::local::fetch::default_model_path()?,
            };
            let model = open_file(&path, Default::default())?;
            Ok((model.info().name.clone(), model.boxed_chat()))
        }
    }
}

fn guarded(model: BoxChatService) -> BoxChatService {
    BoxChatService::new(
        ServiceBuilder::new()
            .guard_input(Guards::recommended_input())
            .guard_output(Guards::recommended_output())
            .service(model),
    )
}

/// A `--metric` by name: a built-in one, or `guard:NAME`, a built-in guardrail run on the
/// answer (pass when it finds nothing).
fn metric(name: &str) -> Result<Arc<dyn Metric>> {
    if let Some(g) = name.strip_prefix("guard:") {
        let guard = crate::guard::guardrail(g).with_context(|| format!("--metric {name}"))?;
        return Ok(Arc::new(metric_fn(name.to_owned(), move |_case, out| {
            let verdict = guard.check_now(&Subject::text(&out.text));
            let score = Score::pass(verdict.valid);
            match verdict.explanation {
                Some(why) if !verdict.valid => score.because(why),
                _ => score,
            }
        })));
    }
    Builtin::from_name(name)
        .map(|m| Arc::new(m) as Arc<dyn Metric>)
        .with_context(|| {
            format!(
                "--metric (known: {}, and guard:pii|secrets|injection|invisible)",
                BUILTIN_NAMES.join(", ")
            )
        })
}

/// The local backend as a likelihood scorer.
struct Scorer(any_llm::local::LocalModel);

impl LogLikelihood for Scorer {
    fn log_likelihood<'a>(
        &'a self,
        context: &'a str,
        continuation: &'a str,
    ) -> any_eval::BoxFuture<'a, any_eval::Result<f64>> {
        Box::pin(async move {
            self.0
                .log_likelihood(context, continuation)
                .await
                .map(|l| l.logprob)
                .map_err(|e| any_eval::EvalError::Metric {
                    metric: "log-likelihood".into(),
                    message: e.to_string(),
                })
        })
    }
}

/// The local backend as a document scorer: the text's tokens (no special tokens parsed),
/// after BOS where the model starts texts with it, scored in [`any_eval::rolling_windows`].
struct DocumentScorer {
    model: any_llm::local::LocalModel,
    window: usize,
}

impl RollingLogLikelihood for DocumentScorer {
    fn rolling_log_likelihood<'a>(
        &'a self,
        text: &'a str,
    ) -> any_eval::BoxFuture<'a, any_eval::Result<TextLogLikelihood>> {
        Box::pin(async move {
            let tokenizer = self.model.tokenizer();
            let mut seq = Vec::new();
            if let Some(bos) = tokenizer.bos_id().filter(|_| tokenizer.add_bos()) {
                seq.push(bos);
            }
            seq.extend(tokenizer.encode(
                text,
                any_llm::local::tokenizer::EncodeOptions {
                    add_special: false,
                    parse_special: false,
                },
            ));
            let mut total = TextLogLikelihood {
                logprob: 0.0,
                tokens: 0,
            };
            for w in any_eval::rolling_windows(seq.len(), self.window)? {
                let lps = self
                    .model
                    .token_logprobs(seq[w.start..w.end].to_vec(), w.end - w.start - w.scored)
                    .await
                    .map_err(|e| any_eval::EvalError::Metric {
                        metric: "perplexity".into(),
                        message: e.to_string(),
                    })?;
                total.logprob += lps.iter().map(|&l| f64::from(l)).sum::<f64>();
                total.tokens += lps.len();
            }
            Ok(total)
        })
    }
}

/// A local GGUF model, for the evaluations that score text rather than chat.
fn scoring_model(value: &std::path::Path, flag: &str) -> Result<any_llm::local::LocalModel> {
    let path = match ModelChoice::of(value)? {
        ModelChoice::Local(Some(p)) => p,
        ModelChoice::Local(None) => any_llm::local::fetch::default_model_path()?,
        ModelChoice::Registry(id) => anyhow::bail!(
            "{flag} scores text by its log-likelihood, which needs a local GGUF model, not `{id}`"
        ),
    };
    open_file(&path, Default::default())
}

/// `--perplexity`: each model scores every document.
async fn perplexity(dataset: &Dataset, values: &[PathBuf], ctx: Option<usize>) -> Result<Report> {
    let mut report = Report {
        dataset: dataset.name.clone(),
        metrics: PERPLEXITY_METRICS
            .iter()
            .map(|(m, _)| (*m).to_owned())
            .collect(),
        services: Vec::new(),
        definitions: PERPLEXITY_METRICS
            .iter()
            .map(|(m, d)| ((*m).to_owned(), (*d).to_owned()))
            .collect(),
    };
    for value in values {
        let model = scoring_model(value, "--perplexity")?;
        // A window reads `window` tokens and predicts one more, which must fit the context.
        let most = model.info().context.saturating_sub(1);
        let window = ctx.unwrap_or(most);
        anyhow::ensure!(
            (1..=most).contains(&window),
            "--ctx {window}: a window must read between 1 and {most} tokens (the context \
             window less one) with this model"
        );
        let label = model.info().name.clone();
        let scorer = DocumentScorer { model, window };
        report
            .services
            .push(any_eval::perplexity(&label, &scorer, dataset).await?);
    }
    Ok(report)
}

/// `--likelihood`: each model scores the multiple-choice cases.
async fn likelihood(dataset: &Dataset, values: &[PathBuf]) -> Result<Report> {
    let mut report = Report {
        dataset: dataset.name.clone(),
        metrics: vec!["acc".into(), "acc_norm".into()],
        services: Vec::new(),
        definitions: Default::default(),
    };
    for value in values {
        let model = scoring_model(value, "--likelihood")?;
        let label = model.info().name.clone();
        report
            .services
            .push(any_eval::multiple_choice(&label, &Scorer(model), dataset).await?);
    }
    Ok(report)
}

pub(crate) async fn run(args: EvalArgs) -> Result<()> {
    let dataset = Dataset::open(&args.dataset)?;
    anyhow::ensure!(
        !dataset.cases.is_empty(),
        "{} has no cases",
        args.dataset.display()
    );
    let names = if args.metrics.is_empty() {
        ["exact", "f1", "rougeL", "latency"]
            .map(String::from)
            .to_vec()
    } else {
        args.metrics.clone()
    };
    let mut metrics = names
        .iter()
        .map(|n| metric(n))
        .collect::<Result<Vec<_>>>()?;
    if let Some(value) = &args.judge {
        let (_, judge) = service(value).context("--judge")?;
        let mut judge = Judge::new(judge);
        if let Some(r) = &args.rubric {
            judge = judge.rubric(r.clone());
        }
        if let Some(scale) = &args.judge_scale {
            let (lo, hi) = scale
                .split_once('-')
                .and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)))
                .with_context(|| format!("--judge-scale {scale}: expected LO-HI, as 1-5"))?;
            judge = judge
                .scale(lo, hi)
                .with_context(|| format!("--judge-scale {scale}"))?;
        }
        metrics.push(Arc::new(judge));
    }
    let values = if args.model.is_empty() {
        vec![PathBuf::from("local")]
    } else {
        args.model.clone()
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if args.likelihood {
        let report = likelihood(&dataset, &values).await?;
        return write_reports(&args, &report, false);
    }
    if args.perplexity {
        let report = perplexity(&dataset, &values, args.ctx).await?;
        return write_reports(&args, &report, false);
    }
    let mut services = Vec::new();
    for value in &values {
        let (label, model) = service(value)?;
        if args.guarded {
            services.push((format!("{label} + guards"), guarded(model.clone())));
        }
        services.push((label, model));
    }
    if args.guarded {
        // Bare first, then guarded, model by model.
        for pair in services.chunks_mut(2) {
            pair.reverse();
        }
    }
    let mut runner = Runner::new()
        .concurrency(args.concurrency)
        .seed(args.seed)
        .temperature(args.temperature)
        .max_tokens(args.max_tokens);
    if !args.no_cache {
        runner = runner.cache_dir(args.out.join("cache"));
    }
    let mut report = Report {
        dataset: dataset.name.clone(),
        metrics: metrics.iter().map(|m| m.name()).collect(),
        services: Vec::new(),
        definitions: Default::default(),
    };
    let mut interrupted = false;
    for (label, model) in services {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let run = runner
            .run_until(&label, model, &dataset, &metrics, stop)
            .await;
        interrupted = run.stopped;
        report.services.push(run);
        if interrupted {
            break;
        }
    }
    write_reports(&args, &report, interrupted)
}

/// Writes report.json, report.md and report.html and prints the Markdown.
fn write_reports(args: &EvalArgs, report: &Report, interrupted: bool) -> Result<()> {
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("report.json", report.to_json())?;
    write("report.html", report.to_html())?;
    let md = report.to_markdown();
    write("report.md", md.clone())?;
    println!("{md}");
    eprintln!(
        "wrote report.json, report.md and report.html in {}",
        args.out.display()
    );
    if interrupted {
        anyhow::bail!("interrupted: the reports hold the cases that finished");
    }
    Ok(())
}
