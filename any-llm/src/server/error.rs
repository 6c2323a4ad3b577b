//! Every failure the server answers with: an HTTP status and an OpenAI error object.

use any_core::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::wire::openai::ErrorObject;

/// A failure, ready to be sent: status, error object, and `Retry-After` where waiting helps.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// Boxed: an error object is large, and every handler's `Result` carries this.
    pub(crate) object: Box<ErrorObject>,
    pub(crate) retry_after_secs: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, object: ErrorObject) -> Self {
        ApiError {
            status,
            object: Box::new(object),
            retry_after_secs: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorObject::new("invalid_request_error", message),
        )
    }

    pub(crate) fn not_found(message: impl Into<String>, code: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorObject::new("invalid_request_error", message).with_code(code),
        )
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorObject::new("authentication_error", message).with_code("invalid_api_key"),
        )
    }

    pub(crate) fn overloaded(limit: usize) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            object: Box::new(
                ErrorObject::new(
                    "server_error",
                    format!(
                        "the server is busy: all {limit} request slots are taken; retry shortly"
                    ),
                )
                .with_code("server_overloaded"),
            ),
            retry_after_secs: Some(1),
        }
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorObject::new(
                "invalid_request_error",
                format!("the request body is larger than the server's limit of {limit} bytes"),
            )
            .with_code("request_too_large"),
        )
    }
}

/// The status and error object a client is sent for `err`. A server-side failure's message
/// is cut to its first line (at most 300 bytes): what follows in a backend's message (a
/// parser's state, a grammar) is for the log, which gets the whole error, not for clients.
pub(crate) fn public_error(err: &Error) -> (u16, ErrorObject) {
    let (status, mut object) = ErrorObject::from_error(err);
    if status >= 500 {
        let line = object.message.lines().next().unwrap_or("").trim_end();
        let line = match line.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_owned(),
        };
        object.message = line;
    }
    (status, object)
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let (status, object) = public_error(&err);
        if status >= 500 {
            tracing::warn!(error = %err, status, "request failed");
        } else {
            tracing::debug!(error = %err, status, "request refused");
        }
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            object: Box::new(object),
            retry_after_secs: err.retry_after().map(|d| d.as_secs_f64().ceil() as u64),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::json_bytes(&self.object.into_response());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
