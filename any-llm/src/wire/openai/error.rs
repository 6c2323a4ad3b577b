//! The error object, `{"error": {"message", "type", "param", "code"}}`, and its mapping to and
//! from [`any_core::Error`] and HTTP status codes.
//!
//! This is the only place an HTTP error answer becomes an [`Error`]: the HTTP providers
//! ([`error_from_status`]), their streams' error events and anyone holding an
//! [`ErrorObject`] ([`ErrorObject::into_error`]) all go through the same rules, so the same
//! answer is the same error whichever way it arrives.

use std::time::{Duration, SystemTime};

use any_core::Error;
use http::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// How many characters of an error body that is not an error object an error quotes: enough
/// for a proxy's HTML page to say who answered, not the whole page.
const QUOTE: usize = 500;

/// The body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorObject,
}

/// What went wrong, as OpenAI-compatible servers say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// For a person.
    #[serde(default, deserialize_with = "text")]
    pub message: String,
    /// The kind: `"invalid_request_error"`, `"authentication_error"`, `"rate_limit_error"`,
    /// `"server_error"`, ...
    #[serde(rename = "type", default, deserialize_with = "string_or_number")]
    pub kind: Option<String>,
    /// The request parameter at fault, if one is.
    #[serde(default, deserialize_with = "string_or_number")]
    pub param: Option<String>,
    /// A machine-readable code: `"context_length_exceeded"`, `"model_not_found"`, ... Some
    /// servers send a number here; it is kept as its text.
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
    /// Any other fields the server sent, such as llama.cpp's `n_prompt_tokens` and `n_ctx`
    /// (which [`ErrorObject::into_error`] reads as the token counts).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message field, whatever JSON the server put there.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(string_or_number(d)?.unwrap_or_default())
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

impl ErrorObject {
    /// An error of `kind` saying `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorObject {
            message: message.into(),
            kind: Some(kind.into()),
            param: None,
            code: None,
            extra: Map::new(),
        }
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Wraps it as a response body.
    pub fn into_response(self) -> ErrorResponse {
        ErrorResponse { error: self }
    }

    /// The HTTP status and error object a server answers with for `err`:
    ///
    /// | error | status | type | code |
    /// |---|---|---|---|
    /// | invalid request | 400 | `invalid_request_error` | — |
    /// | context length exceeded | 400 | `invalid_request_error` | `context_length_exceeded` |
    /// | blocked by a guardrail | 400 | `invalid_request_error` | `content_blocked` |
    /// | unsupported | 400 | `invalid_request_error` | `unsupported` |
    /// | authentication | 401 | `authentication_error` | `invalid_api_key` |
    /// | model not found | 404 | `invalid_request_error` | `model_not_found` |
    /// | rate limited | 429 | `rate_limit_error` | `rate_limit_exceeded` |
    /// | an upstream provider's error | its status (502 if none or not an error status) | as its status | — |
    /// | invalid upstream response | 502 | `server_error` | `invalid_response` |
    /// | timeout | 504 | `server_error` | `timeout` |
    /// | anything else (model, I/O, other) | 500 | `server_error` | — |
    ///
    /// A rate-limited error's `retry_after` is not part of the body; send it as the
    /// `Retry-After` header.
    pub fn from_error(err: &Error) -> (u16, ErrorObject) {
        const INVALID: &str = "invalid_request_error";
        const SERVER: &str = "server_error";
        match err {
            Error::InvalidRequest(m) => (400, Self::new(INVALID, m)),
            Error::ContextLengthExceeded { message, .. } => (
                400,
                Self::new(INVALID, message.clone())
                    .with_param("messages")
                    .with_code("context_length_exceeded"),
            ),
            Error::Blocked(_) => (
                400,
                Self::new(INVALID, err.to_string()).with_code("content_blocked"),
            ),
            Error::Unsupported(m) => (
                400,
                Self::new(INVALID, format!("unsupported: {m}")).with_code("unsupported"),
            ),
            Error::Authentication(m) => (
                401,
                Self::new("authentication_error", m).with_code("invalid_api_key"),
            ),
            Error::ModelNotFound(m) => (
                404,
                Self::new(INVALID, format!("model not found: {m}"))
                    .with_param("model")
                    .with_code("model_not_found"),
            ),
            Error::RateLimited { message, .. } => (
                429,
                Self::new("rate_limit_error", message.clone()).with_code("rate_limit_exceeded"),
            ),
            Error::Provider { status, .. } => {
                let status = status.filter(|s| (400..=599).contains(s)).unwrap_or(502);
                let kind = match status {
                    401 | 403 => "authentication_error",
                    429 => "rate_limit_error",
                    400..=499 => INVALID,
                    _ => SERVER,
                };
                (status, Self::new(kind, err.to_string()))
            }
            Error::InvalidResponse(_) => (
                502,
                Self::new(SERVER, err.to_string()).with_code("invalid_response"),
            ),
            Error::Timeout(_) => (504, Self::new(SERVER, err.to_string()).with_code("timeout")),
            _ => (500, Self::new(SERVER, err.to_string())),
        }
    }

    /// Reads an error answer's body, whatever shape the server gave it: this object under
    /// `"error"` (OpenAI, and Anthropic's `{"type": "error", "error": {...}}`), the object's
    /// fields at the top level (older vLLM), a bare `{"error": "text"}` (Ollama),
    /// `{"message": ...}`, `{"detail": ...}` (FastAPI), or anything else, quoted as the message
    /// (cut at 500 characters, saying how long it was). Never fails: what cannot be parsed
    /// becomes the message.
    ///
    /// ```
    /// use any_llm::wire::openai::ErrorObject;
    ///
    /// let e = ErrorObject::from_body(br#"{"error": "model 'x' not found"}"#);
    /// assert_eq!(e.message, "model 'x' not found");
    /// let e = ErrorObject::from_body(b"<html>Bad Gateway</html>");
    /// assert_eq!(e.message, "<html>Bad Gateway</html>");
    /// ```
    pub fn from_body(body: &[u8]) -> ErrorObject {
        let raw = || ErrorObject {
            message: quote(String::from_utf8_lossy(body).trim()),
            kind: None,
            param: None,
            code: None,
            extra: Map::new(),
        };
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return raw();
        };
        let Value::Object(top) = &json else {
            return raw();
        };
        let object = match top.get("error") {
            Some(e @ Value::Object(_)) => e,
            _ => &json,
        };
        let mut error = ErrorObject::deserialize(object).unwrap_or_else(|_| raw());
        if error.message.is_empty() {
            let fallback = ["error", "detail", "message"]
                .iter()
                .filter_map(|k| top.get(*k))
                .find_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null | Value::Object(_) => None,
                    other => Some(other.to_string()),
                });
            if let Some(message) = fallback {
                error.message = message;
            }
        }
        error
    }

    /// The typed error for this object answered with HTTP `status` by `provider`, keeping the
    /// provider's message (prefixed with `provider`, so an error that went through a fallback
    /// says where it came from). `retry_after` is the wait the answer asked for (see
    /// [`retry_after`]).
    ///
    /// | status | kind |
    /// |---|---|
    /// | 400, 413, 422 saying the context is too long | [`Error::ContextLengthExceeded`], with the token counts from llama.cpp's `n_prompt_tokens`/`n_ctx` or else from the message's wording |
    /// | other 400, 422 | [`Error::InvalidRequest`] |
    /// | other 413 | [`Error::InvalidRequest`], "request too large" |
    /// | 401 | [`Error::Authentication`] |
    /// | 403 | [`Error::Authentication`], "permission denied": the key is valid but lacks the permission, never worth a retry |
    /// | 404 about the model | [`Error::ModelNotFound`] |
    /// | 408, 504 | [`Error::Timeout`] (naming the status): time ran out, whether here or at a gateway |
    /// | 429 for an exhausted quota (`insufficient_quota`) | [`Error::Provider`]: waiting does not fix it, so not retryable |
    /// | other 429 | [`Error::RateLimited`] with `retry_after` |
    /// | anything else (other 404s, 5xx, Anthropic's 529) | [`Error::Provider`] with the status (retryable when 5xx) |
    ///
    /// "Too long" is the code `context_length_exceeded` or `string_above_max_length`, the type
    /// `exceed_context_size_error` (llama.cpp), or the message's wording ("maximum context
    /// length", "prompt is too long", "exceeds the available context size", ...). An empty
    /// message becomes "HTTP {status} with no message".
    ///
    /// ```
    /// use any_core::Error;
    /// use any_llm::wire::openai::ErrorObject;
    ///
    /// let body = br#"{"type":"error","error":{"type":"invalid_request_error",
    ///     "message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
    /// let err = ErrorObject::from_body(body).into_error(400, None, "anthropic");
    /// assert!(matches!(err, Error::ContextLengthExceeded { requested: Some(208310), limit: Some(200000), .. }));
    /// ```
    pub fn into_error(self, status: u16, retry_after: Option<Duration>, provider: &str) -> Error {
        let context = self.is_context_length();
        let quota = self.code.as_deref() == Some("insufficient_quota")
            || self.kind.as_deref() == Some("insufficient_quota");
        let about_model = self.code.as_deref() == Some("model_not_found")
            || self.param.as_deref() == Some("model")
            || self.message.to_lowercase().contains("model");
        let count = |k: &str| self.extra.get(k)?.as_u64().map(|n| n as usize);
        let fields = (count("n_prompt_tokens"), count("n_ctx"));
        let message = if self.message.trim().is_empty() {
            format!("HTTP {status} with no message")
        } else {
            self.message
        };
        match status {
            400 | 413 | 422 if context => {
                let (requested, limit) = match fields {
                    (None, None) => token_counts(&message),
                    counts => counts,
                };
                Error::ContextLengthExceeded {
                    message: format!("{provider}: {message}"),
                    requested,
                    limit,
                }
            }
            400 | 422 => Error::InvalidRequest(format!("{provider}: {message}")),
            413 => Error::InvalidRequest(format!("{provider}: request too large: {message}")),
            401 => Error::Authentication(format!("{provider}: {message}")),
            403 => Error::Authentication(format!("{provider}: permission denied: {message}")),
            404 if about_model => Error::ModelNotFound(format!("{provider}: {message}")),
            408 | 504 => Error::Timeout(format!("{provider} (HTTP {status}): {message}")),
            429 if !quota => Error::RateLimited {
                message: format!("{provider}: {message}"),
                retry_after,
            },
            _ => Error::Provider {
                provider: provider.to_owned(),
                status: Some(status),
                message,
            },
        }
    }

    fn is_context_length(&self) -> bool {
        if matches!(
            self.code.as_deref(),
            Some("context_length_exceeded" | "string_above_max_length")
        ) || self.kind.as_deref() == Some("exceed_context_size_error")
        {
            return true;
        }
        let m = self.message.to_lowercase();
        [
            "context length",
            "context_length",
            "context window",
            "context size",
            "maximum context",
            "prompt is too long",
            "too many tokens",
            "exceeds the model's",
            "input is too long",
        ]
        .iter()
        .any(|p| m.contains(p))
    }
}

/// The error an unsuccessful HTTP answer stands for: its body read by
/// [`ErrorObject::from_body`], its wait by [`retry_after`], mapped by
/// [`ErrorObject::into_error`] (see there for the table).
///
/// ```
/// use any_core::Error;
/// use any_llm::wire::openai::error_from_status;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3".parse()?);
/// let body = br#"{"error":{"message":"Slow down","type":"rate_limit_error"}}"#;
/// let err = error_from_status("openai", 429, &headers, body);
/// assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(3)));
/// assert_eq!(err.to_string(), "rate limited (retry after 3.0s): openai: Slow down");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn error_from_status(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    ErrorObject::from_body(body).into_error(status, retry_after(headers), provider)
}

/// The wait an answer asks for: `retry-after-ms` (milliseconds, sent by OpenAI and Azure),
/// else `retry-after` as seconds (`"2"`, `"0.5"`) or as an HTTP date (one in the past means no
/// wait). `None` when neither says anything usable.
///
/// ```
/// use any_llm::wire::openai::retry_after;
/// use http::HeaderMap;
/// use std::time::Duration;
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse()?);
/// assert_eq!(retry_after(&h), Some(Duration::ZERO)); // long past
/// h.insert("retry-after-ms", "1500".parse()?);
/// assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && let Ok(wait) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(wait);
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `(requested, limit)` token counts from the wording providers use: OpenAI's "maximum
/// context length is 4097 tokens. However, you requested 5000 tokens", Anthropic's
/// "208310 tokens > 200000 maximum", llama.cpp's "(5000 tokens) exceeds the available
/// context size (4096 tokens)".
fn token_counts(message: &str) -> (Option<usize>, Option<usize>) {
    let numbers: Vec<(usize, usize)> = {
        let mut out = Vec::new();
        let bytes = message.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b',') {
                    i += 1;
                }
                let digits: String = message[start..i].chars().filter(|c| *c != ',').collect();
                if let Ok(n) = digits.parse() {
                    out.push((start, n));
                }
            } else {
                i += 1;
            }
        }
        out
    };
    let lower = message.to_ascii_lowercase();
    let near = |words: &[&str]| {
        // The number closest after one of `words`.
        words.iter().find_map(|w| {
            let at = lower.find(w)? + w.len();
            numbers
                .iter()
                .find(|(pos, _)| *pos >= at && *pos - at < 40)
                .map(|(_, n)| *n)
        })
    };
    if let Some(gt) = lower.find(" > ") {
        // "N tokens > M maximum"
        let before = numbers.iter().rev().find(|(p, _)| *p < gt).map(|(_, n)| *n);
        let after = numbers.iter().find(|(p, _)| *p > gt).map(|(_, n)| *n);
        if before.is_some() && after.is_some() {
            return (before, after);
        }
    }
    let limit = near(&[
        "maximum context length is",
        "context size",
        "context window",
        "limit is",
        "maximum",
    ]);
    let requested = near(&[
        "you requested",
        "resulted in",
        "requested",
        "prompt has",
        "request (",
        "input (",
    ])
    .or_else(|| {
        // llama.cpp: "the request exceeds the available context size" with the count first.
        numbers
            .first()
            .map(|(_, n)| *n)
            .filter(|n| Some(*n) != limit)
    });
    (requested, limit)
}

/// `text` cut at [`QUOTE`] characters for quoting in an error, saying how long it was.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::Verdict;

    /// The kind's name, for comparing kinds.
    fn kind_of(e: &Error) -> &'static str {
        match e {
            Error::InvalidRequest(_) => "invalid",
            Error::Authentication(_) => "auth",
            Error::ModelNotFound(_) => "model",
            Error::RateLimited { .. } => "rate",
            Error::ContextLengthExceeded { .. } => "context",
            Error::Provider { .. } => "provider",
            Error::Timeout(_) => "timeout",
            _ => "other",
        }
    }

    #[test]
    fn errors_map_to_statuses_and_back_to_their_kind() {
        // (error, status, type, the kind a client reads back: a server's own failures come
        // back as the provider's 5xx)
        let cases: Vec<(Error, u16, &str, &str)> = vec![
            (
                Error::InvalidRequest("bad".into()),
                400,
                "invalid_request_error",
                "invalid",
            ),
            (
                Error::Authentication("no key".into()),
                401,
                "authentication_error",
                "auth",
            ),
            (
                Error::ModelNotFound("gpt-9".into()),
                404,
                "invalid_request_error",
                "model",
            ),
            (
                Error::RateLimited {
                    message: "slow down".into(),
                    retry_after: None,
                },
                429,
                "rate_limit_error",
                "rate",
            ),
            (
                Error::ContextLengthExceeded {
                    message: "5000 > 4096".into(),
                    requested: Some(5000),
                    limit: Some(4096),
                },
                400,
                "invalid_request_error",
                "context",
            ),
            (Error::Timeout("30s".into()), 504, "server_error", "timeout"),
            (Error::model("weights"), 500, "server_error", "provider"),
        ];
        for (err, status, kind, back_kind) in cases {
            let (s, obj) = ErrorObject::from_error(&err);
            assert_eq!((s, obj.kind.as_deref()), (status, Some(kind)), "{err}");
            let json = serde_json::to_vec(&obj.into_response()).expect("serialises");
            let back = ErrorObject::from_body(&json).into_error(s, None, "p");
            assert_eq!(kind_of(&back), back_kind, "{err} came back as {back}");
        }
    }

    #[test]
    fn blocked_names_the_guardrail_and_its_reason() {
        let v = Verdict::fail(
            "injection",
            0.9,
            "prompt_injection",
            "ignore previous instructions",
        );
        let (status, obj) = ErrorObject::from_error(&Error::Blocked(Box::new(v)));
        assert_eq!(status, 400);
        assert_eq!(obj.code.as_deref(), Some("content_blocked"));
        assert!(
            obj.message
                .contains("`injection`: ignore previous instructions")
        );
    }

    #[test]
    fn provider_statuses_pass_through() {
        let e = Error::Provider {
            provider: "openai".into(),
            status: Some(503),
            message: "overloaded".into(),
        };
        assert_eq!(ErrorObject::from_error(&e).0, 503);
        let e = Error::Provider {
            provider: "x".into(),
            status: None,
            message: "m".into(),
        };
        assert_eq!(ErrorObject::from_error(&e).0, 502);
    }

    type Headers = Vec<(&'static str, &'static str)>;

    /// One answer: status, headers, body.
    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Error {
        let mut h = HeaderMap::new();
        for (name, value) in headers {
            h.insert(*name, value.parse().expect("a valid header value"));
        }
        error_from_status("p", status, &h, body.as_bytes())
    }

    /// Every disagreement the two former mappings had is decided here, once.
    #[test]
    fn answers_map_to_kinds() {
        let openai = |m: &str, code: &str| {
            format!(
                r#"{{"error":{{"message":"{m}","type":"invalid_request_error","param":null,"code":{code}}}}}"#
            )
        };
        // (status, headers, body, expected Debug of the error)
        #[rustfmt::skip]
        let cases: Vec<(u16, Headers, String, &str)> = vec![
            (400, vec![], openai("bad temperature", "null"),
             r#"InvalidRequest("p: bad temperature")"#),
            // Context length: by code, with OpenAI's counts from the message.
            (400, vec![], openai("This model's maximum context length is 4097 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).", r#""context_length_exceeded""#),
             r#"ContextLengthExceeded { message: "p: This model's maximum context length is 4097 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).", requested: Some(5000), limit: Some(4097) }"#),
            // By wording alone (Anthropic), counts from "N tokens > M maximum".
            (400, vec![], r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#.into(),
             r#"ContextLengthExceeded { message: "p: prompt is too long: 208310 tokens > 200000 maximum", requested: Some(208310), limit: Some(200000) }"#),
            // llama.cpp: by type, counts from its fields, a numeric code.
            (400, vec![], r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#.into(),
             r#"ContextLengthExceeded { message: "p: the request exceeds the available context size, try increasing it", requested: Some(5000), limit: Some(4096) }"#),
            // "context size" is context wording too; 422 like 400.
            (422, vec![], r#"{"detail":"input (5000 tokens) exceeds the context size (4096 tokens)"}"#.into(),
             r#"ContextLengthExceeded { message: "p: input (5000 tokens) exceeds the context size (4096 tokens)", requested: Some(5000), limit: Some(4096) }"#),
            // 413 is the context when it says so, else a request too large.
            (413, vec![], openai("maximum context length is 8192 tokens", "null"),
             r#"ContextLengthExceeded { message: "p: maximum context length is 8192 tokens", requested: None, limit: Some(8192) }"#),
            (413, vec![], "{}".into(),
             r#"InvalidRequest("p: request too large: HTTP 413 with no message")"#),
            (401, vec![], openai("Incorrect API key provided", r#""invalid_api_key""#),
             r#"Authentication("p: Incorrect API key provided")"#),
            // 403: a valid key without the permission.
            (403, vec![], r#"{"type":"error","error":{"type":"permission_error","message":"no access"}}"#.into(),
             r#"Authentication("p: permission denied: no access")"#),
            (404, vec![], openai("The model `gpt-9` does not exist", r#""model_not_found""#),
             r#"ModelNotFound("p: The model `gpt-9` does not exist")"#),
            (404, vec![], r#"{"error": "model 'x' not found"}"#.into(),
             r#"ModelNotFound("p: model 'x' not found")"#),
            (404, vec![], "Not Found".into(),
             r#"Provider { provider: "p", status: Some(404), message: "Not Found" }"#),
            (408, vec![], "".into(),
             r#"Timeout("p (HTTP 408): HTTP 408 with no message")"#),
            // 504: time ran out at a gateway, a timeout like any other.
            (504, vec![], "<html>gateway</html>".into(),
             r#"Timeout("p (HTTP 504): <html>gateway</html>")"#),
            // Retry-After: seconds, fractions, an HTTP date in the past, retry-after-ms first.
            (429, vec![("retry-after", "3")], r#"{"error":{"message":"Slow down","type":"rate_limit_error"}}"#.into(),
             r#"RateLimited { message: "p: Slow down", retry_after: Some(3s) }"#),
            (429, vec![("retry-after", "0.5")], "{}".into(),
             r#"RateLimited { message: "p: HTTP 429 with no message", retry_after: Some(500ms) }"#),
            (429, vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "{}".into(),
             r#"RateLimited { message: "p: HTTP 429 with no message", retry_after: Some(0ns) }"#),
            (429, vec![("retry-after", "7"), ("retry-after-ms", "1500")], "{}".into(),
             r#"RateLimited { message: "p: HTTP 429 with no message", retry_after: Some(1.5s) }"#),
            (429, vec![("retry-after", "soon")], "{}".into(),
             r#"RateLimited { message: "p: HTTP 429 with no message", retry_after: None }"#),
            (429, vec![("retry-after", "-1")], "{}".into(),
             r#"RateLimited { message: "p: HTTP 429 with no message", retry_after: None }"#),
            // An exhausted quota, by code or by type: waiting does not fix it.
            (429, vec![], r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#.into(),
             r#"Provider { provider: "p", status: Some(429), message: "You exceeded your current quota" }"#),
            (429, vec![], r#"{"error":{"message":"pay","type":"insufficient_quota"}}"#.into(),
             r#"Provider { provider: "p", status: Some(429), message: "pay" }"#),
            (529, vec![], r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.into(),
             r#"Provider { provider: "p", status: Some(529), message: "Overloaded" }"#),
            (500, vec![], r#"{"error":"model crashed"}"#.into(),
             r#"Provider { provider: "p", status: Some(500), message: "model crashed" }"#),
            (503, vec![], r#"{"detail":"busy"}"#.into(),
             r#"Provider { provider: "p", status: Some(503), message: "busy" }"#),
            // Older vLLM: the object's fields at the top level.
            (400, vec![], r#"{"object":"error","message":"bad n","type":"BadRequestError","code":400}"#.into(),
             r#"InvalidRequest("p: bad n")"#),
            (502, vec![], r#"{"error":{"message":"","type":"server_error"}}"#.into(),
             r#"Provider { provider: "p", status: Some(502), message: "HTTP 502 with no message" }"#),
        ];
        for (status, headers, body, expected) in cases {
            let err = answer(status, &headers, &body);
            assert_eq!(
                format!("{err:?}"),
                expected,
                "HTTP {status} {headers:?} {body}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_an_error_object_is_quoted_cut() {
        let page = format!("<html>{}</html>", "x".repeat(1000));
        let Error::Provider { message, .. } = answer(502, &[], &page) else {
            panic!("a 502 is a provider error")
        };
        assert_eq!(message, format!("{}… (1013 bytes in all)", &page[..500]));
    }

    #[test]
    fn retryable_answers() {
        assert!(answer(429, &[], "{}").is_retryable());
        assert!(answer(529, &[], "{}").is_retryable());
        assert!(answer(504, &[], "{}").is_retryable());
        assert!(!answer(429, &[], r#"{"error":{"code":"insufficient_quota"}}"#).is_retryable());
        assert!(!answer(403, &[], "{}").is_retryable());
    }

    #[test]
    fn a_future_http_date_is_the_wait_until_then() {
        let later = SystemTime::now() + Duration::from_secs(120);
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().expect("a date"),
        );
        let wait = retry_after(&h).expect("a wait");
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    #[test]
    fn quotes_cut_on_a_character_boundary() {
        let q = quote(&"é".repeat(600));
        assert!(q.starts_with(&"é".repeat(500)), "{q}");
        assert!(q.ends_with("… (1200 bytes in all)"), "{q}");
    }
}
