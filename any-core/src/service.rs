//! The one service shape: [`ChatService`], its helpers, and the boxed form.

use std::future::Future;

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::{ChatRequest, ChatResponse, ChatStream, EmbedRequest, EmbedResponse, Error, Result};

/// A chat model, or anything that stands in for one: a guarded stack, a memory-backed stack,
/// an agent.
///
/// It is any `tower::Service<ChatRequest, Response = ChatStream, Error = Error>` that is
/// cheap to clone and can move across threads; the blanket implementation means nothing needs
/// to implement it by hand. Because it *is* a tower service, tower's own layers (concurrency
/// limits, load balancing, buffering) apply unchanged; those that box errors (timeout) come
/// back to this shape with `.map_err(Error::from_boxed)`.
pub trait ChatService:
    Service<ChatRequest, Response = ChatStream, Error = Error, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> ChatService for S where
    S: Service<ChatRequest, Response = ChatStream, Error = Error, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A type-erased [`ChatService`]: `Clone + Send + Sync`, for code that does not want
/// generics. `any_llm::model("provider:model")` returns one.
pub type BoxChatService = BoxCloneSyncService<ChatRequest, ChatStream, Error>;

/// An embedding model: `tower::Service<EmbedRequest, Response = EmbedResponse>`.
pub trait EmbedService:
    Service<EmbedRequest, Response = EmbedResponse, Error = Error, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> EmbedService for S where
    S: Service<EmbedRequest, Response = EmbedResponse, Error = Error, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A type-erased [`EmbedService`].
pub type BoxEmbedService = BoxCloneSyncService<EmbedRequest, EmbedResponse, Error>;

/// Conveniences for every [`ChatService`]: ask and get a whole answer, a stream, or text.
///
/// Each call clones the service (services are cheap to clone) and waits for it to be ready,
/// so they take `&self`.
///
/// ```
/// use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// // A "model" that answers every request with the last user message, reversed.
/// let echo = tower::service_fn(|req: ChatRequest| async move {
///     let last = req.messages.last().map(|m| m.text().chars().rev().collect::<String>());
///     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text(last.unwrap_or_default())]))
/// });
/// assert_eq!(echo.complete("abc").await?, "cba");
/// let boxed = echo.boxed_chat();
/// assert_eq!(boxed.chat("xyz").await?.text(), "zyx");
/// # Ok(())
/// # }
/// ```
pub trait ChatServiceExt: ChatService {
    /// Sends the request and returns the stream of chunks.
    fn stream(
        &self,
        request: impl Into<ChatRequest>,
    ) -> impl Future<Output = Result<ChatStream>> + Send {
        let svc = self.clone();
        let request = request.into();
        async move { svc.oneshot(request).await }
    }

    /// Sends the request and collects the whole answer.
    fn chat(
        &self,
        request: impl Into<ChatRequest>,
    ) -> impl Future<Output = Result<ChatResponse>> + Send {
        let fut = self.stream(request);
        async move { fut.await?.collect_response().await }
    }

    /// Asks with one user message and returns the answer's text.
    fn complete(&self, prompt: &str) -> impl Future<Output = Result<String>> + Send {
        let fut = self.chat(prompt);
        async move { Ok(fut.await?.message.content.text().into_owned()) }
    }

    /// Erases the service's type.
    fn boxed_chat(self) -> BoxChatService
    where
        Self: Sync,
    {
        BoxCloneSyncService::new(self)
    }
}

impl<S: ChatService> ChatServiceExt for S {}

/// Conveniences for every [`EmbedService`].
pub trait EmbedServiceExt: EmbedService {
    /// Embeds the texts.
    fn embed<I, T>(&self, inputs: I) -> impl Future<Output = Result<Vec<Vec<f32>>>> + Send
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let svc = self.clone();
        let req = EmbedRequest::new(inputs);
        async move { Ok(svc.oneshot(req).await?.embeddings) }
    }

    /// Erases the service's type.
    fn boxed_embed(self) -> BoxEmbedService
    where
        Self: Sync,
    {
        BoxCloneSyncService::new(self)
    }
}

impl<S: EmbedService> EmbedServiceExt for S {}
