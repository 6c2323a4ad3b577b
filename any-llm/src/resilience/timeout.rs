//! Time limits on a streamed answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use any_core::{ChatChunk, ChatRequest, ChatService, ChatStream, Error, Result};
use futures_core::Stream;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::take_ready;

/// Bounds how long an answer may take, failing with [`Error::Timeout`]: the wait for the
/// first chunk, the silence between two chunks, and the whole answer. Each bound is
/// optional; the clocks start when the request is sent.
///
/// Unlike tower's `timeout` (which stops at the moment the stream is returned, before any
/// token was generated), these bounds follow the stream. A timed-out stream ends with the
/// error, and the service underneath is cancelled by dropping its stream.
///
/// ```
/// use std::time::Duration;
/// use any_core::{ChatChunk, ChatServiceExt, ChatStream, Error};
/// use any_llm::resilience::TimeoutLayer;
/// use tower::{Layer, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A model that never says anything.
/// let silent = service_fn(|_req| async {
///     Ok::<_, Error>(ChatStream::new(futures_util::stream::pending()))
/// });
/// let model = TimeoutLayer::first_chunk(Duration::from_millis(20)).layer(silent);
/// let err = model.chat("hi").await.unwrap_err();
/// assert!(matches!(err, Error::Timeout(_)));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutLayer {
    first_chunk: Option<Duration>,
    idle: Option<Duration>,
    total: Option<Duration>,
}

impl TimeoutLayer {
    /// A bound on the whole answer, from the request to the stream's end.
    pub fn total(limit: Duration) -> Self {
        TimeoutLayer {
            total: Some(limit),
            ..Default::default()
        }
    }

    /// A bound on the wait for the first chunk (the time a server takes to accept the
    /// request and read the prompt).
    pub fn first_chunk(limit: Duration) -> Self {
        TimeoutLayer {
            first_chunk: Some(limit),
            ..Default::default()
        }
    }

    /// Adds (or changes) the bound on the whole answer.
    pub fn with_total(mut self, limit: Duration) -> Self {
        self.total = Some(limit);
        self
    }

    /// Adds (or changes) the bound on the wait for the first chunk.
    pub fn with_first_chunk(mut self, limit: Duration) -> Self {
        self.first_chunk = Some(limit);
        self
    }

    /// Adds (or changes) the bound on the silence between two chunks, after the first.
    pub fn with_idle(mut self, limit: Duration) -> Self {
        self.idle = Some(limit);
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limits: *self,
        }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limits: TimeoutLayer,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with `limits`.
    pub fn new(inner: S, limits: TimeoutLayer) -> Self {
        Timeout { inner, limits }
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

impl<S: ChatService> Service<ChatRequest> for Timeout<S> {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    /// Ready when the inner service is. Like tower's `Timeout`, the bounds start at `call`:
    /// time spent waiting for readiness is backpressure, for the layers above to handle.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let call = take_ready(&mut self.inner).call(request);
        let limits = self.limits;
        Box::pin(async move {
            let start = Instant::now();
            let first_deadline = limits
                .first_chunk
                .map(|d| (start + d, Bound::FirstChunk(d)));
            let total_deadline = limits.total.map(|d| (start + d, Bound::Total(d)));
            let start_deadline = [first_deadline, total_deadline]
                .into_iter()
                .flatten()
                .min_by_key(|(t, _)| *t);
            let stream = match start_deadline {
                Some((deadline, bound)) => match tokio::time::timeout_at(deadline, call).await {
                    Ok(result) => result?,
                    Err(_) => return Err(bound.error()),
                },
                None => call.await?,
            };
            Ok(stream.map_stream(move |chunks| TimedStream {
                inner: Box::pin(chunks),
                total: total_deadline.map(|(t, b)| (Box::pin(tokio::time::sleep_until(t)), b)),
                gap: first_deadline.map(|(t, b)| (Box::pin(tokio::time::sleep_until(t)), b)),
                idle: limits.idle,
                done: false,
            }))
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    FirstChunk(Duration),
    Idle(Duration),
    Total(Duration),
}

impl Bound {
    fn error(self) -> Error {
        let (what, d) = match self {
            Bound::FirstChunk(d) => ("no first chunk within", d),
            Bound::Idle(d) => ("no new chunk within", d),
            Bound::Total(d) => ("the answer did not end within", d),
        };
        Error::Timeout(format!("{what} {:.3}s", d.as_secs_f64()))
    }
}

type Chunks = Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>;

struct TimedStream {
    inner: Chunks,
    total: Option<(Pin<Box<Sleep>>, Bound)>,
    /// The first-chunk deadline until the first chunk, then the idle one.
    gap: Option<(Pin<Box<Sleep>>, Bound)>,
    idle: Option<Duration>,
    done: bool,
}

impl Stream for TimedStream {
    type Item = Result<ChatChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                this.gap = this
                    .idle
                    .map(|d| (Box::pin(tokio::time::sleep(d)), Bound::Idle(d)));
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        for (sleep, bound) in [this.total.as_mut(), this.gap.as_mut()]
            .into_iter()
            .flatten()
        {
            if sleep.as_mut().poll(cx).is_ready() {
                this.done = true;
                return Poll::Ready(Some(Err(bound.error())));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::ChatServiceExt;
    use futures_util::StreamExt;

    /// A model that sends "a" after `first`, then "b" after `second` more, then ends.
    fn slow(first: Duration, second: Duration) -> impl ChatService + Sync {
        tower::service_fn(move |_req: ChatRequest| async move {
            let chunks = futures_util::stream::unfold(0, move |n| async move {
                match n {
                    0 => {
                        tokio::time::sleep(first).await;
                        Some((Ok(ChatChunk::text("a")), 1))
                    }
                    1 => {
                        tokio::time::sleep(second).await;
                        Some((Ok(ChatChunk::text("b")), 2))
                    }
                    _ => None,
                }
            });
            Ok::<_, Error>(ChatStream::new(chunks))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn each_bound_fires_and_names_itself() {
        let s = Duration::from_secs;
        let model = TimeoutLayer::first_chunk(s(5)).layer(slow(s(4), s(100)));
        assert_eq!(model.complete("x").await.unwrap(), "ab");
        let model = TimeoutLayer::first_chunk(s(3)).layer(slow(s(4), s(1)));
        let err = model.complete("x").await.unwrap_err();
        assert!(
            err.to_string().contains("no first chunk within 3.000s"),
            "{err}"
        );

        let model = TimeoutLayer::default()
            .with_idle(s(2))
            .layer(slow(s(10), s(3)));
        let mut stream = model.stream("x").await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().text, "a");
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("no new chunk within 2.000s"),
            "{err}"
        );
        assert!(stream.next().await.is_none());

        let model = TimeoutLayer::total(s(6)).layer(slow(s(4), s(4)));
        let mut stream = model.stream("x").await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().text, "a");
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Timeout(m) if m.contains("did not end within 6.000s")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_start_is_bounded_too() {
        let never = tower::service_fn(|_req: ChatRequest| async {
            std::future::pending::<()>().await;
            Ok::<ChatStream, Error>(ChatStream::from_chunks(vec![]))
        });
        let model = TimeoutLayer::total(Duration::from_secs(1)).layer(never);
        assert!(matches!(model.complete("x").await, Err(Error::Timeout(_))));
    }
}
