//! The HTTP plumbing the hosted providers share (cargo feature `http`, on by default).
//!
//! One [`HttpClient`] (reqwest over rustls with the `ring` provider, certificates checked
//! against the platform's roots) is shared by every provider of a process unless one asks
//! for its own [`HttpOptions`], so connections are pooled and reused across models.
//!
//! HTTP failures become the typed [`Error`] kinds callers branch on, keeping the provider's
//! own message, by the one mapping every provider and the server's clients share:
//! [`wire::openai::error_from_status`](crate::wire::openai::error_from_status) (its table is on
//! [`ErrorObject::into_error`](crate::wire::openai::ErrorObject::into_error)).
//!
//! Transport failures: a timeout becomes [`Error::Timeout`]; a failed connection, or one
//! broken mid-answer, becomes [`Error::Io`] with the socket's error kind (connection
//! refused, reset, ...), so [`Error::is_retryable`] and fallbacks treat it as transient —
//! the request may well succeed on another attempt or another endpoint.

mod error;
pub mod sse;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use any_core::{Error, Result};
use futures_core::Stream;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use error::{invalid_response, transport_error};

use crate::wire::openai::error_from_status;
use sse::{SseEvent, SseStream};

/// How an [`HttpClient`] connects and how long it waits.
///
/// ```
/// use std::time::Duration;
/// use any_llm::http::HttpOptions;
///
/// let options = HttpOptions::default()
///     .connect_timeout(Duration::from_secs(5))
///     .timeout(Duration::from_secs(120));
/// assert_eq!(options.read_timeout, Some(Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpOptions {
    /// The longest wait to establish a connection (default 10 s).
    pub connect_timeout: Duration,
    /// The longest silence while reading a response: between two chunks of a stream, or
    /// before the first byte (default 300 s, which covers a long prompt on a slow server).
    pub read_timeout: Option<Duration>,
    /// The longest a whole request may take, the streamed answer included (default none:
    /// a long answer streams as long as it keeps coming).
    pub timeout: Option<Duration>,
    /// Offer HTTP/2 (negotiated by ALPN on TLS; needs the `http2` feature; default on when
    /// the feature is).
    pub http2: bool,
    /// The `user-agent` header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(300)),
            timeout: None,
            http2: cfg!(feature = "http2"),
            user_agent: concat!("any-llm/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl HttpOptions {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the read (idle) timeout.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Sets the whole-request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Offers HTTP/2 or not.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }
}

/// A pooled HTTPS client: cheap to clone, every clone shares the connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// The process-wide client with default options, built on first use.
    ///
    /// # Errors
    /// [`Error::Other`] if the TLS configuration cannot be built (no usable root
    /// certificates on this machine, say).
    pub fn shared() -> Result<HttpClient> {
        static SHARED: OnceLock<std::result::Result<HttpClient, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| HttpClient::new(&HttpOptions::default()).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| Error::Other(e.into()))
    }

    /// A client of its own, with `options`.
    ///
    /// # Errors
    /// As [`HttpClient::shared`].
    pub fn new(options: &HttpOptions) -> Result<HttpClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| Error::Other(format!("TLS: cannot load root certificates: {e}").into()))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Other(format!("TLS: {e}").into()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // A preconfigured TLS setup gets no ALPN from reqwest: say what we speak.
        tls.alpn_protocols = if options.http2 && cfg!(feature = "http2") {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.clone())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(t) = options.read_timeout {
            builder = builder.read_timeout(t);
        }
        if let Some(t) = options.timeout {
            builder = builder.timeout(t);
        }
        if !options.http2 {
            builder = builder.http1_only();
        }
        let client = builder
            .build()
            .map_err(|e| Error::Other(format!("cannot build the HTTP client: {e}").into()))?;
        Ok(HttpClient { client })
    }

    /// The reqwest client underneath, for requests of your own.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// POSTs `body` as JSON to `url` with `headers` and returns the response if its status
    /// is a success.
    ///
    /// # Errors
    /// The status's kind (see the [module docs](self)) with the provider's message, or the
    /// transport failure's.
    pub async fn post_json(
        &self,
        provider: &str,
        url: &str,
        headers: &reqwest::header::HeaderMap,
        body: &impl Serialize,
    ) -> Result<reqwest::Response> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidRequest(format!("cannot serialise the request: {e}")))?;
        let request = self
            .client
            .post(url)
            .headers(headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        tracing::debug!(provider, url, "POST");
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(provider, url, e))?;
        check_status(provider, url, response).await
    }

    /// GETs `url` with `headers` and returns the response if its status is a success.
    ///
    /// # Errors
    /// As [`HttpClient::post_json`].
    pub async fn get(
        &self,
        provider: &str,
        url: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<reqwest::Response> {
        let response = self
            .client
            .get(url)
            .headers(headers.clone())
            .send()
            .await
            .map_err(|e| transport_error(provider, url, e))?;
        check_status(provider, url, response).await
    }
}

/// Returns the response when its status is a success, else the error it stands for.
async fn check_status(
    provider: &str,
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(provider, url, e))?;
    Err(error_from_status(
        provider,
        status.as_u16(),
        &headers,
        &body,
    ))
}

/// Reads a whole JSON body as `T`.
///
/// # Errors
/// [`Error::InvalidResponse`] quoting (the start of) the body when it is not a `T`.
pub async fn read_json<T: DeserializeOwned>(
    provider: &str,
    response: reqwest::Response,
) -> Result<T> {
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(provider, &url, e))?;
    parse_json(provider, &bytes)
}

/// Parses `bytes` as `T`, or says what was wrong, quoting them.
pub(crate) fn parse_json<T: DeserializeOwned>(provider: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| invalid_response(provider, &e, bytes))
}

/// The Server-Sent Events of a streamed response body; a broken connection ends the stream
/// with the transport error.
pub fn sse_events(
    provider: &str,
    response: reqwest::Response,
) -> impl Stream<Item = Result<SseEvent>> + Send + 'static + use<> {
    let provider = provider.to_owned();
    let url = response.url().to_string();
    let bytes = futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    SseStream::new(bytes).map(move |event| event.map_err(|e| transport_error(&provider, &url, e)))
}
