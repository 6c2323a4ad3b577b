//! Guardrails that need no model: patterns, checksums, dictionaries and counts.

mod deny;
mod injection;
mod json;
mod length;
mod pattern;
mod pii;
mod secrets;
mod unicode;

pub use deny::DenyList;
pub use injection::PromptInjection;
pub use json::JsonValid;
pub use length::{LengthLimit, approx_tokens};
pub use pattern::RegexGuard;
pub use pii::{Pii, PiiKind};
pub use secrets::Secrets;
pub use unicode::InvisibleText;

use std::borrow::Cow;

use any_core::{Span, Verdict};

use crate::redact::redact;

/// A verdict from findings: passing when there are none, otherwise failing with `score`,
/// the spans, and the text with each span replaced by `replacement`.
pub(crate) fn from_findings(
    guardrail: &str,
    category: &str,
    score: f32,
    text: &str,
    mut spans: Vec<Span>,
    replacement: impl Fn(&Span) -> Cow<'static, str>,
) -> Verdict {
    if spans.is_empty() {
        return Verdict::pass(guardrail);
    }
    spans.sort_by_key(|s| (s.start, s.end));
    let mut labels: Vec<&str> = spans.iter().map(|s| s.label.as_str()).collect();
    labels.dedup();
    labels.sort_unstable();
    labels.dedup();
    let explanation = format!("found {} ({})", spans.len(), labels.join(", "));
    let redacted = redact(text, &spans, replacement);
    let mut v = Verdict::fail(guardrail, score, category, explanation);
    v.redacted = Some(redacted);
    v.spans = spans;
    v
}

/// Pushes `span` unless it overlaps one already found (earlier detectors take precedence).
pub(crate) fn push_disjoint(spans: &mut Vec<Span>, start: usize, end: usize, label: &str) -> bool {
    if spans.iter().any(|s| start < s.end && s.start < end) {
        return false;
    }
    spans.push(Span {
        start,
        end,
        label: label.to_owned(),
    });
    true
}

/// Whether the byte before `start` and the byte at `end` are not word characters, so a
/// match is a whole token (`prev_ok`/`next_ok` say what else may touch it).
pub(crate) fn standalone(text: &str, start: usize, end: usize, extra: &[u8]) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || extra.contains(&c);
    (start == 0 || !word(b[start - 1])) && (end >= b.len() || !word(b[end]))
}
