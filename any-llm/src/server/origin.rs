//! What keeps a web page from using a local server: the `Host` check (against DNS
//! rebinding), JSON-only request bodies (a page can send `text/plain` without asking, never
//! `application/json`), and CORS answered only for the origins configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::wire::openai::ErrorObject;

/// The host names a server bound to a loopback address answers to when none are set.
pub(super) const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The browser-facing policy: which `Host`s and which CORS origins are answered.
#[derive(Debug, Clone, Default)]
pub(super) struct Origins {
    /// Host names (lowercase, no port) requests may carry; `None` answers any.
    pub(super) hosts: Option<Arc<[String]>>,
    /// Origins given CORS access (exact, or `*` for any); empty: CORS off.
    pub(super) cors: Arc<[String]>,
}

impl Origins {
    fn cors_allows(&self, origin: &str) -> bool {
        self.cors
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// The host name of a `Host` value: lowercase, without the port (`[::1]` keeps its brackets).
fn host_name(value: &str) -> String {
    let value = value.trim();
    let name = if value.starts_with('[') {
        value.find(']').map_or(value, |end| &value[..=end])
    } else {
        value.rsplit_once(':').map_or(value, |(name, _)| name)
    };
    name.to_ascii_lowercase()
}

/// Whether `headers` say the body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Applies [`Origins`] to every request.
pub(super) async fn check(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    if let Some(hosts) = &origins.hosts {
        let given = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
        if let Some(given) = given {
            let name = host_name(&given);
            if !hosts.iter().any(|h| h == "*" || *h == name) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorObject::new(
                        "invalid_request_error",
                        format!(
                            "the Host `{given}` is not one this server answers to ({}); a \
                             server on a loopback address refuses other names so that a web \
                             page cannot reach it through DNS rebinding. Allow a name with \
                             `any serve --allowed-host NAME` (ServerBuilder::allowed_hosts)",
                            hosts.join(", ")
                        ),
                    )
                    .with_code("host_not_allowed"),
                )
                .into_response();
            }
        }
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| origins.cors_allows(o))
        .map(str::to_owned);
    if req.method() == Method::OPTIONS
        && let Some(origin) = &origin
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin);
    }
    if req.method() == Method::POST && !is_json(req.headers()) {
        let found = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or("no Content-Type".to_owned(), |v| {
                format!("`{}`", String::from_utf8_lossy(v.as_bytes()))
            });
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorObject::new(
                "invalid_request_error",
                format!(
                    "the body must be JSON sent with `Content-Type: application/json`; found \
                     {found}"
                ),
            )
            .with_code("unsupported_media_type"),
        )
        .into_response();
    }
    let mut response = next.run(req).await;
    if let Some(origin) = origin
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(origin: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("evil.example:8080"), "evil.example");
    }
}
