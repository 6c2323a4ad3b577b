//! Rewriting findings out of text, and putting them back.

use std::collections::BTreeMap;

use any_core::Span;

/// Replaces each span of `text` with `replacement(span)`.
///
/// Spans may come in any order and may overlap; where they overlap, the one that starts
/// first (the longer, on a tie) wins and the others are dropped, so the result never cuts a
/// finding in half. Spans that are out of range or not on character boundaries are skipped.
///
/// ```
/// use any_core::Span;
/// let spans = [Span { start: 3, end: 16, label: "EMAIL".into() }];
/// let out = any_guard::redact("Hi a@example.com!", &spans, |s| format!("[{}]", s.label));
/// assert_eq!(out, "Hi [EMAIL]!");
/// ```
pub fn redact<R: AsRef<str>>(
    text: &str,
    spans: &[Span],
    mut replacement: impl FnMut(&Span) -> R,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in disjoint(spans) {
        if span.start < at || !text.is_char_boundary(span.start) || !text.is_char_boundary(span.end)
        {
            continue;
        }
        out.push_str(&text[at..span.start]);
        out.push_str(replacement(span).as_ref());
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The spans in text order, without overlaps (first start wins, longer on a tie).
pub(crate) fn disjoint(spans: &[Span]) -> Vec<&Span> {
    let mut sorted: Vec<&Span> = spans.iter().filter(|s| s.start < s.end).collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out: Vec<&Span> = Vec::with_capacity(sorted.len());
    for s in sorted {
        if out.last().is_none_or(|last| s.start >= last.end) {
            out.push(s);
        }
    }
    out
}

/// Placeholders and the values they replaced, so an answer that repeats a placeholder can be
/// given its value back.
///
/// A guard layer configured with [`Guards::reversible`](crate::Guards::reversible) numbers its
/// placeholders (`[EMAIL_1]`, `[EMAIL_2]`) and records them here; the map travels in the
/// request's and the response's extensions.
///
/// ```
/// use any_guard::RedactionMap;
/// let mut map = RedactionMap::default();
/// let p = map.placeholder("EMAIL", "ada@example.com");
/// assert_eq!(p, "[EMAIL_1]");
/// assert_eq!(map.placeholder("EMAIL", "ada@example.com"), "[EMAIL_1]");
/// assert_eq!(map.restore("Write to [EMAIL_1]."), "Write to ada@example.com.");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionMap {
    by_placeholder: BTreeMap<String, String>,
    counts: BTreeMap<String, usize>,
}

impl RedactionMap {
    /// The placeholder for `original` found as `label`: the same value always gets the same
    /// placeholder, a new value the next number.
    pub fn placeholder(&mut self, label: &str, original: &str) -> String {
        if let Some((p, _)) = self
            .by_placeholder
            .iter()
            .find(|(p, o)| o.as_str() == original && p.starts_with(&format!("[{label}_")))
        {
            return p.clone();
        }
        let n = self.counts.entry(label.to_owned()).or_insert(0);
        *n += 1;
        let p = format!("[{label}_{n}]");
        self.by_placeholder.insert(p.clone(), original.to_owned());
        p
    }

    /// The original value of a placeholder.
    pub fn get(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// The placeholders and their values, in placeholder order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_placeholder
            .iter()
            .map(|(p, o)| (p.as_str(), o.as_str()))
    }

    /// `text` with every known placeholder replaced by its original value.
    pub fn restore(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let tail = &rest[open..];
            match tail
                .find(']')
                .and_then(|close| self.by_placeholder.get(&tail[..=close]).map(|o| (close, o)))
            {
                Some((close, original)) => {
                    out.push_str(original);
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push('[');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, label: &str) -> Span {
        Span {
            start,
            end,
            label: label.into(),
        }
    }

    #[test]
    fn overlapping_spans_keep_the_first_and_longest() {
        let text = "0123456789";
        let spans = [
            span(2, 5, "B"),
            span(0, 3, "A"),
            span(0, 2, "X"),
            span(6, 8, "C"),
        ];
        let out = redact(text, &spans, |s| format!("<{}>", s.label));
        assert_eq!(out, "<A>345<C>89");
    }

    #[test]
    fn multibyte_text_keeps_its_neighbours() {
        let text = "é→ a@b.io ✓";
        let start = text.find('a').unwrap();
        let spans = [span(start, start + 6, "EMAIL")];
        let out = redact(text, &spans, |_| "[EMAIL]");
        assert_eq!(out, "é→ [EMAIL] ✓");
    }

    #[test]
    fn restore_leaves_unknown_brackets() {
        let mut map = RedactionMap::default();
        map.placeholder("PHONE", "+44 20 7946 0958");
        assert_eq!(
            map.restore("[x] call [PHONE_1] or [PHONE_2] [PHONE_1"),
            "[x] call +44 20 7946 0958 or [PHONE_2] [PHONE_1"
        );
    }
}
