//! The accept loop: HTTP/1.1 connections with a header read timeout, a bound on open
//! connections, a body read timeout, and a shutdown that drains within a grace period.
//!
//! axum's own `serve` sets no timeouts, so a client sending its headers or its body a byte
//! at a time would hold a connection (and, with enough of them, the server) forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::error::ApiError;
use crate::wire::openai::ErrorObject;

/// How long a client may take to send a request's headers, when not set.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body, when not set.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections are open at once, when not set; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long a shutdown lets requests in flight finish, when not set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// After the grace period, how long streams have to send their last events before their
/// connections are closed.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// The connection settings of one server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) header_timeout: Duration,
    pub(super) body_timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) grace: Duration,
    pub(super) max_body_bytes: usize,
}

impl Limits {
    pub(super) fn new(max_body_bytes: usize) -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            grace: DEFAULT_SHUTDOWN_GRACE,
            max_body_bytes,
        }
    }
}

/// Serves `router` until `shutdown` completes; then stops accepting, lets requests in flight
/// finish for the grace period, calls `end_streams` (streams then send their finish and
/// `[DONE]`), and closes whatever is still open a moment later.
pub(super) async fn run<F>(
    listener: TcpListener,
    router: Router,
    shutdown: F,
    limits: Limits,
    end_streams: impl FnOnce(),
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let service = TowerToHyperService::new(router.clone());
        let mut closing = closing_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    if tokio::time::timeout(limits.grace, join_all(&mut conns))
        .await
        .is_err()
    {
        tracing::info!(
            open = conns.len(),
            "shutdown grace period over: ending the streams still open"
        );
        end_streams();
        // What is still open after that (a request still half-sent, say) is closed when
        // `conns` is dropped.
        let _ = tokio::time::timeout(LAST_WORDS, join_all(&mut conns)).await;
    }
    Ok(())
}

async fn join_all(conns: &mut JoinSet<()>) {
    while conns.join_next().await.is_some() {}
}

/// Reads a request's whole body within the body timeout (408 otherwise) and the body limit
/// (413), so a client trickling its body cannot hold a request slot.
pub(super) async fn read_body(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::too_large(limits.max_body_bytes).into_response()
            } else {
                ApiError::invalid(format!("the request body could not be read: {e}"))
                    .into_response()
            };
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorObject::new(
                    "invalid_request_error",
                    format!(
                        "the request body did not arrive within {} s (the server's body read \
                         timeout)",
                        limits.body_timeout.as_secs_f64()
                    ),
                )
                .with_code("request_timeout"),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}
