//! Fallback to another service on failure.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{ChatRequest, ChatService, ChatStream, Error, Result};
use tower::{Layer, Service};

use super::{first_chunk, take_ready};

type Predicate = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// Asks a fallback service when the wrapped (primary) one fails before the first chunk of
/// its answer (see the [module docs](super)).
///
/// By default it falls back on [`Error::is_retryable`] errors — the primary is down,
/// overloaded or slow — and passes every other error (a bad request, a wrong key) through,
/// since the fallback would most likely refuse it too; [`FallbackLayer::when`] chooses
/// otherwise. An answer from the fallback carries a [`FellBack`] extension saying why.
///
/// ```
/// use any_core::{ChatChunk, ChatServiceExt, ChatStream, Error};
/// use any_llm::resilience::{FallbackLayer, FellBack};
/// use tower::{Layer, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// let down = service_fn(|_req| async {
///     Err::<ChatStream, _>(Error::Timeout("no answer in 30s".into()))
/// });
/// let backup = service_fn(|_req| async {
///     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text("from the backup")]))
/// });
/// let model = FallbackLayer::new(backup).layer(down);
/// let response = model.chat("hi").await?;
/// assert_eq!(response.text(), "from the backup");
/// assert!(response.extensions.get::<FellBack>().unwrap().reason.contains("30s"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FallbackLayer<B> {
    fallback: B,
    when: Predicate,
}

impl<B: fmt::Debug> fmt::Debug for FallbackLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<B> FallbackLayer<B> {
    /// Falls back to `fallback` on retryable errors.
    pub fn new(fallback: B) -> Self {
        FallbackLayer {
            fallback,
            when: Arc::new(Error::is_retryable),
        }
    }

    /// Falls back on the errors for which `when` is true instead.
    ///
    /// ```
    /// use any_core::Error;
    /// # let backup = tower::service_fn(|_r: any_core::ChatRequest| async {
    /// #     Ok::<_, Error>(any_core::ChatStream::from_chunks(vec![])) });
    /// // Also when the primary does not have the model, or cannot do what is asked.
    /// let layer = any_llm::resilience::FallbackLayer::new(backup).when(|e| {
    ///     e.is_retryable() || matches!(e, Error::ModelNotFound(_) | Error::Unsupported(_))
    /// });
    /// ```
    pub fn when(mut self, when: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.when = Arc::new(when);
        self
    }
}

impl<S, B: Clone> Layer<S> for FallbackLayer<B> {
    type Service = Fallback<S, B>;

    fn layer(&self, primary: S) -> Fallback<S, B> {
        Fallback {
            primary,
            fallback: self.fallback.clone(),
            when: self.when.clone(),
        }
    }
}

/// Set on the answer (stream and response extensions) when it came from the fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FellBack {
    /// The primary's error, in words.
    pub reason: String,
}

/// The service [`FallbackLayer`] makes.
#[derive(Clone)]
pub struct Fallback<A, B> {
    primary: A,
    fallback: B,
    when: Predicate,
}

impl<A: fmt::Debug, B: fmt::Debug> fmt::Debug for Fallback<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("primary", &self.primary)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<A, B> Fallback<A, B> {
    /// `primary`, falling back to `fallback` on retryable errors.
    pub fn new(primary: A, fallback: B) -> Self {
        Fallback {
            primary,
            fallback,
            when: Arc::new(Error::is_retryable),
        }
    }

    /// The primary service.
    pub fn get_ref(&self) -> &A {
        &self.primary
    }

    /// The primary service, to change.
    pub fn get_mut(&mut self) -> &mut A {
        &mut self.primary
    }

    /// The fallback service.
    pub fn fallback(&self) -> &B {
        &self.fallback
    }

    /// Unwraps the primary service.
    pub fn into_inner(self) -> A {
        self.primary
    }
}

impl<A: ChatService, B: ChatService> Service<ChatRequest> for Fallback<A, B> {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    /// Ready when the primary is. The fallback's readiness is not asked here: it is used only
    /// when the primary fails, so a busy fallback must not hold back requests the primary
    /// can take. When a call does fall back, it waits (inside its future) for a clone of the
    /// fallback to be ready.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.primary.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let first = take_ready(&mut self.primary).call(request.clone());
        let fallback = self.fallback.clone();
        let when = self.when.clone();
        Box::pin(async move {
            let err = match first_chunk(first).await {
                Ok(stream) => return Ok(stream),
                Err(e) => e,
            };
            if !when(&err) {
                return Err(err);
            }
            tracing::info!(error = %err, "falling back");
            let mut stream = tower::ServiceExt::oneshot(fallback, request).await?;
            stream.extensions_mut().insert(FellBack {
                reason: err.to_string(),
            });
            Ok(stream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::{ChatChunk, ChatServiceExt};
    use tower_test::mock;

    fn pair() -> (
        impl ChatService + Sync,
        mock::Handle<ChatRequest, ChatStream>,
    ) {
        let (service, handle) = mock::pair::<ChatRequest, ChatStream>();
        let service = tower::ServiceBuilder::new()
            .map_err(Error::from_boxed)
            .service(service);
        (service, handle)
    }

    #[tokio::test]
    async fn falls_back_on_retryable_errors_only() {
        let (primary, mut p) = pair();
        let (backup, mut b) = pair();
        let svc = FallbackLayer::new(backup).layer(primary);
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.chat("question").await }
        });
        let (req, respond) = p.next_request().await.unwrap();
        assert_eq!(req.messages[0].text(), "question");
        respond.send_error(Error::Timeout("slow".into()));
        let (req, respond) = b.next_request().await.unwrap();
        assert_eq!(req.messages[0].text(), "question");
        respond.send_response(ChatStream::from_chunks(vec![ChatChunk::text("backup")]));
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.text(), "backup");
        assert_eq!(
            response
                .extensions
                .get::<FellBack>()
                .map(|f| f.reason.as_str()),
            Some("timed out: slow")
        );

        // A bad request is not the primary's fault: no fallback.
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.chat("again").await }
        });
        let (_, respond) = p.next_request().await.unwrap();
        respond.send_error(Error::InvalidRequest("bad".into()));
        assert!(matches!(call.await.unwrap(), Err(Error::InvalidRequest(_))));

        // A primary that answers is used, with no mark.
        let call = tokio::spawn(async move { svc.chat("fine").await });
        let (_, respond) = p.next_request().await.unwrap();
        respond.send_response(ChatStream::from_chunks(vec![ChatChunk::text("primary")]));
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.text(), "primary");
        assert!(response.extensions.get::<FellBack>().is_none());
        drop(b);
    }

    #[tokio::test]
    async fn an_error_in_the_first_chunk_falls_back_and_the_predicate_is_used() {
        let (primary, mut p) = pair();
        let (backup, mut b) = pair();
        let svc = FallbackLayer::new(backup)
            .when(|e| matches!(e, Error::ModelNotFound(_)))
            .layer(primary);
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.complete("q").await }
        });
        let (_, respond) = p.next_request().await.unwrap();
        respond.send_response(ChatStream::from_error(Error::ModelNotFound("m".into())));
        let (_, respond) = b.next_request().await.unwrap();
        respond.send_response(ChatStream::from_chunks(vec![ChatChunk::text("b")]));
        assert_eq!(call.await.unwrap().unwrap(), "b");

        // Retryable, but not what the predicate asks for.
        let call = tokio::spawn(async move { svc.complete("q").await });
        let (_, respond) = p.next_request().await.unwrap();
        respond.send_error(Error::Timeout("t".into()));
        assert!(matches!(call.await.unwrap(), Err(Error::Timeout(_))));
    }
}
