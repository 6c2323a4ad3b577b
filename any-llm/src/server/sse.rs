//! The body of a streamed answer: server-sent events, `data: {chunk}\n\n` ... `data: [DONE]\n\n`.

use std::convert::Infallible;

use any_core::{ChatChunk, ChatStream, FinishReason, Usage};
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::json_bytes;
use crate::wire::openai::{ChatCompletionChunk, Completion};

/// Where the stream is.
enum Phase {
    /// The role delta goes first.
    Role,
    /// The first chunk, read before the answer's headers were sent.
    First,
    /// The service's chunks.
    Chunks,
    /// Usage, if asked for, then `[DONE]`.
    Usage,
    Done,
    End,
}

struct State {
    phase: Phase,
    first: Option<ChatChunk>,
    chunks: ChatStream,
    completion: Completion,
    include_usage: bool,
    usage: Option<Usage>,
    finished: bool,
    /// Turns true when a shutdown's grace period is over: the answer then ends here.
    ending: tokio::sync::watch::Receiver<bool>,
    // Held until the stream ends or is dropped: a stream occupies a request slot.
    _permit: OwnedSemaphorePermit,
}

fn event(bytes: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl State {
    /// The service's next chunk; at the end of a shutdown's grace period, a `length`
    /// finish instead (the answer was cut short), with generation cancelled.
    async fn next_or_end(&mut self) -> Option<any_core::Result<ChatChunk>> {
        let ending = tokio::select! {
            biased;
            next = self.chunks.next() => return next,
            ended = async { self.ending.wait_for(|e| *e).await.is_ok() } => ended,
        };
        if !ending {
            // The server is gone without ending us: go on to the end of the answer.
            return self.chunks.next().await;
        }
        if !self.finished {
            tracing::info!("server shutting down: a streamed answer ends unfinished");
            self.chunks = ChatStream::from_chunks(Vec::new());
            return Some(Ok(ChatChunk::finish(FinishReason::Length, None)));
        }
        None
    }

    /// The event for a service chunk, or `None` if it says nothing on the wire.
    fn chunk_event(&mut self, chunk: ChatChunk) -> Option<Bytes> {
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.finish_reason.is_some() {
            self.finished = true;
        }
        let wire = ChatCompletionChunk::from_chunk(&chunk, &self.completion);
        (!wire.is_empty()).then(|| event(&json_bytes(&wire)))
    }
}

/// The streamed body. `first` is the chunk already read (or `None` if the stream was
/// empty); dropping the body (the client went away) drops `chunks`, which cancels
/// generation.
pub(super) fn body(
    first: Option<ChatChunk>,
    chunks: ChatStream,
    completion: Completion,
    include_usage: bool,
    permit: OwnedSemaphorePermit,
    ending: tokio::sync::watch::Receiver<bool>,
) -> Body {
    let state = State {
        phase: Phase::Role,
        first,
        chunks,
        completion,
        include_usage,
        usage: None,
        finished: false,
        ending,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(state, |mut st| {
        async move {
            loop {
                match std::mem::replace(&mut st.phase, Phase::End) {
                    Phase::Role => {
                        st.phase = Phase::First;
                        let role = ChatCompletionChunk::role(&st.completion);
                        return Some((event(&json_bytes(&role)), st));
                    }
                    Phase::First => {
                        st.phase = Phase::Chunks;
                        if let Some(e) = st.first.take().and_then(|c| st.chunk_event(c)) {
                            return Some((e, st));
                        }
                    }
                    Phase::Chunks => match st.next_or_end().await {
                        Some(Ok(chunk)) => {
                            st.phase = Phase::Chunks;
                            if let Some(e) = st.chunk_event(chunk) {
                                return Some((e, st));
                            }
                        }
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, "a streamed answer failed");
                            let (_, object) = super::error::public_error(&err);
                            return Some((event(&json_bytes(&object.into_response())), st));
                        }
                        None => {
                            st.phase = Phase::Usage;
                            if !st.finished {
                                // The stream ended without saying why; on the wire, every
                                // choice ends with a reason.
                                let end = ChatChunk::finish(FinishReason::Stop, None);
                                let wire = ChatCompletionChunk::from_chunk(&end, &st.completion);
                                return Some((event(&json_bytes(&wire)), st));
                            }
                        }
                    },
                    Phase::Usage => {
                        st.phase = Phase::Done;
                        if st.include_usage
                            && let Some(usage) = st.usage
                        {
                            let wire = ChatCompletionChunk::usage(usage, &st.completion);
                            return Some((event(&json_bytes(&wire)), st));
                        }
                    }
                    Phase::Done => {
                        return Some((Bytes::from_static(b"data: [DONE]\n\n"), st));
                    }
                    Phase::End => return None,
                }
            }
        }
    });
    Body::from_stream(events.map(Ok::<_, Infallible>))
}
