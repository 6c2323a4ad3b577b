//! Invisible and bidirectional-control characters.

use std::borrow::Cow;

use any_core::Span;

use super::from_findings;
use crate::normalize::is_invisible;
use crate::{Check, Guardrail, StreamScope, Subject};

/// What kind of invisible character `c` is, if it is one.
fn classify(c: char) -> Option<&'static str> {
    match c {
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("BIDI_CONTROL"),
        '\u{E0000}'..='\u{E007F}' => Some("TAG_CHARACTER"),
        '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{180E}' => {
            Some("ZERO_WIDTH")
        }
        '\u{E0100}'..='\u{E01EF}' => Some("VARIATION_SELECTOR"),
        c if is_invisible(c) => Some("FORMAT_CHARACTER"),
        _ => None,
    }
}

/// Whether `c` belongs to a script whose spelling uses zero-width (non-)joiners between
/// letters: Arabic-script languages (Persian `می‌دانم`, Urdu, Kurdish), the Brahmic scripts
/// of South and South-East Asia (Hindi, Bengali, Malayalam, Sinhala...), Tibetan, Myanmar,
/// Khmer.
fn uses_joiners(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        matches!(
            c as u32,
            0x0600..=0x08FF
                | 0x0900..=0x0DFF
                | 0x0F00..=0x109F
                | 0x1780..=0x17FF
                | 0xA8E0..=0xA8FF
                | 0xFB50..=0xFDFF
                | 0xFE70..=0xFEFF
        )
    })
}

/// Whether `c` is a letter of a right-to-left script (Hebrew, Arabic, Syriac, Thaana, N'Ko
/// and their presentation forms), beside which direction marks are ordinary typography.
fn right_to_left(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        matches!(
            c as u32,
            0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF
        )
    })
}

/// Whether `c` takes part in emoji sequences, where a zero-width joiner is legitimate.
fn is_emoji_like(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        matches!(c as u32, 0x2600..=0x27BF | 0x1F000..=0x1FAFF)
            || ('\u{FE00}'..='\u{FE0F}').contains(&c)
    })
}

/// Finds characters that render as nothing but change what a model or a reader sees:
/// bidirectional overrides and isolates (the "Trojan Source" trick), zero-width spaces and
/// joiners, Unicode tag characters (which smuggle hidden ASCII to a model), supplementary
/// variation selectors and other format characters. Redaction removes them.
///
/// Zero-width joiners inside emoji sequences (👩‍💻) are allowed, and so are zero-width
/// joiners and non-joiners between letters of the scripts whose spelling uses them (Persian
/// `می‌دانم`, Hindi, Malayalam...), and direction marks (U+200E, U+200F, U+061C) beside a
/// letter of a right-to-left script; a byte-order mark at the very start of a text is
/// ignored. Direction overrides and isolates are always found.
///
/// ```
/// use any_guard::{Guardrail, InvisibleText, Subject};
/// let v = InvisibleText.check_now(&Subject::text("pay\u{202E}dlrow"));
/// assert!(!v.valid);
/// assert_eq!(v.spans[0].label, "BIDI_CONTROL");
/// assert_eq!(v.redacted.as_deref(), Some("paydlrow"));
/// assert!(InvisibleText.check_now(&Subject::text("👩\u{200D}💻 ok")).valid);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InvisibleText;

impl InvisibleText {
    /// The invisible characters in `text`, one span each (adjacent ones of one kind merged).
    pub fn scan(&self, text: &str) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        let mut prev: Option<char> = None;
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, c)| c);
            let kind = match classify(c) {
                Some("ZERO_WIDTH")
                    if c == '\u{200D}' && is_emoji_like(prev) && is_emoji_like(next) =>
                {
                    None
                }
                Some("ZERO_WIDTH")
                    if matches!(c, '\u{200C}' | '\u{200D}')
                        && uses_joiners(prev)
                        && uses_joiners(next) =>
                {
                    None
                }
                // The direction marks (not the overrides and isolates of "Trojan Source")
                // keep punctuation and numbers in place in right-to-left text.
                Some("BIDI_CONTROL")
                    if matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
                        && (right_to_left(prev) || right_to_left(next)) =>
                {
                    None
                }
                Some(_) if c == '\u{FEFF}' && i == 0 => None,
                k => k,
            };
            prev = Some(c);
            let Some(label) = kind else { continue };
            let end = i + c.len_utf8();
            match spans.last_mut() {
                Some(last) if last.end == i && last.label == label => last.end = end,
                _ => spans.push(Span {
                    start: i,
                    end,
                    label: label.to_owned(),
                }),
            }
        }
        spans
    }
}

impl Guardrail for InvisibleText {
    fn name(&self) -> &str {
        "invisible_text"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        let spans = self.scan(&text);
        let score = if spans
            .iter()
            .any(|s| s.label == "BIDI_CONTROL" || s.label == "TAG_CHARACTER")
        {
            0.9
        } else {
            0.5
        };
        Check::ready(from_findings(
            "invisible_text",
            "invisible_text",
            score,
            &text,
            spans,
            |_| Cow::Borrowed(""),
        ))
    }

    fn stream_scope(&self) -> StreamScope {
        StreamScope::Window(8)
    }

    fn replacement(&self, _span: &Span) -> Cow<'static, str> {
        Cow::Borrowed("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_each_kind() {
        let text = "a\u{200B}b\u{2067}c\u{E0041}\u{E0042}d\u{AD}e";
        let labels: Vec<String> = InvisibleText
            .scan(text)
            .into_iter()
            .map(|s| s.label)
            .collect();
        assert_eq!(
            labels,
            [
                "ZERO_WIDTH",
                "BIDI_CONTROL",
                "TAG_CHARACTER",
                "FORMAT_CHARACTER"
            ]
        );
        let v = InvisibleText.check_now(&Subject::text(text));
        assert_eq!(v.redacted.as_deref(), Some("abcde"));
        assert_eq!(v.spans[2].end - v.spans[2].start, 8);
    }

    #[test]
    fn joiners_between_latin_letters_are_still_found() {
        let spans = InvisibleText.scan("ig\u{200C}nore pre\u{200D}vious");
        assert_eq!(spans.len(), 2);
        // Between a Persian letter and a Latin one it is no spelling either.
        assert_eq!(InvisibleText.scan("م\u{200C}a").len(), 1);
        // Direction marks between Latin letters, and overrides anywhere, are found.
        assert_eq!(InvisibleText.scan("pay\u{200F}pal").len(), 1);
        assert_eq!(InvisibleText.scan("שלום\u{202E}abc").len(), 1);
    }

    #[test]
    fn ordinary_text_and_emoji_pass() {
        for text in [
            "\u{FEFF}hello",
            "naïve café — 東京",
            "👨\u{200D}👩\u{200D}👧",
            "❤\u{FE0F}",
            "می\u{200C}دانم",
            "क्\u{200D}ष",
            "\"گروه سیمان\u{200E}\", 12",
            "שלום\u{200F}!",
        ] {
            assert!(InvisibleText.scan(text).is_empty(), "{text:?}");
        }
    }
}
