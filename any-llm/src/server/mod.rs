//! An OpenAI-compatible HTTP server for any [`ChatService`] (feature `server`).
//!
//! Whatever answers chat requests — a bare model, a guarded stack, a memory-backed stack, an
//! agent — becomes reachable from every OpenAI client:
//!
//! | route | what it does |
//! |---|---|
//! | `POST /v1/chat/completions` | a whole answer, or server-sent events when `"stream": true` |
//! | `POST /v1/embeddings` | embeddings, as floats or base64 |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the model ids this server answers to |
//! | `GET /health` | `{"status": "ok"}`, without authentication |
//!
//! Every failure is an OpenAI error object, `{"error": {"message", "type", "param",
//! "code"}}`, with the status an OpenAI client expects (the table is on
//! [`ErrorObject::from_error`](crate::wire::openai::ErrorObject::from_error)); the server's
//! own refusals are 401 (missing or wrong key), 403 (a `Host` it does not answer to), 404
//! (unknown model or route), 405, 413 (body over the limit), 415 (a POST body not sent as
//! `application/json`) and 503 with `Retry-After` (every request slot taken).
//!
//! # Browsers
//!
//! A server on a loopback address answers only the `Host`s `localhost`, `127.0.0.1` and
//! `[::1]` ([`ServerBuilder::allowed_hosts`] changes that), so a web page cannot reach it by
//! DNS rebinding; POST bodies must be `application/json`, which a page cannot send to
//! another origin without a CORS preflight; and CORS is off until
//! [`ServerBuilder::cors_origins`] names the origins allowed.
//!
//! ```no_run
//! use any_llm::server::Server;
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let model = any_llm::local::default_model().await.map_err(std::io::Error::other)?;
//! let server = Server::builder()
//!     .chat(model.clone())
//!     .embeddings(model)
//!     .models(["local"])
//!     .api_key("secret")
//!     .max_concurrency(8)
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // Any future stops it: here a channel; `any serve` uses `tokio::signal::ctrl_c()`.
//! let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! server.serve(listener, async { stopped.await.ok(); }).await
//! # }
//! ```
//!
//! # Streaming and cancellation
//!
//! A streamed answer starts with a `{"role": "assistant", "content": ""}` delta, carries
//! text and index-addressed tool-call fragments as the service yields them, ends its choice
//! with a `finish_reason`, sends usage in a last chunk with no choices when the client set
//! `stream_options.include_usage`, and closes with `data: [DONE]`. The server waits for the
//! service's first chunk before answering, so an error that comes at once still gets its
//! proper status; an error later in the stream is sent as an `{"error": ...}` event and the
//! stream ends without `[DONE]`. When the client goes away, the [`ChatStream`] is dropped,
//! which cancels generation.
//!
//! # Bounded concurrency
//!
//! At most [`ServerBuilder::max_concurrency`] requests are answered at once (a stream counts
//! until it ends). One more is refused at once with **503** and `Retry-After: 1` rather than
//! queued: the server, not the client, is out of capacity, so it is not a 429 rate limit,
//! and a client (OpenAI's retry both) or a load balancer can go elsewhere instead of waiting
//! blind in a queue.
//!
//! [`ChatStream`]: any_core::ChatStream

mod error;
mod handlers;
mod listen;
mod origin;
mod sse;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use any_core::{
    ChatRequest, ChatService, ChatStream, EmbedRequest, EmbedResponse, EmbedService, Error,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::util::BoxCloneService;

/// The body limit when none is set: 4 MiB, room for long conversations and a few images as
/// `data:` URLs.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

/// The concurrency bound when none is set.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;

pub use listen::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
};

/// The model id when none is set.
pub const DEFAULT_MODEL_ID: &str = "default";

type ChatBox = BoxCloneService<ChatRequest, ChatStream, Error>;
type EmbedBox = BoxCloneService<EmbedRequest, EmbedResponse, Error>;

/// A router with default settings serving `chat` under the model id
/// [`DEFAULT_MODEL_ID`]: the shortest way to put a chat service on the network. Use
/// [`Server::builder`] for embeddings, model ids, a key and limits.
///
/// ```
/// use any_core::{ChatChunk, ChatRequest, ChatStream, Error};
///
/// let echo = tower::service_fn(|req: ChatRequest| async move {
///     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text(req.messages.len().to_string())]))
/// });
/// let app: axum::Router = any_llm::server::router(echo);
/// ```
pub fn router<S: ChatService>(chat: S) -> Router {
    Server::builder().chat(chat).build().into_router()
}

/// Serves `router` on `listener` (HTTP/1.1) until `shutdown` completes, then stops
/// accepting connections and waits for the requests in flight to finish, for at most
/// [`DEFAULT_SHUTDOWN_GRACE`]. A client gets [`DEFAULT_HEADER_TIMEOUT`] to send its headers;
/// at most [`DEFAULT_MAX_CONNECTIONS`] connections are open at once. [`Server::serve`] does
/// the same with its own settings, and also ends its streams properly at the end of the
/// grace period and bounds how long a body may take.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let limits = listen::Limits::new(DEFAULT_MAX_BODY_BYTES);
    listen::run(listener, router, shutdown, limits, || {}).await
}

/// A configured OpenAI-compatible server; build one with [`Server::builder`], then
/// [`Server::serve`] it or take its [`Server::into_router`] to nest in a larger axum app.
#[derive(Clone)]
pub struct Server {
    state: AppState,
    limits: listen::Limits,
    hosts: Option<Vec<String>>,
    cors: Vec<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.state.0;
        f.debug_struct("Server")
            .field("chat", &s.chat.is_some())
            .field("embeddings", &s.embed.is_some())
            .field("models", &s.models)
            .field("api_key", &s.api_key.as_ref().map(|_| "<set>"))
            .field("max_concurrency", &s.max_concurrency)
            .field("limits", &self.limits)
            .field("allowed_hosts", &self.hosts)
            .field("cors_origins", &self.cors)
            .finish()
    }
}

impl Server {
    /// A builder with no services, model id [`DEFAULT_MODEL_ID`], no key,
    /// [`DEFAULT_MAX_BODY_BYTES`] and [`DEFAULT_MAX_CONCURRENCY`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            chat: None,
            embed: None,
            models: Vec::new(),
            api_key: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            limits: listen::Limits::new(DEFAULT_MAX_BODY_BYTES),
            hosts: None,
            cors: Vec::new(),
        }
    }

    /// The model ids this server answers to; the first is the one requests without a model
    /// get.
    pub fn models(&self) -> &[String] {
        &self.state.0.models
    }

    /// The axum router, to serve or to nest in a larger app. It checks `Host` only against
    /// names set with [`ServerBuilder::allowed_hosts`] ([`Server::serve`] adds the loopback
    /// names when it listens on a loopback address).
    pub fn into_router(self) -> Router {
        let origins = origin::Origins {
            hosts: self.hosts.map(Into::into),
            cors: self.cors.into(),
        };
        let v1 = Router::new()
            .route("/v1/chat/completions", post(handlers::chat_completions))
            .route("/v1/embeddings", post(handlers::embeddings))
            .route("/v1/models", get(handlers::list_models))
            .route("/v1/models/{id}", get(handlers::get_model))
            .route_layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                handlers::authorize,
            ));
        Router::new()
            .merge(v1)
            .route("/health", get(handlers::health))
            .fallback(handlers::not_found)
            .method_not_allowed_fallback(handlers::method_not_allowed)
            .layer(DefaultBodyLimit::max(self.limits.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                self.limits,
                listen::read_body,
            ))
            .layer(axum::middleware::from_fn_with_state(origins, origin::check))
            .with_state(self.state)
    }

    /// Serves on `listener` until `shutdown` completes; see [`serve`]. On a loopback
    /// address, and unless [`ServerBuilder::allowed_hosts`] says otherwise, only requests
    /// whose `Host` is `localhost`, `127.0.0.1` or `[::1]` are answered (403 otherwise), so a
    /// web page cannot reach the server by DNS rebinding.
    ///
    /// # Errors
    /// An I/O error from the listener.
    pub async fn serve<F>(mut self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.hosts.is_none() && listener.local_addr()?.ip().is_loopback() {
            self.hosts = Some(
                origin::LOOPBACK_HOSTS
                    .iter()
                    .map(|h| (*h).to_owned())
                    .collect(),
            );
        }
        let limits = self.limits;
        let state = self.state.clone();
        let end_streams = move || {
            let _ = state.0.ending.send(true);
        };
        listen::run(listener, self.into_router(), shutdown, limits, end_streams).await
    }
}

/// Configures a [`Server`]; see [`Server::builder`].
#[must_use = "a builder does nothing until .build() is called"]
pub struct ServerBuilder {
    chat: Option<ChatBox>,
    embed: Option<EmbedBox>,
    models: Vec<String>,
    api_key: Option<String>,
    max_concurrency: usize,
    limits: listen::Limits,
    hosts: Option<Vec<String>>,
    cors: Vec<String>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("chat", &self.chat.is_some())
            .field("embeddings", &self.embed.is_some())
            .field("models", &self.models)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("max_concurrency", &self.max_concurrency)
            .field("limits", &self.limits)
            .field("allowed_hosts", &self.hosts)
            .field("cors_origins", &self.cors)
            .finish()
    }
}

impl ServerBuilder {
    /// Serves `service` at `/v1/chat/completions`. Without one, that route answers 404.
    pub fn chat<S: ChatService>(mut self, service: S) -> Self {
        self.chat = Some(BoxCloneService::new(service));
        self
    }

    /// Serves `service` at `/v1/embeddings`. Without one, that route answers 404.
    pub fn embeddings<S: EmbedService>(mut self, service: S) -> Self {
        self.embed = Some(BoxCloneService::new(service));
        self
    }

    /// The model ids clients may ask for, listed by `/v1/models`; a request naming another
    /// is refused with 404 `model_not_found`.
    ///
    /// The first id names the services' own model: a request for it (or for no model)
    /// reaches the service with [`ChatRequest::model`] unset. A request for any other listed
    /// id carries that id, for services that serve several. Default: [`DEFAULT_MODEL_ID`].
    pub fn models<I, T>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.models = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Requires `Authorization: Bearer <key>` on every `/v1` route (401 otherwise).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The largest request body accepted (413 beyond). Default [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// How long a client may take to send a request's headers; the connection is closed
    /// after that. Default [`DEFAULT_HEADER_TIMEOUT`].
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's body; 408 after that. Default
    /// [`DEFAULT_BODY_TIMEOUT`].
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_timeout = timeout;
        self
    }

    /// How many connections are open at once (at least 1); more wait in the listen backlog
    /// until one closes. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections.max(1);
        self
    }

    /// How long a shutdown lets requests in flight finish. After it, each open stream ends
    /// with `finish_reason: "length"` (and its usage, and `[DONE]`), and a moment later the
    /// connections still open are closed. Default [`DEFAULT_SHUTDOWN_GRACE`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.limits.grace = grace;
        self
    }

    /// How many requests are answered at once (a stream counts until it ends); one more is
    /// refused with 503 and `Retry-After: 1`. At least 1. Default
    /// [`DEFAULT_MAX_CONCURRENCY`].
    pub fn max_concurrency(mut self, requests: usize) -> Self {
        self.max_concurrency = requests.max(1);
        self
    }

    /// The host names (without port; `*` for any) a request's `Host` may carry; others get
    /// 403 `host_not_allowed`. Default: on a loopback address `localhost`, `127.0.0.1` and
    /// `[::1]` (against DNS rebinding), elsewhere any.
    pub fn allowed_hosts<I, T>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let hosts = hosts.into_iter().map(|h| h.into().to_ascii_lowercase());
        self.hosts = Some(hosts.collect());
        self
    }

    /// Origins (`https://app.example`, or `*` for any) whose web pages may call the server:
    /// CORS preflights from them are answered and responses carry
    /// `Access-Control-Allow-Origin`. Default: none, so browsers keep other origins' pages
    /// from reading answers.
    pub fn cors_origins<I, T>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.cors = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        let models = if self.models.is_empty() {
            vec![DEFAULT_MODEL_ID.to_owned()]
        } else {
            self.models
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Server {
            state: AppState(Arc::new(Shared {
                chat: self.chat.map(Mutex::new),
                embed: self.embed.map(Mutex::new),
                models,
                api_key: self.api_key,
                slots: Arc::new(Semaphore::new(self.max_concurrency)),
                max_concurrency: self.max_concurrency,
                max_body_bytes: self.limits.max_body_bytes,
                created,
                ending: tokio::sync::watch::Sender::new(false),
            })),
            limits: self.limits,
            hosts: self.hosts,
            cors: self.cors,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState(Arc<Shared>);

struct Shared {
    // Behind a mutex only to be `Sync` (axum's state must be) without asking it of the
    // service: each request locks just long enough to clone its own copy.
    chat: Option<Mutex<ChatBox>>,
    embed: Option<Mutex<EmbedBox>>,
    models: Vec<String>,
    api_key: Option<String>,
    slots: Arc<Semaphore>,
    max_concurrency: usize,
    max_body_bytes: usize,
    created: u64,
    /// Set at the end of a shutdown's grace period; open streams watch it.
    ending: tokio::sync::watch::Sender<bool>,
}

fn clone_service<T: Clone>(slot: &Mutex<T>) -> T {
    // A panic while cloning cannot leave a service half-written: the lock only guards a
    // clone, so a poisoned lock is still a good service.
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Serialises a response body. Our wire types always serialise; should one ever fail, the
/// client still gets a JSON error rather than a panic.
fn json_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(v) => Bytes::from(v),
        Err(e) => {
            tracing::error!(error = %e, "a response did not serialise");
            Bytes::from_static(
                br#"{"error":{"message":"the response did not serialise","type":"server_error","param":null,"code":null}}"#,
            )
        }
    }
}
