//! Load balancing across several endpoints of one model.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use any_core::{ChatRequest, ChatService, ChatStream, Error, Result};
use futures_util::StreamExt;
use tower::{Service, ServiceExt};

use super::{random_unit, take_ready};

/// One service over several endpoints of the same model: each request goes to the less
/// loaded of two endpoints picked at random ("power of two choices"), where the load is the
/// number of requests *and streams* in flight on it — a streaming answer occupies its server
/// until it ends, so it counts until the stream is dropped.
///
/// An endpoint that fails with a retryable error is rested (left out of the choice) for one
/// second, doubling with each further failure up to 30 s, and is back in the choice as soon
/// as a request to it succeeds; when every endpoint is resting, all are eligible again. The
/// failed request itself is not retried here: put a [`RetryLayer`](super::RetryLayer) above
/// the balance, and its next try will go to a healthy endpoint.
///
/// tower's own `p2c::Balance` does the same choice but needs a `Discover` stream, `Load`
/// wrappers and a `Buffer` to be cloned; this is the one-call form for a fixed list.
///
/// ```
/// use any_core::{ChatChunk, ChatServiceExt, ChatStream, Error};
/// use any_llm::resilience::balance;
/// use tower::service_fn;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// let endpoint = |name: &'static str| {
///     service_fn(move |_req| async move {
///         Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text(name)]))
///     })
/// };
/// let model = balance([endpoint("a"), endpoint("a")]);
/// assert_eq!(model.complete("hi").await?, "a");
/// assert_eq!(model.endpoints(), 2);
/// # Ok(()) }
/// ```
///
/// With no endpoints at all, every request fails with [`Error::InvalidRequest`] saying so.
pub fn balance<S, I>(endpoints: I) -> Balance<S>
where
    S: ChatService,
    I: IntoIterator<Item = S>,
{
    let endpoints: Vec<Endpoint<S>> = endpoints
        .into_iter()
        .map(|service| Endpoint {
            service,
            state: Arc::new(EndpointState::default()),
        })
        .collect();
    Balance {
        endpoints,
        ready: None,
    }
}

/// The service [`balance`] makes. Clones share the load counts and health of each endpoint.
#[derive(Debug)]
pub struct Balance<S> {
    endpoints: Vec<Endpoint<S>>,
    /// The endpoint `poll_ready` found ready, which the next `call` goes to.
    ready: Option<usize>,
}

/// A clone is not ready (tower's contract): it polls its own endpoints before its first call.
impl<S: Clone> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Balance {
            endpoints: self.endpoints.clone(),
            ready: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Endpoint<S> {
    service: S,
    state: Arc<EndpointState>,
}

#[derive(Debug, Default)]
struct EndpointState {
    in_flight: AtomicUsize,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    resting_until: Option<Instant>,
}

impl EndpointState {
    fn resting(&self, now: Instant) -> bool {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.resting_until.is_some_and(|t| t > now)
    }

    fn record(&self, outcome: std::result::Result<(), &Error>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => *health = Health::default(),
            Err(e) if e.is_retryable() => {
                health.failures += 1;
                let rest = Duration::from_secs(1 << (health.failures - 1).min(5))
                    .min(Duration::from_secs(30));
                health.resting_until = Some(Instant::now() + rest);
            }
            // The request's fault, not the endpoint's.
            Err(_) => {}
        }
    }
}

/// Decrements an endpoint's in-flight count when the request or its stream is dropped.
struct InFlight(Arc<EndpointState>);

impl InFlight {
    fn new(state: Arc<EndpointState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S> Balance<S> {
    /// How many endpoints there are.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    /// Requests and streams in flight on each endpoint, in the order given.
    pub fn loads(&self) -> Vec<usize> {
        self.endpoints
            .iter()
            .map(|e| e.state.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// The endpoint for the next request (`None` when there are none).
    /// The endpoints in the order to try them: the power-of-two-choices pick first, then the
    /// rest of the healthy ones (all of them when none is healthy).
    fn preference(&self) -> Vec<usize> {
        let Some(first) = self.pick() else {
            return Vec::new();
        };
        let now = Instant::now();
        let healthy: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| !self.endpoints[i].state.resting(now))
            .collect();
        let rest = if healthy.is_empty() {
            (0..self.endpoints.len()).collect()
        } else {
            healthy
        };
        std::iter::once(first)
            .chain(rest.into_iter().filter(|&i| i != first))
            .collect()
    }

    fn pick(&self) -> Option<usize> {
        let now = Instant::now();
        let healthy: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| !self.endpoints[i].state.resting(now))
            .collect();
        let candidates: Vec<usize> = if healthy.is_empty() {
            (0..self.endpoints.len()).collect()
        } else {
            healthy
        };
        let n = candidates.len();
        if n <= 1 {
            return candidates.first().copied();
        }
        let a = ((random_unit() * n as f64) as usize).min(n - 1);
        let mut b = ((random_unit() * (n - 1) as f64) as usize).min(n - 2);
        if b >= a {
            b += 1;
        }
        let load = |i: usize| {
            self.endpoints[candidates[i]]
                .state
                .in_flight
                .load(Ordering::Relaxed)
        };
        Some(if load(b) < load(a) {
            candidates[b]
        } else {
            candidates[a]
        })
    }
}

impl<S: ChatService> Service<ChatRequest> for Balance<S> {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    /// Ready when some endpoint is, as tower's p2c balancer: the endpoints are polled in
    /// power-of-two-choices order (the pick first, then the other healthy endpoints) and the
    /// first ready one takes the next call, so a busy endpoint is passed over and the balance
    /// is pending only when all are.
    /// An endpoint's error while readying is that endpoint's failure: it is recorded (resting
    /// the endpoint) and the others are tried.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.ready.is_some() || self.endpoints.is_empty() {
            // No endpoints: `call` says so, as an error of the request.
            return Poll::Ready(Ok(()));
        }
        let mut last_error = None;
        let mut pending = false;
        for i in self.preference() {
            let endpoint = &mut self.endpoints[i];
            match endpoint.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.ready = Some(i);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => {
                    endpoint.state.record(Err(&e));
                    last_error = Some(e);
                }
                Poll::Pending => pending = true,
            }
        }
        match last_error {
            // Every endpoint failed to get ready, none is merely busy: nothing will wake us.
            Some(e) if !pending => Poll::Ready(Err(e)),
            _ => Poll::Pending,
        }
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let (i, call) = match self.ready.take() {
            Some(i) => {
                let call: any_core::ChatFuture =
                    Box::pin(take_ready(&mut self.endpoints[i].service).call(request));
                (i, call)
            }
            // Called without `poll_ready` (a broken contract): ready a clone in the future.
            None => {
                let Some(i) = self.pick() else {
                    return Box::pin(std::future::ready(Err(Error::InvalidRequest(
                        "the balance has no endpoints to send the request to".into(),
                    ))));
                };
                let service = self.endpoints[i].service.clone();
                let call: any_core::ChatFuture = Box::pin(service.oneshot(request));
                (i, call)
            }
        };
        let endpoint = self.endpoints[i].state.clone();
        let guard = InFlight::new(endpoint.clone());
        Box::pin(async move {
            let stream = match call.await {
                Ok(stream) => stream,
                Err(e) => {
                    endpoint.record(Err(&e));
                    return Err(e);
                }
            };
            let state = endpoint;
            Ok(stream.map_stream(move |inner| {
                let mut first = true;
                inner.map(move |item| {
                    // The guard lives as long as the stream.
                    let _ = &guard;
                    if std::mem::take(&mut first) {
                        state.record(item.as_ref().map(|_| ()));
                    }
                    item
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::{ChatChunk, ChatServiceExt};

    /// An endpoint that answers with its name, or fails with `fail`.
    fn endpoint(name: &'static str, fail: Option<fn() -> Error>) -> impl ChatService + Sync {
        tower::service_fn(move |_req: ChatRequest| async move {
            match fail {
                Some(f) => Err(f()),
                None => Ok(ChatStream::from_chunks(vec![ChatChunk::text(name)])),
            }
        })
    }

    #[tokio::test]
    async fn spreads_requests_by_load() {
        let svc = balance([endpoint("a", None), endpoint("b", None)]);
        // Hold a stream open on one endpoint: the next requests all go to the other.
        let held = svc.stream("x").await.unwrap();
        let busy = svc.loads().iter().position(|&l| l == 1).unwrap();
        let other = if busy == 0 { "b" } else { "a" };
        for _ in 0..20 {
            assert_eq!(svc.complete("y").await.unwrap(), other);
        }
        drop(held);
        assert_eq!(svc.loads(), [0, 0]);
        // With equal loads both are used.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            seen.insert(svc.complete("z").await.unwrap());
        }
        assert_eq!(seen.len(), 2);
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_rested() {
        let down = || Error::Provider {
            provider: "p".into(),
            status: Some(502),
            message: "bad gateway".into(),
        };
        let svc = balance([endpoint("up", None), endpoint("down", Some(down))]);
        let mut failures = 0;
        for _ in 0..40 {
            match svc.complete("q").await {
                Ok(text) => assert_eq!(text, "up"),
                Err(e) => {
                    assert!(e.is_retryable());
                    failures += 1;
                }
            }
        }
        // Once rested, the failing endpoint gets nothing more for a second.
        assert_eq!(failures, 1);
        assert_eq!(svc.loads(), [0, 0]);
    }

    #[tokio::test]
    async fn no_endpoints_is_an_error_not_a_panic() {
        let svc = balance(Vec::<
            tower::util::BoxCloneSyncService<ChatRequest, ChatStream, Error>,
        >::new());
        assert!(
            matches!(svc.complete("q").await, Err(Error::InvalidRequest(m)) if m.contains("no endpoints"))
        );
    }

    #[tokio::test]
    async fn request_errors_do_not_rest_an_endpoint() {
        let svc = balance([endpoint(
            "only",
            Some(|| Error::InvalidRequest("bad".into())),
        )]);
        for _ in 0..3 {
            assert!(matches!(
                svc.complete("q").await,
                Err(Error::InvalidRequest(_))
            ));
        }
        assert!(!svc.endpoints[0].state.resting(Instant::now()));
    }
}
