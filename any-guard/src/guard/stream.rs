//! Guarding a streamed output: release text as soon as it is known safe.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use any_core::{BoxedChunks, ChatChunk, Error, Result, Span, Verdict};
use futures_util::{Stream, StreamExt};

use super::layer::{Guards, Policy, Verdicts};
use super::{apply_redactions, note, run_checks};
use crate::{StreamScope, Subject};

/// The state of one guarded stream.
///
/// Text moves from `pending` (arrived, not yet released) to the caller once the guardrails
/// have seen it with at least `window` bytes after it, so a finding still completing at the
/// end of `pending` is never released early. `context` keeps the tail of the released text,
/// so a finding that starts there and ends in `pending` is still seen whole.
struct Output {
    chunks: BoxedChunks,
    guards: Arc<Guards>,
    window: usize,
    hold_all: bool,
    context: String,
    pending: String,
    full: String,
    released: usize,
    recorded: Vec<Verdict>,
    attached: bool,
    whole_noted: Vec<bool>,
    queue: VecDeque<Result<ChatChunk>>,
    done: bool,
}

pub(super) fn guard_output(
    chunks: BoxedChunks,
    guards: Arc<Guards>,
    prior: Vec<Verdict>,
) -> impl Stream<Item = Result<ChatChunk>> + Send + 'static {
    let state = Output {
        chunks,
        window: guards.window(),
        hold_all: guards.holds_all(),
        whole_noted: vec![false; guards.entries.len()],
        guards,
        context: String::new(),
        pending: String::new(),
        full: String::new(),
        released: 0,
        recorded: prior,
        attached: false,
        queue: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.queue.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.chunks.next().await {
                Some(Ok(chunk)) => st.on_chunk(chunk).await,
                Some(Err(e)) => {
                    st.queue.push_back(Err(e));
                    st.done = true;
                }
                None => st.on_end().await,
            }
        }
    })
}

/// The largest byte offset of `text` at or before `limit` that ends on whitespace, or, when a
/// run without whitespace is that long, the character boundary at `limit`.
fn safe_cut(text: &str, limit: usize) -> usize {
    let mut limit = limit.min(text.len());
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    match text[..limit].rfind(char::is_whitespace) {
        Some(i) => i + text[i..].chars().next().map_or(1, char::len_utf8),
        None => limit,
    }
}

/// Whether a chunk carries nothing at all.
fn is_empty(chunk: &ChatChunk) -> bool {
    chunk.text.is_empty()
        && chunk.tool_calls.is_empty()
        && chunk.finish_reason.is_none()
        && chunk.usage.is_none()
        && chunk.logprobs.is_empty()
        && chunk.model.is_none()
        && chunk.extensions.is_empty()
}

impl Output {
    async fn on_chunk(&mut self, mut chunk: ChatChunk) {
        let finished = chunk.finish_reason.is_some();
        if chunk.text.is_empty() && !finished {
            self.queue.push_back(Ok(chunk));
            return;
        }
        self.pending.push_str(&chunk.text);
        self.full.push_str(&chunk.text);
        match self.release(finished).await {
            Ok(text) => {
                chunk.text = text;
                if finished {
                    self.attach(&mut chunk);
                }
                if !is_empty(&chunk) {
                    self.queue.push_back(Ok(chunk));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    async fn on_end(&mut self) {
        self.done = true;
        let mut chunk = ChatChunk::default();
        if !self.pending.is_empty() || !self.attached {
            match self.release(true).await {
                Ok(text) => chunk.text = text,
                Err(e) => return self.fail(e),
            }
        }
        self.attach(&mut chunk);
        if !is_empty(&chunk) {
            self.queue.push_back(Ok(chunk));
        }
    }

    fn fail(&mut self, e: Error) {
        self.pending.clear();
        self.queue.push_back(Err(e));
        self.done = true;
    }

    /// Puts the recorded verdicts on `chunk`, once.
    fn attach(&mut self, chunk: &mut ChatChunk) {
        if !self.attached && !self.recorded.is_empty() {
            chunk.extensions.insert(Verdicts(self.recorded.clone()));
            self.attached = true;
        }
    }

    /// Checks what has arrived and returns the text that can be released now, redacted.
    ///
    /// # Errors
    /// [`Error::Blocked`] when a blocking guardrail fails on text not yet released (or a
    /// redacting one fails with nothing to redact); a guardrail's own error.
    async fn release(&mut self, finished: bool) -> Result<String> {
        let ctx_len = self.context.len();
        let released = self.released;
        let window_text = format!("{}{}", self.context, self.pending);
        let window_subject = Subject::Output {
            text: &window_text,
            complete: finished,
        };
        let full_subject = Subject::Output {
            text: &self.full,
            complete: finished,
        };
        // Where a scope's spans start, in pending's coordinates.
        let offset = |scope: StreamScope| match scope {
            StreamScope::Window(_) => ctx_len,
            _ => released,
        };
        let entries = &self.guards.entries;
        let verdicts = run_checks(
            entries,
            |e| match e.guardrail.stream_scope() {
                StreamScope::Window(_) => Some(&window_subject),
                StreamScope::Prefix => Some(&full_subject),
                StreamScope::Complete => finished.then_some(&full_subject),
            },
            |e, v| {
                let base = offset(e.guardrail.stream_scope());
                !v.valid && (v.spans.is_empty() || v.spans.iter().any(|s| s.end > base))
            },
        )
        .await?;

        let mut cut = if finished {
            self.pending.len()
        } else if self.hold_all || self.pending.len() <= self.window {
            0
        } else {
            safe_cut(&self.pending, self.pending.len() - self.window)
        };
        let mut redactions: Vec<(Span, Cow<'static, str>)> = Vec::new();
        let mut flagged: Vec<(Policy, Verdict, Vec<Span>)> = Vec::new();
        for (i, (entry, verdict)) in entries.iter().zip(verdicts).enumerate() {
            let Some(verdict) = verdict.filter(|v| !v.valid) else {
                continue;
            };
            if verdict.spans.is_empty() {
                match entry.policy {
                    Policy::Block | Policy::Redact => {
                        note(&verdict, entry.policy);
                        return Err(Error::Blocked(Box::new(verdict)));
                    }
                    Policy::Warn | Policy::Monitor if !self.whole_noted[i] => {
                        self.whole_noted[i] = true;
                        note(&verdict, entry.policy);
                        if entry.policy == Policy::Warn {
                            self.recorded.push(verdict);
                        }
                    }
                    Policy::Warn | Policy::Monitor => {}
                }
                continue;
            }
            let base = offset(entry.guardrail.stream_scope());
            let spans: Vec<Span> = verdict
                .spans
                .iter()
                .filter(|s| s.end > base)
                .map(|s| Span {
                    start: s.start.saturating_sub(base),
                    end: s.end - base,
                    label: s.label.clone(),
                })
                .collect();
            if spans.is_empty() {
                continue;
            }
            match entry.policy {
                Policy::Redact => redactions.extend(spans.into_iter().map(|s| {
                    let r = entry.guardrail.replacement(&s);
                    (s, r)
                })),
                policy => flagged.push((policy, verdict, spans)),
            }
        }

        // Never release part of a finding: stop before any that the cut would split.
        loop {
            let straddling = redactions
                .iter()
                .map(|(s, _)| s)
                .chain(flagged.iter().flat_map(|(_, _, spans)| spans))
                .filter(|s| s.start < cut && s.end > cut)
                .map(|s| s.start)
                .min();
            match straddling {
                Some(start) => cut = start,
                None => break,
            }
        }

        redactions.retain(|(s, _)| s.end <= cut);
        let out = apply_redactions(&self.pending[..cut], redactions, None);
        for (policy, mut verdict, spans) in flagged {
            let inside: Vec<Span> = spans
                .into_iter()
                .filter(|s| s.end <= cut)
                .map(|s| Span {
                    start: s.start + released,
                    end: s.end + released,
                    label: s.label,
                })
                .collect();
            if inside.is_empty() {
                continue;
            }
            // Spans now refer to the whole output; the window's redaction would not.
            verdict.spans = inside;
            verdict.redacted = None;
            note(&verdict, policy);
            if policy == Policy::Warn {
                self.recorded.push(verdict);
            }
        }

        self.released += cut;
        self.context.push_str(&self.pending[..cut]);
        if self.context.len() > self.window {
            let mut from = self.context.len() - self.window;
            while !self.context.is_char_boundary(from) {
                from += 1;
            }
            self.context.drain(..from);
        }
        self.pending.drain(..cut);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::safe_cut;

    #[test]
    fn cuts_after_whitespace_on_char_boundaries() {
        assert_eq!(safe_cut("hello world again", 12), 12);
        assert_eq!(safe_cut("hello world again", 10), 6);
        assert_eq!(safe_cut("héllo", 2), 1);
        assert_eq!(safe_cut("ab\u{3000}cd", 6), 5);
    }
}
