//! Guardrails that need no model: patterns, checksums, dictionaries and counts.

mod deny;
mod injection;
mod json;
mod learned;
mod length;
mod pattern;
mod pii;
mod secrets;
mod unicode;

pub use deny::DenyList;
pub use injection::PromptInjection;
pub use json::JsonValid;
pub use learned::{EmbeddingInjectionClassifier, InjectionClassifier, ModelError};
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

/// Spans found so far, kept disjoint and ordered by start: one overlapping a span already
/// found is dropped (earlier detectors take precedence). The overlap check looks up one
/// neighbour, so n findings cost O(n log n), not O(n²) as rescanning every span would.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    by_start: std::collections::BTreeMap<usize, Span>,
}

impl Findings {
    /// Records `start..end` unless it overlaps a span already found.
    pub(crate) fn push(&mut self, start: usize, end: usize, label: &str) -> bool {
        // The spans are disjoint, so the last one starting before `end` reaches furthest.
        if let Some((_, s)) = self.by_start.range(..end.max(start + 1)).next_back()
            && s.end > start
        {
            return false;
        }
        self.by_start.insert(
            start,
            Span {
                start,
                end,
                label: label.to_owned(),
            },
        );
        true
    }

    /// The spans, in text order.
    pub(crate) fn into_spans(self) -> Vec<Span> {
        self.by_start.into_values().collect()
    }
}

/// Whether the byte before `start` and the byte at `end` are not word characters, so a
/// match is a whole token (`prev_ok`/`next_ok` say what else may touch it).
pub(crate) fn standalone(text: &str, start: usize, end: usize, extra: &[u8]) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || extra.contains(&c);
    (start == 0 || !word(b[start - 1])) && (end >= b.len() || !word(b[end]))
}

#[cfg(test)]
mod tests {
    use super::Findings;

    #[test]
    fn findings_stay_disjoint_whatever_the_order() {
        let mut f = Findings::default();
        assert!(f.push(10, 20, "A"));
        assert!(!f.push(15, 25, "B"), "overlaps the end");
        assert!(!f.push(5, 11, "B"), "overlaps the start");
        assert!(!f.push(12, 13, "B"), "inside");
        assert!(!f.push(0, 100, "B"), "around");
        assert!(f.push(20, 30, "C"), "touching is not overlapping");
        assert!(f.push(0, 10, "D"));
        let spans: Vec<(usize, usize)> = f.into_spans().iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, [(0, 10), (10, 20), (20, 30)]);
    }
}
