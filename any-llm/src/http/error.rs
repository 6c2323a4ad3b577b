//! From HTTP failures to [`Error`] kinds, keeping what the provider said.

use std::time::{Duration, SystemTime};

use any_core::Error;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// How much of a body an error quotes.
const QUOTE: usize = 300;

/// The error an unsuccessful HTTP status stands for (see the [module docs](super) for the
/// table), with the provider's message from the body: OpenAI's and Anthropic's error objects
/// (`{"error": {"message", "type", "code"}}`), a bare `{"error": "..."}` (Ollama),
/// `{"message"}` or `{"detail"}`, or else the body itself, truncated.
///
/// ```
/// use any_core::Error;
/// use any_llm::http::error_from_status;
/// use reqwest::header::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3".parse().unwrap());
/// let body = r#"{"error":{"message":"Slow down","type":"rate_limit_error"}}"#;
/// let err = error_from_status("openai", 429, &headers, body);
/// assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(3)));
/// assert!(err.to_string().contains("Slow down"));
///
/// let body = r#"{"type":"error","error":{"type":"invalid_request_error",
///     "message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;
/// let err = error_from_status("anthropic", 400, &HeaderMap::new(), body);
/// assert!(matches!(err, Error::ContextLengthExceeded { requested: Some(208310), limit: Some(200000), .. }));
/// ```
///
/// An exhausted quota (HTTP 429 with code `insufficient_quota`) is a non-retryable
/// `Error::Provider`: waiting does not fix it.
pub fn error_from_status(provider: &str, status: u16, headers: &HeaderMap, body: &str) -> Error {
    let details = Details::parse(body);
    let message = details.message.clone();
    match status {
        400 | 422 if details.is_context_length() => {
            let (requested, limit) = match details.counts {
                (None, None) => token_counts(&message),
                counts => counts,
            };
            Error::ContextLengthExceeded {
                message,
                requested,
                limit,
            }
        }
        400 | 422 => Error::InvalidRequest(message),
        401 | 403 => Error::Authentication(format!("{provider}: {message}")),
        404 if details.is_about_model() => Error::ModelNotFound(format!("{provider}: {message}")),
        408 | 504 => Error::Timeout(format!("{provider} (HTTP {status}): {message}")),
        413 => Error::InvalidRequest(format!("request too large: {message}")),
        // An exhausted quota is not fixed by waiting: a provider error, not retryable.
        429 if details.code.as_deref() == Some("insufficient_quota")
            || details.kind.as_deref() == Some("insufficient_quota") =>
        {
            Error::Provider {
                provider: provider.to_owned(),
                status: Some(status),
                message,
            }
        }
        429 => Error::RateLimited {
            message: format!("{provider}: {message}"),
            retry_after: retry_after(headers),
        },
        _ => Error::Provider {
            provider: provider.to_owned(),
            status: Some(status),
            message,
        },
    }
}

/// The wait a response asks for: `retry-after-ms` (milliseconds, sent by some providers),
/// else `retry-after` as seconds or as an HTTP date (a date in the past means no wait).
///
/// ```
/// use any_llm::http::retry_after;
/// use reqwest::header::HeaderMap;
/// use std::time::Duration;
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
/// assert_eq!(retry_after(&h), Some(Duration::ZERO)); // long past
/// h.insert("retry-after-ms", "1500".parse().unwrap());
/// assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What an error body says.
#[derive(Debug, Default)]
struct Details {
    message: String,
    kind: Option<String>,
    code: Option<String>,
    param: Option<String>,
    /// `(requested, limit)` when the body states them as fields (llama.cpp server).
    counts: (Option<usize>, Option<usize>),
}

impl Details {
    fn parse(body: &str) -> Details {
        let Ok(json) = serde_json::from_str::<Value>(body) else {
            return Details {
                message: quote(body.trim()),
                ..Default::default()
            };
        };
        let text = |v: Option<&Value>| match v? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        // OpenAI: {"error": {...}}; Anthropic: {"type": "error", "error": {...}}; some
        // servers (vLLM's older versions) put the object at the top level.
        let object = match json.get("error") {
            Some(e @ Value::Object(_)) => e,
            _ => &json,
        };
        let count = |k: &str| object.get(k)?.as_u64().map(|n| n as usize);
        let message = text(object.get("message"))
            .or_else(|| text(json.get("error")))
            .or_else(|| text(json.get("detail")))
            .or_else(|| text(json.get("message")))
            .unwrap_or_else(|| quote(body.trim()));
        Details {
            message,
            kind: text(object.get("type")),
            code: text(object.get("code")),
            param: text(object.get("param")),
            counts: (count("n_prompt_tokens"), count("n_ctx")),
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
        let m = self.message.to_ascii_lowercase();
        [
            "context length",
            "context_length",
            "context window",
            "maximum context",
            "prompt is too long",
            "too many tokens",
            "exceeds the model's",
            "input is too long",
        ]
        .iter()
        .any(|p| m.contains(p))
    }

    fn is_about_model(&self) -> bool {
        matches!(self.code.as_deref(), Some("model_not_found"))
            || self.param.as_deref() == Some("model")
            || self.message.to_ascii_lowercase().contains("model")
    }
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

/// Truncates `text` for quoting in an error, on a character boundary.
pub(crate) fn quote(text: &str) -> String {
    if text.len() <= QUOTE {
        return text.to_owned();
    }
    let mut end = QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// [`Error::InvalidResponse`] for a body that is not what the protocol promises, quoting it.
pub(crate) fn invalid_response(provider: &str, what: &dyn std::fmt::Display, body: &[u8]) -> Error {
    Error::InvalidResponse(format!(
        "{provider}: {what}; the body was {:?}",
        quote(&String::from_utf8_lossy(body))
    ))
}

/// A transport failure: timeouts are [`Error::Timeout`], everything else [`Error::Io`] with
/// the socket's error kind where one can be found (so refused or reset connections are
/// retryable).
pub(crate) fn transport_error(provider: &str, url: &str, err: reqwest::Error) -> Error {
    use std::io::ErrorKind;
    // reqwest's own message repeats the URL; the causes below it say what happened.
    let mut detail = String::new();
    let mut kind = None;
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        detail.push_str(&s.to_string());
        if kind.is_none()
            && let Some(io) = s.downcast_ref::<std::io::Error>()
        {
            kind = Some(io.kind());
        }
        source = s.source();
    }
    if detail.is_empty() {
        detail = err.to_string();
    }
    if err.is_timeout() || kind == Some(ErrorKind::TimedOut) {
        return Error::Timeout(format!("{provider} at {url}: {detail}"));
    }
    let kind = kind.unwrap_or(if err.is_connect() {
        ErrorKind::ConnectionRefused
    } else if err.is_body() || err.is_decode() {
        ErrorKind::UnexpectedEof
    } else {
        ErrorKind::Other
    });
    let what = if err.is_connect() {
        "cannot connect to"
    } else {
        "connection failed with"
    };
    Error::Io(std::io::Error::new(
        kind,
        format!("{provider}: {what} {url}: {detail}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> Error {
        error_from_status("p", status, &HeaderMap::new(), body)
    }

    #[test]
    fn an_exhausted_quota_is_not_a_rate_limit() {
        let body = r#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
        let e = error_from_status("openai", 429, &HeaderMap::new(), body);
        assert!(
            matches!(
                e,
                Error::Provider {
                    status: Some(429),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        let body = r#"{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}"#;
        let e = error_from_status("openai", 429, &HeaderMap::new(), body);
        assert!(e.is_retryable(), "{e:?}");
    }

    #[test]
    fn statuses_map_to_kinds_keeping_the_message() {
        let openai = |m: &str, code: &str| {
            format!(
                r#"{{"error":{{"message":"{m}","type":"invalid_request_error","param":null,"code":{code}}}}}"#
            )
        };
        assert!(
            matches!(err(400, &openai("bad temperature", "null")), Error::InvalidRequest(m) if m == "bad temperature")
        );
        assert!(
            matches!(err(401, &openai("Incorrect API key provided", "\"invalid_api_key\"")), Error::Authentication(m) if m.contains("Incorrect API key"))
        );
        assert!(matches!(
            err(403, r#"{"type":"error","error":{"type":"permission_error","message":"no access"}}"#),
            Error::Authentication(m) if m.contains("no access")
        ));
        assert!(matches!(
            err(404, &openai("The model `gpt-9` does not exist", "\"model_not_found\"")),
            Error::ModelNotFound(m) if m.contains("gpt-9")
        ));
        assert!(matches!(
            err(404, "Not Found"),
            Error::Provider {
                status: Some(404),
                ..
            }
        ));
        assert!(matches!(err(408, ""), Error::Timeout(_)));
        assert!(
            matches!(err(504, "<html>gateway</html>"), Error::Timeout(m) if m.contains("gateway"))
        );
        assert!(matches!(err(413, "{}"), Error::InvalidRequest(m) if m.contains("too large")));
        let overloaded = err(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(overloaded.is_retryable());
        assert!(
            matches!(overloaded, Error::Provider { status: Some(529), message, .. } if message == "Overloaded")
        );
        assert!(
            matches!(err(500, r#"{"error":"model crashed"}"#), Error::Provider { message, .. } if message == "model crashed")
        );
        assert!(
            matches!(err(503, r#"{"detail":"busy"}"#), Error::Provider { message, .. } if message == "busy")
        );
    }

    #[test]
    fn context_length_is_recognised_with_its_counts() {
        let e = err(
            400,
            r#"{"error":{"message":"This model's maximum context length is 4097 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert!(
            matches!(
                e,
                Error::ContextLengthExceeded {
                    requested: Some(5000),
                    limit: Some(4097),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = err(
            400,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#,
        );
        assert!(
            matches!(
                e,
                Error::ContextLengthExceeded {
                    requested: Some(5000),
                    limit: Some(4096),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = err(400, r#"{"error":{"message":"bad value"}}"#);
        assert!(matches!(e, Error::InvalidRequest(_)));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn bodies_are_quoted_truncated() {
        let long = "x".repeat(1000);
        let e = err(500, &long);
        let Error::Provider { message, .. } = e else {
            panic!("not a provider error")
        };
        assert!(message.len() < 400 && message.ends_with("(1000 bytes in all)"));
        assert_eq!(quote("é".repeat(200).as_str()).chars().next(), Some('é'));
    }
}
