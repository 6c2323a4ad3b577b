//! The error object, `{"error": {"message", "type", "param", "code"}}`, and its mapping to and
//! from [`any_core::Error`] and HTTP status codes.

use std::time::Duration;

use any_core::Error;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

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
    #[serde(default)]
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

    /// Reads an error answer's body, whatever shape the server gave it: this object, a bare
    /// `{"error": "text"}`, `{"message": ...}`, `{"detail": ...}`, or plain text (cut at 500
    /// characters). Never fails: what cannot be parsed becomes the message.
    pub fn from_body(body: &[u8]) -> ErrorObject {
        if let Ok(r) = serde_json::from_slice::<ErrorResponse>(body) {
            return r.error;
        }
        let text = String::from_utf8_lossy(body);
        let message = match serde_json::from_slice::<Value>(body) {
            Ok(v) => ["error", "message", "detail"]
                .iter()
                .find_map(|k| v.get(k))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| v.to_string()),
            Err(_) => text.trim().to_owned(),
        };
        let message = match message.char_indices().nth(500) {
            Some((cut, _)) => format!("{}...", &message[..cut]),
            None => message,
        };
        ErrorObject {
            message,
            kind: None,
            param: None,
            code: None,
        }
    }

    /// The typed error for this object answered with HTTP `status` by `provider`, keeping the
    /// provider's message. `retry_after` is what the `Retry-After` header said (see
    /// [`parse_retry_after`]).
    ///
    /// 400 and 422 are invalid requests, unless they say the context is too long; 401 and
    /// 403 are authentication errors; 404 naming a model is [`Error::ModelNotFound`]; 408 a
    /// timeout; 413 an invalid request; 429 a rate limit, except an exhausted quota (which
    /// waiting does not fix, so it stays a non-retryable provider error); everything else a
    /// provider error with its status.
    pub fn into_error(self, status: u16, retry_after: Option<Duration>, provider: &str) -> Error {
        let code = self.code.as_deref().unwrap_or("");
        let kind = self.kind.as_deref().unwrap_or("");
        let lower = self.message.to_lowercase();
        let context = code == "context_length_exceeded"
            || kind == "exceed_context_size_error"
            || lower.contains("context length")
            || lower.contains("context window")
            || lower.contains("context size");
        let message = if self.message.is_empty() {
            format!("HTTP {status} with no message")
        } else {
            self.message
        };
        let provider_error = |message| Error::Provider {
            provider: provider.to_owned(),
            status: Some(status),
            message,
        };
        match status {
            400 | 413 | 422 if context => Error::ContextLengthExceeded {
                message,
                requested: None,
                limit: None,
            },
            400 | 422 => Error::InvalidRequest(message),
            413 => Error::InvalidRequest(format!("request too large: {message}")),
            401 => Error::Authentication(message),
            403 => Error::Authentication(format!("permission denied: {message}")),
            404 if code == "model_not_found"
                || self.param.as_deref() == Some("model")
                || lower.contains("model") =>
            {
                Error::ModelNotFound(message)
            }
            408 => Error::Timeout(message),
            429 if code == "insufficient_quota" => provider_error(message),
            429 => Error::RateLimited {
                message,
                retry_after,
            },
            _ => provider_error(message),
        }
    }
}

/// Reads a `Retry-After` header value given in seconds (`"2"`, `"0.5"`); the HTTP-date form
/// gives `None`, as do negative or non-finite numbers.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(any_llm::wire::openai::parse_retry_after("2"), Some(Duration::from_secs(2)));
/// assert_eq!(any_llm::wire::openai::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
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
            (
                Error::Timeout("30s".into()),
                504,
                "server_error",
                "provider",
            ),
            (
                Error::Model("weights".into()),
                500,
                "server_error",
                "provider",
            ),
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

    #[test]
    fn real_world_error_bodies() {
        // OpenAI's shape.
        let body = br#"{"error": {"message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
        let e = ErrorObject::from_body(body).into_error(400, None, "openai");
        assert!(matches!(e, Error::ContextLengthExceeded { .. }), "{e}");
        // A numeric code (llama.cpp style).
        let body = br#"{"error": {"code": 400, "message": "the request exceeds the available context size",
            "type": "exceed_context_size_error"}}"#;
        let obj = ErrorObject::from_body(body);
        assert_eq!(obj.code.as_deref(), Some("400"));
        assert!(matches!(
            obj.into_error(400, None, "l"),
            Error::ContextLengthExceeded { .. }
        ));
        // A bare string (Ollama style).
        let e = ErrorObject::from_body(br#"{"error": "model 'x' not found"}"#)
            .into_error(404, None, "ollama");
        assert!(
            matches!(&e, Error::ModelNotFound(m) if m == "model 'x' not found"),
            "{e}"
        );
        // FastAPI's detail, and plain text.
        assert_eq!(
            ErrorObject::from_body(br#"{"detail": "Not authenticated"}"#).message,
            "Not authenticated"
        );
        assert_eq!(
            ErrorObject::from_body(b"Bad Gateway\n").message,
            "Bad Gateway"
        );
        // 429: retry-after kept; an exhausted quota is not retryable.
        let e = ErrorObject::new("rate_limit_error", "slow").into_error(
            429,
            parse_retry_after("1.5"),
            "openai",
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        let e = ErrorObject::new("insufficient_quota", "pay")
            .with_code("insufficient_quota")
            .into_error(429, None, "openai");
        assert!(!e.is_retryable(), "{e}");
        let e = ErrorObject::new("x", "denied").into_error(403, None, "p");
        assert!(matches!(&e, Error::Authentication(m) if m.contains("permission denied")));
        let e = ErrorObject::new("server_error", "").into_error(502, None, "p");
        assert!(
            e.is_retryable() && e.to_string().contains("HTTP 502 with no message"),
            "{e}"
        );
        assert_eq!(parse_retry_after("-1"), None);
    }
}
