//! [`Runner`]: a dataset through a service, with bounded concurrency, retries and a cache.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use any_core::{Accumulator, ChatRequest, ChatService};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::report::{CaseResult, ServiceReport, aggregate};
use crate::{Case, Dataset, Metric, Output};

/// Runs datasets through services and scores the answers.
///
/// ```
/// use any_core::{ChatChunk, ChatRequest, ChatStream, FinishReason};
/// use any_eval::{Builtin, Case, Dataset, Metric, Runner};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_eval::Result<()> {
/// // A service that always answers "4".
/// let four = tower::service_fn(|_req: ChatRequest| async {
///     Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![ChatChunk::text("4")]))
/// });
/// let data = Dataset { name: "sums".into(), cases: vec![Case::new("a", "2+2?", "4"), Case::new("b", "3+3?", "6")] };
/// let metrics: Vec<Arc<dyn Metric>> = vec![Arc::new(Builtin::ExactMatch)];
/// let report = Runner::new().run("four", four, &data, &metrics).await;
/// assert_eq!(report.aggregates["exact"].value, 0.5);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Runner {
    concurrency: usize,
    retries: u32,
    seed: Option<u64>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    cache: Option<PathBuf>,
    progress: bool,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            concurrency: 4,
            retries: 2,
            seed: None,
            temperature: None,
            max_tokens: None,
            cache: None,
            progress: true,
        }
    }
}

impl Runner {
    /// Four cases at a time, two retries of retryable errors, no cache, a progress line on
    /// a terminal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cases in flight at once (at least 1).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Retries of an error the service calls retryable (rate limits, timeouts), with
    /// backoff (the service's `retry_after` when it gives one).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The sampling seed sent with every request.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The temperature sent with every request.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// The most tokens each answer may have.
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Keeps outputs in `dir`, keyed by the service's label and the whole request: a re-run
    /// reads them back instead of calling the service. Errors are not cached.
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(dir.into());
        self
    }

    /// Whether to draw a progress line on standard error (only ever on a terminal).
    #[must_use]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The request sent for `case`.
    pub fn request(&self, case: &Case) -> ChatRequest {
        let mut req = ChatRequest::new(case.messages());
        req.sampling.seed = self.seed;
        req.sampling.temperature = self.temperature;
        req.sampling.max_tokens = self.max_tokens;
        req
    }

    /// Runs every case of `dataset` through `service` (named `label` in the report) and
    /// scores each answer with `metrics`.
    pub async fn run<S: ChatService>(
        &self,
        label: &str,
        service: S,
        dataset: &Dataset,
        metrics: &[Arc<dyn Metric>],
    ) -> ServiceReport {
        self.run_until(label, service, dataset, metrics, std::future::pending())
            .await
    }

    /// [`Runner::run`], stopping when `stop` completes (Ctrl-C, say): cases in flight are
    /// dropped (which cancels them), finished ones are kept and the report says it stopped.
    pub async fn run_until<S: ChatService>(
        &self,
        label: &str,
        service: S,
        dataset: &Dataset,
        metrics: &[Arc<dyn Metric>],
        stop: impl Future<Output = ()>,
    ) -> ServiceReport {
        let started = Instant::now();
        let total = dataset.cases.len();
        let done = AtomicUsize::new(0);
        let show = self.progress && std::io::stderr().is_terminal();
        let mut results: Vec<(usize, CaseResult)> =
            futures_util::stream::iter(dataset.cases.iter().enumerate())
                .map(|(i, case)| {
                    let service = service.clone();
                    let done = &done;
                    async move {
                        let output = self.output(label, service, case).await;
                        let mut scores = BTreeMap::new();
                        let mut metric_errors = BTreeMap::new();
                        if output.error.is_none() {
                            for m in metrics {
                                match m.score(case, &output).await {
                                    Ok(s) => {
                                        scores.insert(m.name(), s);
                                    }
                                    Err(e) => {
                                        metric_errors.insert(m.name(), e.to_string());
                                    }
                                }
                            }
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if show {
                            let mut err = std::io::stderr().lock();
                            let _ = write!(err, "\r{label}: {n}/{total}");
                            let _ = err.flush();
                        }
                        (
                            i,
                            CaseResult {
                                id: case.id.clone(),
                                input: case.input.summary(),
                                expected: case.expected.clone(),
                                output,
                                scores,
                                metric_errors,
                            },
                        )
                    }
                })
                .buffer_unordered(self.concurrency)
                .take_until(stop)
                .collect()
                .await;
        if show {
            eprintln!();
        }
        results.sort_by_key(|(i, _)| *i);
        let cases: Vec<CaseResult> = results.into_iter().map(|(_, r)| r).collect();
        let stopped = cases.len() < total;
        let aggregates = aggregate(dataset, &cases, metrics);
        ServiceReport {
            label: label.to_owned(),
            errors: cases.iter().filter(|c| c.output.error.is_some()).count(),
            elapsed_s: started.elapsed().as_secs_f64(),
            stopped,
            cases,
            aggregates,
        }
    }

    fn cache_path(&self, label: &str, req: &ChatRequest) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(req).ok()?);
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}.json")))
    }

    async fn output<S: ChatService>(&self, label: &str, service: S, case: &Case) -> Output {
        let req = self.request(case);
        let cached = self.cache_path(label, &req);
        if let Some(path) = &cached
            && let Ok(bytes) = std::fs::read(path)
            && let Ok(mut out) = serde_json::from_slice::<Output>(&bytes)
        {
            out.cached = true;
            return out;
        }
        let mut attempt = 0;
        loop {
            match call(service.clone(), req.clone()).await {
                Ok(out) => {
                    if let Some(path) = &cached {
                        // A cache that cannot be written costs a re-run, nothing else.
                        let _ =
                            std::fs::create_dir_all(path.parent().unwrap_or(path)).and_then(|()| {
                                std::fs::write(path, serde_json::to_vec(&out).unwrap_or_default())
                            });
                    }
                    return out;
                }
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    let wait = e
                        .retry_after()
                        .unwrap_or(Duration::from_millis(250 << attempt.min(6)));
                    tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Output {
                        error: Some(e.to_string()),
                        ..Output::default()
                    };
                }
            }
        }
    }
}

/// One call: the stream read to its end, timed.
async fn call<S: ChatService>(service: S, req: ChatRequest) -> any_core::Result<Output> {
    let started = Instant::now();
    let mut stream = service.oneshot(req).await?;
    let mut acc = Accumulator::new();
    let mut ttft = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if ttft.is_none() && !chunk.text.is_empty() {
            ttft = Some(started.elapsed());
        }
        acc.push(chunk);
    }
    let latency = started.elapsed();
    let response = acc.finish()?;
    Ok(Output {
        text: response.text().to_owned(),
        latency,
        ttft,
        usage: response.usage,
        error: None,
        cached: false,
    })
}
