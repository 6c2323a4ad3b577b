//! Deny lists of words and topics, matched like a person reads them.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use any_core::Span;

use super::from_findings;
use crate::normalize::normalize;
use crate::{Check, Guardrail, StreamScope, Subject};

/// Rejects text that mentions listed words or phrases, grouped by topic.
///
/// Matching is case-insensitive and sees through spacing, separators (`b-a-d`, `b.a.d`),
/// letter-by-letter spelling, look-alike letters and invisible characters; it respects word
/// boundaries, so listing `ass` does not flag `class`. Phrases match across any run of
/// spaces or separators between their words. All terms are searched in one pass
/// (Aho-Corasick), whatever the size of the list.
///
/// ```
/// use any_guard::{DenyList, Guardrail, Subject};
/// let guard = DenyList::new()
///     .topic("competitors", ["acme corp", "globex"])
///     .words(["darn"]);
/// let v = guard.check_now(&Subject::text("Have you tried ACME   Corp? Darn."));
/// assert!(!v.valid);
/// assert_eq!(v.redacted.as_deref(), Some("Have you tried [COMPETITORS]? [DENIED]."));
/// assert!(guard.check_now(&Subject::text("Globexian is not a word we list")).valid);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    terms: Vec<String>,
    labels: Vec<String>,
    matcher: Option<AhoCorasick>,
    longest: usize,
}

impl DenyList {
    /// An empty list, which passes everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds words or phrases, labelled `DENIED`.
    pub fn words<I, S>(self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.add("DENIED", words)
    }

    /// Adds words or phrases of a topic, labelled with the topic in upper case.
    pub fn topic<I, S>(self, topic: &str, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.add(&topic.to_uppercase().replace(' ', "_"), words)
    }

    fn add<I, S>(mut self, label: &str, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for w in words {
            let term = normalize(w.as_ref()).text;
            if term.is_empty() {
                continue;
            }
            self.longest = self.longest.max(w.as_ref().len());
            self.terms.push(term);
            self.labels.push(label.to_owned());
        }
        self.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&self.terms)
            .ok();
        self
    }

    /// The listed terms found in `text`, as spans of the original text.
    pub fn scan(&self, text: &str) -> Vec<Span> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        let n = normalize(text);
        let bytes = n.text.as_bytes();
        let is_word = |i: usize| {
            n.text[i..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric)
        };
        let boundary_before = |i: usize| {
            i == 0 || {
                let prev = n.text[..i].chars().next_back();
                !prev.is_some_and(char::is_alphanumeric)
            }
        };
        let mut spans: Vec<Span> = Vec::new();
        let mut at = 0;
        // Leftmost-longest, but a match that fails the word-boundary test does not hide a
        // real one starting inside it: the search resumes one character later.
        while at < bytes.len() {
            let input = aho_corasick::Input::new(&n.text).span(at..bytes.len());
            let Some(m) = matcher.find(input) else { break };
            let (s, e) = (m.start(), m.end());
            if boundary_before(s) && (e >= bytes.len() || !is_word(e)) {
                let (start, end) = n.original(s, e);
                spans.push(Span {
                    start,
                    end,
                    label: self.labels[m.pattern().as_usize()].clone(),
                });
                at = e;
            } else {
                at = s + 1;
                while !n.text.is_char_boundary(at) {
                    at += 1;
                }
            }
        }
        spans
    }
}

impl Guardrail for DenyList {
    fn name(&self) -> &str {
        "deny_list"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        let spans = self.scan(&text);
        Check::ready(from_findings(
            "deny_list",
            "denied_content",
            0.8,
            &text,
            spans,
            |s| Cow::Owned(format!("[{}]", s.label)),
        ))
    }

    fn stream_scope(&self) -> StreamScope {
        // Evasions stretch a phrase (letters spaced out, separators doubled); allow four
        // times the longest term.
        StreamScope::Window((self.longest * 4).max(64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(list: &DenyList, text: &str) -> Vec<String> {
        list.scan(text)
            .into_iter()
            .map(|s| text[s.start..s.end].to_owned())
            .collect()
    }

    #[test]
    fn sees_through_evasions() {
        let list = DenyList::new().words(["bomb", "credit score hack"]);
        assert_eq!(found(&list, "a BOMB!"), ["BOMB"]);
        assert_eq!(found(&list, "b-o-m-b"), ["b-o-m-b"]);
        assert_eq!(found(&list, "b o m b"), ["b o m b"]);
        assert_eq!(found(&list, "b\u{200B}omb"), ["b\u{200B}omb"]);
        assert_eq!(found(&list, "b\u{43E}mb"), ["b\u{43E}mb"]);
        assert_eq!(
            found(&list, "CREDIT   score\nhack"),
            ["CREDIT   score\nhack"]
        );
    }

    #[test]
    fn respects_word_boundaries() {
        let list = DenyList::new().words(["ass", "ban"]);
        assert!(found(&list, "a classic bass, banana, embassy").is_empty());
        assert_eq!(found(&list, "Ban it, you ass."), ["Ban", "ass"]);
        // A failed boundary does not hide a later real match inside the same run.
        let list = DenyList::new().words(["cat"]);
        assert_eq!(found(&list, "concatenate cat"), ["cat"]);
    }
}
