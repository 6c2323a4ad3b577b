//! Watching a response stream pass, and recording the turn when it ends cleanly.

use std::sync::Arc;

use any_core::{BoxedChunks, ChatChunk, FinishReason, Result, Role};
use futures_util::{Stream, StreamExt};

use super::TURN;
use crate::{MemoryStore, NewMemory, Scope};

struct Watch {
    chunks: BoxedChunks,
    store: Arc<dyn MemoryStore>,
    scope: Scope,
    question: String,
    answer: String,
    failed: bool,
    filtered: bool,
    done: bool,
}

/// Passes every chunk on; at the end of a stream that yielded no error and was not cut by a
/// content filter, records the question and the answer in one `add_many`. A failed
/// recording is the stream's last item. Dropping the stream early records nothing.
pub(super) fn record_turn(
    chunks: BoxedChunks,
    store: Arc<dyn MemoryStore>,
    scope: Scope,
    question: String,
) -> impl Stream<Item = Result<ChatChunk>> + Send + 'static {
    let watch = Watch {
        chunks,
        store,
        scope,
        question,
        answer: String::new(),
        failed: false,
        filtered: false,
        done: false,
    };
    futures_util::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        match w.chunks.next().await {
            Some(Ok(chunk)) => {
                w.answer.push_str(&chunk.text);
                if chunk.finish_reason == Some(FinishReason::ContentFilter) {
                    w.filtered = true;
                }
                Some((Ok(chunk), w))
            }
            Some(Err(e)) => {
                w.failed = true;
                Some((Err(e), w))
            }
            None => {
                w.done = true;
                if w.failed || w.filtered || w.answer.trim().is_empty() {
                    return None;
                }
                let turn = vec![
                    NewMemory::new(w.scope.clone(), Role::User, std::mem::take(&mut w.question))
                        .metadata("kind", TURN),
                    NewMemory::new(
                        w.scope.clone(),
                        Role::Assistant,
                        std::mem::take(&mut w.answer),
                    )
                    .metadata("kind", TURN),
                ];
                match w.store.add_many(turn).await {
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "the memory layer could not record a turn");
                        Some((Err(e.into()), w))
                    }
                }
            }
        }
    })
}
