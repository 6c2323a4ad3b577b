//! [`ChatStream`]: the response type of every chat service.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;
use sync_wrapper::SyncWrapper;

use crate::{Accumulator, ChatChunk, ChatResponse, Extensions, Result};

type BoxChunkStream = Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send + 'static>>;

/// A stream of [`ChatChunk`]s, as every chat service answers.
///
/// Dropping it cancels generation. Collect it with [`ChatStream::collect_response`] (what
/// [`ChatServiceExt::chat`](crate::ChatServiceExt::chat) does), or read chunks as they come.
///
/// The stream carries typed `extensions` known when it starts (the model that answers, a
/// layer's notes); chunks can carry more, which the accumulator merges.
///
/// ```
/// use any_core::{ChatChunk, ChatStream, FinishReason};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// let stream = ChatStream::from_chunks(vec![
///     ChatChunk::text("Hel"),
///     ChatChunk::text("lo"),
///     ChatChunk::finish(FinishReason::Stop, None),
/// ]);
/// let response = stream.collect_response().await?;
/// assert_eq!(response.text(), "Hello");
/// # Ok(())
/// # }
/// ```
pub struct ChatStream {
    inner: SyncWrapper<BoxChunkStream>,
    extensions: Extensions,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// Wraps any stream of chunks.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<ChatChunk>> + Send + 'static,
    {
        ChatStream {
            inner: SyncWrapper::new(Box::pin(stream)),
            extensions: Extensions::new(),
        }
    }

    /// A stream of these chunks, in order.
    pub fn from_chunks(chunks: Vec<ChatChunk>) -> Self {
        Self::new(futures_util::stream::iter(chunks.into_iter().map(Ok)))
    }

    /// A one-chunk stream carrying a whole response: for services that do not stream.
    pub fn from_response(response: ChatResponse) -> Self {
        let ChatResponse {
            message,
            finish_reason,
            usage,
            logprobs,
            model,
            extensions,
        } = response;
        let tool_calls = message
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| crate::ToolCallDelta {
                index: i as u32,
                id: Some(c.id),
                name: Some(c.name),
                arguments: c.arguments,
            })
            .collect();
        let chunk = ChatChunk {
            text: message.content.text().into_owned(),
            tool_calls,
            finish_reason,
            usage,
            logprobs,
            model,
            extensions: Extensions::new(),
        };
        let mut stream = Self::from_chunks(vec![chunk]);
        stream.extensions = extensions;
        stream
    }

    /// A stream that yields `error` and ends.
    pub fn from_error(error: crate::Error) -> Self {
        Self::new(futures_util::stream::iter([Err(error)]))
    }

    /// Typed values attached to the whole stream.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Typed values attached to the whole stream, to change.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Transforms every item, keeping the stream's extensions: how layers watch a stream
    /// pass.
    pub fn map_stream<F, S>(self, f: F) -> Self
    where
        F: FnOnce(BoxedChunks) -> S,
        S: Stream<Item = Result<ChatChunk>> + Send + 'static,
    {
        let ChatStream { inner, extensions } = self;
        let mut mapped = Self::new(f(BoxedChunks(inner.into_inner())));
        mapped.extensions = extensions;
        mapped
    }

    /// Reads the stream to its end and builds the response.
    ///
    /// # Errors
    /// The first error the stream yields, or the accumulator's if the chunks do not add up.
    pub async fn collect_response(mut self) -> Result<ChatResponse> {
        let mut acc = Accumulator::new();
        while let Some(chunk) = self.next().await {
            acc.push(chunk?);
        }
        let mut response = acc.finish()?;
        let mut ext = std::mem::take(&mut self.extensions);
        ext.extend(std::mem::take(&mut response.extensions));
        response.extensions = ext;
        Ok(response)
    }
}

impl Stream for ChatStream {
    type Item = Result<ChatChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.get_mut().as_mut().poll_next(cx)
    }
}

/// The chunk stream inside a [`ChatStream`], handed to [`ChatStream::map_stream`].
pub struct BoxedChunks(BoxChunkStream);

impl std::fmt::Debug for BoxedChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedChunks").finish_non_exhaustive()
    }
}

impl Stream for BoxedChunks {
    type Item = Result<ChatChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.as_mut().poll_next(cx)
    }
}
