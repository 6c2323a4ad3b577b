//! Evaluation for any-suite: datasets, metrics, a runner and reports, over any
//! `ChatService` — a bare model, a guarded stack with memory, an agent, a remote provider.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! - [`Dataset`]: cases from JSONL or CSV ([`Case`]: an input, expected answers, choices,
//!   context, metadata); a malformed line is an error naming the file, line and field.
//! - [`Metric`] is the trait; [`Builtin`] holds the built-in ones by name: exact match,
//!   contains, regex, token F1, ROUGE-1/2/L, BLEU, Levenshtein similarity, JSON validity,
//!   latency, time to first token, tokens per second, token usage; [`Judge`] grades by a
//!   rubric with any model, pass/fail with reasoning or a G-Eval-style score weighted by the
//!   judge's log-probabilities ([`Judge::scale`]).
//! - [`text`]: the text metrics as plain functions; ROUGE as Google's `rouge-score` and BLEU
//!   as `sacrebleu` compute them, checked against both on committed examples.
//! - [`Runner`]: a dataset through a service with bounded concurrency, retries of
//!   retryable errors, an output cache, a seed, a progress line on a terminal, and a stop
//!   signal that keeps what finished.
//! - [`multiple_choice`]: likelihood evaluation (`acc`, `acc_norm` as lm-evaluation-harness
//!   defines them) over any [`LogLikelihood`] model, such as the local backend; and
//!   [`perplexity`] over documents (token, word and byte perplexity, bits per byte, weighted
//!   over the set as lm-evaluation-harness aggregates them) over any
//!   [`RollingLogLikelihood`] model.
//! - [`Report`]: per-case results and aggregates (means with bootstrap intervals) of several
//!   services side by side, as JSON, Markdown and one self-contained HTML page with charts.
//!
//! ```
//! use std::sync::Arc;
//! use any_eval::{Builtin, Dataset, Metric, Report, Runner};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_eval::Result<()> {
//! let data = Dataset::from_jsonl(r#"{"input": "Say hello", "expected": "hello"}"#, "inline")?;
//! let echo = tower::service_fn(|req: any_core::ChatRequest| async move {
//!     let last = req.messages.last().map(|m| m.text().into_owned()).unwrap_or_default();
//!     Ok::<_, any_core::Error>(any_core::ChatStream::from_chunks(vec![any_core::ChatChunk::text(last)]))
//! });
//! let metrics: Vec<Arc<dyn Metric>> = vec![Arc::new(Builtin::from_name("contains")?)];
//! let run = Runner::new().run("echo", echo, &data, &metrics).await;
//! let report = Report {
//!     dataset: data.name,
//!     metrics: vec!["contains".into()],
//!     services: vec![run],
//!     definitions: Default::default(),
//! };
//! assert!(report.to_markdown().contains("| echo | 1 | 0 | 1.000 |"));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod dataset;
mod error;
mod html;
mod judge;
mod likelihood;
mod metric;
mod perplexity;
mod report;
mod runner;
pub mod text;

pub use dataset::{Case, Dataset, Input};
pub use error::{EvalError, Result};
pub use judge::{DEFAULT_RUBRIC, Judge};
pub use likelihood::{LogLikelihood, TARGET_DELIMITER, multiple_choice};
pub use metric::{BUILTIN_NAMES, BoxFuture, Builtin, Metric, Output, Score, metric_fn};
pub use perplexity::{
    PERPLEXITY_METRICS, RollingLogLikelihood, TextLogLikelihood, Window, perplexity,
    rolling_windows, word_count,
};
pub use report::{Aggregate, CaseResult, Report, ServiceReport, mean_with_ci};
pub use runner::Runner;
