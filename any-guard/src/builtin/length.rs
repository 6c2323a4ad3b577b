//! Length limits in characters and approximate tokens.

use any_core::Verdict;

use crate::{Check, Guardrail, StreamScope, Subject};

/// An approximate token count: one token per word of up to six characters and one more per
/// further six, one per punctuation mark, none for spaces — close to BPE tokenizers on
/// English text, without loading one.
///
/// ```
/// assert_eq!(any_guard::approx_tokens("Hello, world!"), 4);
/// ```
pub fn approx_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut word = 0usize;
    for c in text.chars() {
        if c.is_alphanumeric() {
            word += 1;
        } else {
            tokens += word.div_ceil(6);
            word = 0;
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
    }
    tokens + word.div_ceil(6)
}

/// Rejects text longer than a number of characters or approximate tokens
/// ([`approx_tokens`]).
///
/// On a streamed output it judges the text so far and holds nothing back: once the limit is
/// passed, a blocking guard ends the stream there.
///
/// ```
/// use any_guard::{Guardrail, LengthLimit, Subject};
/// assert!(LengthLimit::chars(5).check_now(&Subject::text("héllo")).valid);
/// assert!(!LengthLimit::chars(4).check_now(&Subject::text("héllo")).valid);
/// assert!(!LengthLimit::tokens(2).check_now(&Subject::text("one two three")).valid);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LengthLimit {
    max_chars: Option<usize>,
    max_tokens: Option<usize>,
}

impl LengthLimit {
    /// At most `n` characters (Unicode scalar values, not bytes).
    pub fn chars(n: usize) -> Self {
        LengthLimit {
            max_chars: Some(n),
            max_tokens: None,
        }
    }

    /// At most `n` approximate tokens.
    pub fn tokens(n: usize) -> Self {
        LengthLimit {
            max_chars: None,
            max_tokens: Some(n),
        }
    }

    /// Also at most `n` approximate tokens.
    pub fn and_tokens(mut self, n: usize) -> Self {
        self.max_tokens = Some(n);
        self
    }
}

impl Guardrail for LengthLimit {
    fn name(&self) -> &str {
        "length"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        if let Some(max) = self.max_chars {
            let n = text.chars().count();
            if n > max {
                return Check::ready(Verdict::fail(
                    "length",
                    1.0,
                    "length",
                    format!("expected at most {max} characters, found {n}"),
                ));
            }
        }
        if let Some(max) = self.max_tokens {
            let n = approx_tokens(&text);
            if n > max {
                return Check::ready(Verdict::fail(
                    "length",
                    1.0,
                    "length",
                    format!("expected at most {max} tokens, found about {n}"),
                ));
            }
        }
        Check::ready(Verdict::pass("length"))
    }

    fn stream_scope(&self) -> StreamScope {
        StreamScope::Prefix
    }
}
