//! Finding special tokens in input text, so they are never split by the pre-tokenizer.

use aho_corasick::{AhoCorasick, MatchKind};

use super::TokenType;
use super::vocab::Vocab;

/// A piece of input: text still to tokenize, or a special token found whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Matchers over the special tokens' texts, longest match first at the leftmost position.
#[derive(Debug)]
pub(crate) struct SpecialMatcher {
    /// Control, user-defined and unknown tokens: used when the caller parses special tokens.
    all: Option<(AhoCorasick, Vec<u32>)>,
    /// User-defined tokens only: matched always, as they are ordinary vocabulary a
    /// model adds (llama.cpp does the same).
    user: Option<(AhoCorasick, Vec<u32>)>,
    /// Control and unknown tokens: the ones text from a message must not produce.
    control: Option<(AhoCorasick, Vec<u32>)>,
}

fn build(vocab: &Vocab, keep: impl Fn(TokenType) -> bool) -> Option<(AhoCorasick, Vec<u32>)> {
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for (id, text) in vocab.texts.iter().enumerate() {
        let id = id as u32;
        // A duplicate text resolves to the id the vocabulary's map gives it.
        if !text.is_empty() && keep(vocab.token_type(id)) && vocab.id(text) == Some(id) {
            ids.push(id);
            texts.push(text.as_str());
        }
    }
    if ids.is_empty() {
        return None;
    }
    match AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&texts)
    {
        Ok(ac) => Some((ac, ids)),
        Err(err) => {
            // Only a pattern set too large for the automaton fails; encode then treats the
            // special tokens as text rather than refusing to build.
            tracing::warn!(%err, "special tokens cannot be matched in text");
            None
        }
    }
}

impl SpecialMatcher {
    pub(crate) fn new(vocab: &Vocab) -> Self {
        Self {
            all: build(vocab, |t| {
                matches!(
                    t,
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
            }),
            user: build(vocab, |t| t == TokenType::UserDefined),
            control: build(vocab, |t| {
                matches!(t, TokenType::Control | TokenType::Unknown)
            }),
        }
    }

    /// The matcher of control and unknown tokens' texts, if the vocabulary has any.
    pub(crate) fn control(&self) -> Option<&(AhoCorasick, Vec<u32>)> {
        self.control.as_ref()
    }

    /// Splits `text` into text fragments and the special tokens between them.
    pub(crate) fn partition<'t>(
        &self,
        text: &'t str,
        parse_special: bool,
        out: &mut Vec<Fragment<'t>>,
    ) {
        let matcher = if parse_special { &self.all } else { &self.user };
        let Some((ac, ids)) = matcher else {
            if !text.is_empty() {
                out.push(Fragment::Text(text));
            }
            return;
        };
        let mut at = 0;
        for m in ac.find_iter(text) {
            if m.start() > at {
                out.push(Fragment::Text(&text[at..m.start()]));
            }
            out.push(Fragment::Token(ids[m.pattern().as_usize()]));
            at = m.end();
        }
        if at < text.len() {
            out.push(Fragment::Text(&text[at..]));
        }
    }
}
