//! Retry with exponential backoff and jitter.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use any_core::{ChatRequest, ChatService, ChatStream, Error, Result};
use tower::{Layer, Service};

use super::{call_to_first_chunk, first_chunk, random_unit, take_ready};

type Predicate = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// Retries a request that failed with a retryable error (by default
/// [`Error::is_retryable`]: rate limits, timeouts, 5xx, dropped connections), before the first
/// chunk of its answer is delivered (see the [module docs](super)).
///
/// The wait before try `n + 1` is `initial_backoff * 2^(n-1)`, capped at `max_backoff`,
/// with "equal jitter" (a random half of it is dropped) so that many clients do not retry in
/// step; and never less than the error's [`Error::retry_after`]. A provider asking for a
/// wait longer than `max_retry_after` is not retried: its error is returned at once, so a
/// caller is never held for minutes without knowing.
///
/// ```
/// use std::time::Duration;
/// use any_core::{ChatChunk, ChatServiceExt, ChatStream, Error};
/// use any_llm::resilience::RetryLayer;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use tower::{Layer, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = calls.clone();
/// // A model that is overloaded on its first call.
/// let flaky = service_fn(move |_req| {
///     let n = counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         if n == 0 {
///             return Err(Error::Provider { provider: "x".into(), status: Some(503), message: "busy".into() });
///         }
///         Ok(ChatStream::from_chunks(vec![ChatChunk::text("ok")]))
///     }
/// });
/// let model = RetryLayer::new()
///     .initial_backoff(Duration::from_millis(1))
///     .layer(flaky);
/// assert_eq!(model.complete("hi").await?, "ok");
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryLayer {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    jitter: bool,
    when: Predicate,
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            jitter: true,
            when: Arc::new(Error::is_retryable),
        }
    }
}

impl RetryLayer {
    /// Three tries in all, backoff from 0.5 s doubling up to 30 s, with jitter; waits up to
    /// 60 s when the provider asks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tries in all, the first included (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The wait before the first retry.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// The longest wait between tries (the doubling stops there).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// The longest `retry-after` honoured; a longer one fails at once.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Whether to randomise the waits (on by default).
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Which errors to retry (default [`Error::is_retryable`]).
    pub fn retry_if(mut self, when: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.when = Arc::new(when);
        self
    }

    /// The wait after `failures` failed tries, before the error's own `retry_after`.
    fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        if self.jitter {
            base.mul_f64(0.5 + 0.5 * random_unit())
        } else {
            base
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.clone(),
        }
    }
}

/// The service [`RetryLayer`] makes.
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: RetryLayer,
}

impl<S> Retry<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryLayer) -> Self {
        Retry { inner, policy }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: ChatService> Service<ChatRequest> for Retry<S> {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    /// Ready when the inner service is: backpressure from below reaches the layers above.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        // The first try goes to the service `poll_ready` readied; later tries ready a clone
        // of it each, waiting in the future for its readiness.
        let mut ready = take_ready(&mut self.inner);
        let first = ready.call(request.clone());
        let inner = ready;
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut failures = 0;
            let mut attempt = first_chunk(first).await;
            loop {
                let err = match attempt {
                    Ok(stream) => return Ok(stream),
                    Err(e) => e,
                };
                failures += 1;
                if failures >= policy.max_attempts || !(policy.when)(&err) {
                    return Err(err);
                }
                let asked = err.retry_after().unwrap_or_default();
                if asked > policy.max_retry_after {
                    return Err(err);
                }
                let wait = policy.backoff(failures).max(asked);
                tracing::debug!(attempt = failures, ?wait, error = %err, "retrying");
                tokio::time::sleep(wait).await;
                attempt = call_to_first_chunk(inner.clone(), request.clone()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::{ChatChunk, ChatServiceExt};
    use futures_util::StreamExt;
    use tokio::time::Instant;
    use tower_test::mock;

    fn busy() -> Error {
        Error::Provider {
            provider: "m".into(),
            status: Some(503),
            message: "busy".into(),
        }
    }

    /// A mock behind a retry layer, and a task answering each call it receives in turn.
    fn spawn_mock(
        layer: RetryLayer,
        answers: Vec<Result<Vec<Result<ChatChunk>>>>,
    ) -> (
        impl ChatService + Sync,
        tokio::task::JoinHandle<Vec<(ChatRequest, Instant)>>,
    ) {
        let (service, mut handle) = mock::pair::<ChatRequest, ChatStream>();
        let service = tower::ServiceBuilder::new()
            .map_err(Error::from_boxed)
            .service(service);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let Some((request, respond)) = handle.next_request().await else {
                    break;
                };
                seen.push((request, Instant::now()));
                match answer {
                    Ok(items) => {
                        respond.send_response(ChatStream::new(futures_util::stream::iter(items)))
                    }
                    Err(e) => respond.send_error(e),
                }
            }
            seen
        });
        (layer.layer(service), task)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_with_doubling_backoff() {
        let layer = RetryLayer::new()
            .max_attempts(4)
            .initial_backoff(Duration::from_secs(1))
            .jitter(false);
        let (svc, task) = spawn_mock(
            layer,
            vec![
                Err(busy()),
                Err(busy()),
                Ok(vec![Ok(ChatChunk::text("fine"))]),
            ],
        );
        let start = Instant::now();
        let response = svc.chat("hello").await.unwrap();
        assert_eq!(response.text(), "fine");
        let seen = task.await.unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|(r, _)| r.messages[0].text() == "hello"));
        assert_eq!(seen[1].1 - start, Duration::from_secs(1));
        assert_eq!(seen[2].1 - seen[1].1, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_refuses_waits_too_long() {
        let limited = |secs| Error::RateLimited {
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        let layer = RetryLayer::new()
            .initial_backoff(Duration::from_millis(10))
            .jitter(false);
        let (svc, task) = spawn_mock(
            layer.clone(),
            vec![Err(limited(7)), Ok(vec![Ok(ChatChunk::text("ok"))])],
        );
        let start = Instant::now();
        assert_eq!(svc.complete("x").await.unwrap(), "ok");
        let seen = task.await.unwrap();
        assert_eq!(seen[1].1 - start, Duration::from_secs(7));

        let (svc, task) = spawn_mock(layer, vec![Err(limited(3600))]);
        let err = svc.complete("x").await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
        assert_eq!(task.await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_never_retries_other_errors() {
        let layer = RetryLayer::new().max_attempts(2);
        let (svc, task) = spawn_mock(layer.clone(), vec![Err(busy()), Err(busy()), Err(busy())]);
        let err = svc.complete("x").await.unwrap_err();
        assert!(matches!(
            err,
            Error::Provider {
                status: Some(503),
                ..
            }
        ));
        drop(svc);
        assert_eq!(task.await.unwrap().len(), 2);

        let (svc, task) = spawn_mock(layer, vec![Err(Error::Authentication("bad key".into()))]);
        assert!(matches!(
            svc.complete("x").await,
            Err(Error::Authentication(_))
        ));
        assert_eq!(task.await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_an_error_in_first_chunk_but_not_after_one_was_delivered() {
        let layer = RetryLayer::new();
        let (svc, task) = spawn_mock(
            layer.clone(),
            vec![
                Ok(vec![Err(busy())]),
                Ok(vec![Ok(ChatChunk::text("a")), Ok(ChatChunk::text("b"))]),
            ],
        );
        assert_eq!(svc.complete("x").await.unwrap(), "ab");
        assert_eq!(task.await.unwrap().len(), 2);

        let (svc, task) = spawn_mock(
            layer,
            vec![Ok(vec![Ok(ChatChunk::text("partial")), Err(busy())])],
        );
        let mut stream = svc.stream("x").await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().text, "partial");
        assert!(matches!(
            stream.next().await,
            Some(Err(Error::Provider { .. }))
        ));
        assert_eq!(task.await.unwrap().len(), 1);
    }

    #[test]
    fn jittered_backoff_stays_within_half_and_whole() {
        let layer = RetryLayer::new().initial_backoff(Duration::from_secs(4));
        for _ in 0..100 {
            let d = layer.backoff(2);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
        assert_eq!(
            layer.clone().jitter(false).backoff(40),
            Duration::from_secs(30)
        );
    }
}
