//! Transport failures and malformed answers as [`Error`]s. Unsuccessful statuses are mapped by
//! [`crate::wire::openai::error_from_status`], which every provider shares.

use any_core::Error;

use crate::wire::openai::quote_body;

/// [`Error::InvalidResponse`] for a body that is not what the protocol promises, quoting it.
pub(crate) fn invalid_response(provider: &str, what: &dyn std::fmt::Display, body: &[u8]) -> Error {
    Error::InvalidResponse(format!(
        "{provider}: {what}; the body was {:?}",
        quote_body(&String::from_utf8_lossy(body))
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
