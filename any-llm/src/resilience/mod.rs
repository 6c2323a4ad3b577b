//! Resilience as tower layers over any [`ChatService`]: retry, fallback, balance, timeout.
//!
//! A deployment outgrows one machine by putting several endpoints of one model behind one
//! service, and survives a bad minute by retrying and falling back. Each piece here is a
//! plain tower layer (or a constructor), so they stack in any order with each other, with
//! tower's own layers and with the rest of the family:
//!
//! - [`RetryLayer`]: tries again on [`Error::is_retryable`] with exponential backoff and
//!   jitter, waiting at least what the provider asked for ([`Error::retry_after`]).
//! - [`FallbackLayer`]: on failure, asks another service (a second provider, or the local
//!   model) instead.
//! - [`balance`]: spreads requests over several endpoints of one model, choosing the less
//!   loaded of two at random (power of two choices, load = requests and streams in flight)
//!   and resting an endpoint that keeps failing.
//! - [`TimeoutLayer`]: bounds the time to the first chunk, between chunks, and in all,
//!   failing with [`Error::Timeout`].
//!
//! **Streams and retries.** A chat answer is a stream, and a chunk that has reached the
//! caller cannot be taken back. So retry and fallback act only *before the first chunk is
//! delivered*: they wait for the stream's first item, and if that is an error (as when a
//! server accepts the request, then reports overload in its first event), they try again;
//! once a chunk has been handed on, a later error is passed to the caller as it is.
//!
//! ```no_run
//! use std::time::Duration;
//! use any_core::ChatServiceExt;
//! use any_llm::resilience::{balance, FallbackLayer, RetryLayer, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main] async fn main() -> any_core::Result<()> {
//! // Two vLLM servers of one model, balanced; three tries with backoff; a per-try bound on
//! // the wait for the first chunk; and the local model if the cluster is down.
//! let cluster = balance([
//!     any_llm::model("vllm:qwen2.5-7b")?,
//!     any_llm::Provider::openai().base_url("http://10.0.0.2:8000/v1").model("qwen2.5-7b")?,
//! ]);
//! let local = any_llm::model("local")?;
//! let model = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(local))
//!     .layer(RetryLayer::new().max_attempts(3))
//!     .layer(TimeoutLayer::first_chunk(Duration::from_secs(20)))
//!     .service(cluster);
//! println!("{}", model.complete("Hello!").await?);
//! # Ok(()) }
//! ```
//!
//! **Readiness.** Each layer answers `poll_ready` from the services below it (the primary,
//! for a fallback; some endpoint, for a balance), so `LoadShed` or `ConcurrencyLimit` above
//! them sees backpressure. As tower's contract asks, the instance `poll_ready` readied is the
//! one `call` uses, and a clone is not ready until polled.
//!
//! tower's own `timeout` layer also works: it boxes its error, and
//! `.map_err(any_core::Error::from_boxed)` above it brings back [`Error::Timeout`]; but it
//! only bounds the wait for the stream to *start*, where [`TimeoutLayer`] bounds the stream
//! too.

mod balance;
mod fallback;
mod retry;
mod timeout;

pub use balance::{Balance, balance};
pub use fallback::{Fallback, FallbackLayer, FellBack};
pub use retry::{Retry, RetryLayer};
pub use timeout::{Timeout, TimeoutLayer};

#[cfg(doc)]
use any_core::Error;
use any_core::{ChatRequest, ChatService, ChatStream, Result};
use futures_util::StreamExt;
use tower::ServiceExt;

/// Calls `service` (readying it first) and waits for the first item of its stream, as
/// [`first_chunk`].
pub(crate) async fn call_to_first_chunk<S: ChatService>(
    service: S,
    request: ChatRequest,
) -> Result<ChatStream> {
    first_chunk(service.oneshot(request)).await
}

/// Waits for a call's stream and its first item: an error there is returned as the call's
/// error (nothing has reached the caller yet); a chunk is put back in front of the rest of
/// the stream.
pub(crate) async fn first_chunk(
    call: impl std::future::Future<Output = Result<ChatStream>>,
) -> Result<ChatStream> {
    let mut stream = call.await?;
    match stream.next().await {
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(stream.map_stream(move |rest| {
            futures_util::stream::once(std::future::ready(Ok(first))).chain(rest)
        })),
        None => Ok(stream.map_stream(|_| futures_util::stream::empty())),
    }
}

/// The service `poll_ready` readied, leaving a clone in its place: tower's contract is that
/// readiness belongs to the instance that was polled, and a clone is not ready, so the
/// readied one must be the one called; the clone waits for the next `poll_ready`.
pub(crate) fn take_ready<S: Clone>(service: &mut S) -> S {
    let clone = service.clone();
    std::mem::replace(service, clone)
}

/// A number in [0, 1) for jitter and random choices: std's randomly keyed hasher over a
/// counter, so no random-number crate is needed for what needs no cryptographic quality.
pub(crate) fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: std::collections::hash_map::RandomState = Default::default();
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let bits = STATE.with(|s| {
        let mut h = s.build_hasher();
        h.write_u64(n);
        h.finish()
    });
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_units_are_in_range_and_vary() {
        let xs: Vec<f64> = (0..1000).map(|_| super::random_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
