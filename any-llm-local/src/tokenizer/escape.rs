//! Keeping untrusted text from becoming control tokens when it passes through a template.
//!
//! A chat template writes its own control tokens (`<|im_start|>`, `<|im_end|>`) around the
//! messages, so the rendered prompt is encoded with special tokens parsed. Text that came
//! from a message must not be parsed the same way, or a user (or a retrieved document, or a
//! tool result) could close its turn and open a forged `system` one. Before rendering, every
//! control-token text in a message is swapped for a placeholder: one char from the
//! supplementary private-use planes, which no tokenizer treats as special and no template
//! method splits or strips. After rendering, [`Tokenizer::encode_escaped`] parses control
//! tokens in the template's own text and restores each placeholder as plain text.
//!
//! Chars of those planes that a message already carries are swapped for placeholders of
//! their own, so they come back unchanged.

use std::borrow::Cow;
use std::collections::HashMap;

use super::special::Fragment;
use super::{Result, Tokenizer, TokenizerError};

/// The first placeholder char: the start of plane 15, the supplementary private-use area A.
const FIRST: u32 = 0xF_0000;
/// How many placeholders there are: planes 15 and 16, every code point of which is a char.
const COUNT: usize = 0x11_0000 - FIRST as usize;

fn is_placeholder(c: char) -> bool {
    c as u32 >= FIRST
}

/// The texts placeholders stand for, filled by [`Tokenizer::escape_special`] and read by
/// [`Tokenizer::encode_escaped`]. One table serves a whole prompt.
#[derive(Debug, Clone, Default)]
pub struct Escapes {
    originals: Vec<String>,
    index: HashMap<String, char>,
}

impl Escapes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn placeholder(&mut self, original: &str) -> Result<char> {
        if let Some(&c) = self.index.get(original) {
            return Ok(c);
        }
        let n = self.originals.len();
        let c = (n < COUNT)
            .then(|| char::from_u32(FIRST + n as u32))
            .flatten()
            .ok_or(TokenizerError::TooManyEscapes { limit: COUNT })?;
        self.originals.push(original.to_owned());
        self.index.insert(original.to_owned(), c);
        Ok(c)
    }

    fn original(&self, c: char) -> Option<&str> {
        let n = (c as u32).checked_sub(FIRST)? as usize;
        self.originals.get(n).map(String::as_str)
    }

    /// `text` with every placeholder this table knows put back to what it stands for.
    pub fn restore<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.originals.is_empty() || !text.chars().any(is_placeholder) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match self.original(c) {
                Some(original) if is_placeholder(c) => out.push_str(original),
                _ => out.push(c),
            }
        }
        Cow::Owned(out)
    }
}

/// `gap` onto `out`, each char of the placeholder planes swapped for a placeholder.
fn swap_planes(gap: &str, escapes: &mut Escapes, out: &mut String) -> Result<()> {
    for c in gap.chars() {
        if is_placeholder(c) {
            out.push(escapes.placeholder(c.encode_utf8(&mut [0; 4]))?);
        } else {
            out.push(c);
        }
    }
    Ok(())
}

impl Tokenizer {
    /// `text` with each control-token text in it (and each char of the placeholder planes)
    /// swapped for a placeholder recorded in `escapes`, for text from a message that a
    /// template will place among its own control tokens.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::TooManyEscapes`] when one prompt needs more distinct placeholders
    /// than the two private-use planes hold.
    pub fn escape_special<'t>(&self, text: &'t str, escapes: &mut Escapes) -> Result<Cow<'t, str>> {
        let control = self.inner.specials.control();
        let has_control = control.is_some_and(|(ac, _)| ac.is_match(text));
        if !has_control && !text.chars().any(is_placeholder) {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut found = Vec::new();
        if let Some((ac, _)) = control {
            found.extend(ac.find_iter(text).map(|m| m.range()));
        }
        for range in found {
            swap_planes(&text[at..range.start], escapes, &mut out)?;
            out.push(escapes.placeholder(&text[range.clone()])?);
            at = range.end;
        }
        swap_planes(&text[at..], escapes, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Encodes a rendered prompt whose message text was escaped with
    /// [`Tokenizer::escape_special`]: control tokens the template wrote are parsed, each
    /// placeholder is restored and encoded as plain text, as
    /// [`EncodeOptions::parse_special`](super::EncodeOptions::parse_special) off encodes it.
    pub fn encode_escaped(&self, text: &str, escapes: &Escapes, add_special: bool) -> Vec<u32> {
        let inner = &*self.inner;
        let mut coarse = Vec::new();
        inner.specials.partition(text, true, &mut coarse);
        let restored: Vec<Cow<'_, str>> = coarse
            .iter()
            .map(|f| match f {
                Fragment::Text(t) => escapes.restore(t),
                Fragment::Token(_) => Cow::Borrowed(""),
            })
            .collect();
        let mut fragments = Vec::with_capacity(coarse.len());
        for (fragment, text) in coarse.iter().zip(&restored) {
            match (fragment, text) {
                (Fragment::Text(_), Cow::Owned(t)) => {
                    inner.specials.partition(t, false, &mut fragments);
                }
                _ => fragments.push(*fragment),
            }
        }
        self.encode_fragments(&fragments, add_special)
    }
}
