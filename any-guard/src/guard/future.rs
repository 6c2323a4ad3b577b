//! The guard's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use any_core::{ChatStream, Result};

/// The future a [`Guard`](super::Guard) returns: the checks of the request (input side) and
/// the inner call.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<ChatStream>> + Send + 'static>>,
}

impl ResponseFuture {
    pub(crate) fn new(f: impl Future<Output = Result<ChatStream>> + Send + 'static) -> Self {
        ResponseFuture { inner: Box::pin(f) }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<ChatStream>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
