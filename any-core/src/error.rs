//! The one error type every service of the family returns.

use std::time::Duration;

use crate::Verdict;

/// A boxed error, as tower's own layers produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the kinds callers branch on.
///
/// Match on the kind to decide what to do; [`Error::is_retryable`] answers the most common
/// question. Messages keep what the provider or file said, so logs show the real cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself is wrong (a bad parameter, an empty conversation, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The credentials are missing, wrong, or not allowed to do this.
    #[error("authentication failed: {0}")]
    Authentication(String),

    /// Too many requests; wait `retry_after` if the provider said how long.
    #[error("rate limited{}: {message}", .retry_after.map(|d| format!(" (retry after {:.1}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// What the provider said.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },

    /// The prompt (plus the room asked for the answer) does not fit the model's context.
    #[error("context length exceeded: {message}")]
    ContextLengthExceeded {
        /// What was too long, in words.
        message: String,
        /// Tokens asked for, where known.
        requested: Option<usize>,
        /// The model's context window, where known.
        limit: Option<usize>,
    },

    /// No such model.
    #[error("model not found: {0}")]
    ModelNotFound(String),

    /// The provider answered with an error of its own.
    #[error("{provider} error{}: {message}", .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Provider {
        /// Which provider (`"openai"`, `"anthropic"`, `"local"`, ...).
        provider: String,
        /// The HTTP status, for HTTP providers.
        status: Option<u16>,
        /// What the provider said.
        message: String,
    },

    /// The provider answered with something that is not what its protocol promises.
    #[error("invalid response: {0}")]
    InvalidResponse(String),

    /// A value (a model's structured answer, a tool call's arguments) does not match its
    /// JSON Schema. The message names the first violations; `violations` has them all (up to
    /// 64), each with where in the value, which keyword, and what was expected.
    ///
    /// Not retryable by [`Error::is_retryable`]: the same request may well fail the same way.
    /// A caller that samples (temperature above 0) may choose to ask again.
    #[error("{}", crate::schema::describe_violations(schema, violations))]
    SchemaViolation {
        /// The schema's name.
        schema: String,
        /// Every violation found.
        violations: Vec<crate::schema::Violation>,
    },

    /// The request took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),

    /// A guardrail blocked the request or the response.
    #[error("blocked by guardrail `{}`: {}", .0.guardrail, .0.explanation.as_deref().unwrap_or("no explanation"))]
    Blocked(Box<Verdict>),

    /// The service cannot do what was asked (a feature it does not have).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A model file or a backend could not be used.
    ///
    /// `message` says what went wrong in full (it already includes what `source` says, so
    /// printing the error alone loses nothing); `source` keeps the backend's typed error, for
    /// callers that branch on it through [`std::error::Error::source`] and `downcast_ref`.
    /// Build one with [`Error::model`] or [`Error::model_with_source`].
    #[error("model error: {message}")]
    Model {
        /// What went wrong, in words.
        message: String,
        /// The backend's own error, where there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Any other failure, with its source.
    #[error(transparent)]
    Other(BoxError),
}

impl Error {
    /// An [`Error::Model`] saying `message`, with no underlying error.
    ///
    /// ```
    /// use any_core::Error;
    /// let err = Error::model("the tokenizer has 10 tokens but the embedding has 12 rows");
    /// assert!(err.to_string().starts_with("model error: the tokenizer"));
    /// assert!(std::error::Error::source(&err).is_none());
    /// ```
    pub fn model(message: impl Into<String>) -> Error {
        Error::Model {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Model`] saying `message` (which should include what `source` says, the
    /// display does not repeat it) caused by `source`, kept for
    /// [`std::error::Error::source`] and downcasting.
    ///
    /// ```
    /// use any_core::Error;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    /// let err = Error::model_with_source(format!("model.gguf: {io}"), io);
    /// assert_eq!(err.to_string(), "model error: model.gguf: no such file");
    /// let source = std::error::Error::source(&err).expect("a source");
    /// assert!(source.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn model_with_source(message: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Model {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Whether trying the same request again may succeed: rate limits, timeouts, server-side
    /// (5xx) provider errors, and I/O failures that look transient.
    ///
    /// ```
    /// use any_core::Error;
    /// assert!(Error::Timeout("30s".into()).is_retryable());
    /// assert!(!Error::InvalidRequest("no messages".into()).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::RateLimited { .. } | Error::Timeout(_) => true,
            Error::Provider { status, .. } => matches!(status, Some(408 | 409 | 425 | 500..=599)),
            Error::Io(e) => matches!(
                e.kind(),
                K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::TimedOut
                    | K::Interrupted
                    | K::UnexpectedEof
                    | K::BrokenPipe
            ),
            _ => false,
        }
    }

    /// How long the provider asked to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The verdict, if a guardrail blocked this.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Error::Blocked(v) => Some(v),
            _ => None,
        }
    }

    /// Recovers an [`Error`] from a boxed error, as tower's layers (timeout, buffer, ...)
    /// return: our own errors come back as themselves, tower's elapsed timeout becomes
    /// [`Error::Timeout`], anything else [`Error::Other`].
    ///
    /// Use it after a tower layer to get back to the [`ChatService`](crate::ChatService)
    /// shape: `ServiceBuilder::new().map_err(Error::from_boxed).timeout(d)`.
    pub fn from_boxed(err: BoxError) -> Error {
        match err.downcast::<Error>() {
            Ok(e) => *e,
            Err(err) => match err.downcast::<tower::timeout::error::Elapsed>() {
                Ok(elapsed) => Error::Timeout(elapsed.to_string()),
                Err(err) => Error::Other(err),
            },
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::InvalidResponse(format!("malformed JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_errors_come_back_as_their_kind() {
        let boxed: BoxError = Box::new(Error::ModelNotFound("x".into()));
        assert!(matches!(Error::from_boxed(boxed), Error::ModelNotFound(m) if m == "x"));
        let boxed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert!(matches!(Error::from_boxed(boxed), Error::Timeout(_)));
        let boxed: BoxError = "plain".into();
        assert!(matches!(Error::from_boxed(boxed), Error::Other(_)));
    }

    #[test]
    fn retryable_kinds() {
        let provider = |status| Error::Provider {
            provider: "p".into(),
            status,
            message: "m".into(),
        };
        assert!(provider(Some(503)).is_retryable());
        assert!(!provider(Some(400)).is_retryable());
        assert!(!provider(None).is_retryable());
        let limited = Error::RateLimited {
            message: "slow".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(limited.to_string(), "rate limited (retry after 2.0s): slow");
        assert!(!Error::Authentication("bad key".into()).is_retryable());
    }

    #[test]
    fn blocked_carries_its_verdict() {
        let v = Verdict::fail(
            "injection",
            0.9,
            "prompt_injection",
            "ignore previous instructions",
        );
        let e = Error::Blocked(Box::new(v.clone()));
        assert_eq!(e.verdict(), Some(&v));
        assert_eq!(
            e.to_string(),
            "blocked by guardrail `injection`: ignore previous instructions"
        );
    }
}
