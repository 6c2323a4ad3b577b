//! Token ids back to text: whole sequences, and streams that must never cut a char in two.

use std::borrow::Cow;

use super::error::{Result, TokenizerError};
use super::{Model, TokenType, Tokenizer, bpe, spm};

/// How [`Tokenizer::decode_with`] and [`StreamDecoder`] treat special tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Leave out control and unknown tokens (`<|im_end|>`, `<s>`, …) instead of writing
    /// their text. User-defined tokens are ordinary text and always written.
    pub skip_special: bool,
}

impl Tokenizer {
    /// The bytes token `id` stands for: byte-level BPE text mapped back to bytes, `▁` written
    /// as a space, `<0xNN>` as its byte, and special tokens as their text.
    ///
    /// A single token may hold part of a UTF-8 char, so this returns bytes; use
    /// [`Tokenizer::decode`] or a [`StreamDecoder`] for text.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::TokenIdOutOfRange`] if `id` is not in the vocabulary.
    pub fn token_to_piece(&self, id: u32) -> Result<Cow<'_, [u8]>> {
        let inner = &*self.inner;
        let text = inner
            .vocab
            .texts
            .get(id as usize)
            .ok_or(TokenizerError::TokenIdOutOfRange {
                id,
                vocab_size: inner.vocab.len(),
            })?;
        Ok(match (inner.vocab.token_type(id), &inner.model) {
            (TokenType::Unused, _) => Cow::Borrowed(&[][..]),
            (TokenType::Control | TokenType::UserDefined | TokenType::Unknown, _) => {
                Cow::Borrowed(text.as_bytes())
            }
            (TokenType::Byte, _) => match parse_byte_token(text) {
                Some(b) => Cow::Owned(vec![b]),
                None => Cow::Borrowed(text.as_bytes()),
            },
            (TokenType::Normal | TokenType::Undefined, Model::Bpe(_)) => {
                let mut out = Vec::with_capacity(text.len());
                let mut buf = [0u8; 4];
                for c in text.chars() {
                    match bpe::char_to_byte(c) {
                        Some(b) => out.push(b),
                        // Not a byte-level char: the vocabulary stores it literally.
                        None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                    }
                }
                Cow::Owned(out)
            }
            (TokenType::Normal | TokenType::Undefined, Model::Spm) => {
                if text.contains(spm::SPACE) {
                    Cow::Owned(text.replace(spm::SPACE, " ").into_bytes())
                } else {
                    Cow::Borrowed(text.as_bytes())
                }
            }
        })
    }

    /// Decodes `ids` to text, writing special tokens' text (so that encoding with
    /// `parse_special` and decoding round-trips). Byte sequences that are not valid UTF-8
    /// become U+FFFD.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::TokenIdOutOfRange`] for an id not in the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, DecodeOptions::default())
    }

    /// Decodes `ids` to text as `options` say.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::TokenIdOutOfRange`] for an id not in the vocabulary.
    pub fn decode_with(&self, ids: &[u32], options: DecodeOptions) -> Result<String> {
        let mut d = StreamDecoder::new(self.clone(), options);
        let mut bytes = Vec::new();
        for &id in ids {
            d.append(id, &mut bytes)?;
        }
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// A decoder for ids that arrive one at a time.
    pub fn stream_decoder(&self, options: DecodeOptions) -> StreamDecoder {
        StreamDecoder::new(self.clone(), options)
    }

    /// Whether decoding drops the space the encoder put before the first word.
    fn strips_space_prefix(&self) -> bool {
        matches!(self.inner.model, Model::Spm) && self.inner.add_space_prefix
    }
}

/// `<0xNN>` → the byte NN.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Turns ids that arrive one at a time into text, emitting only complete UTF-8.
///
/// A char may be spread over several tokens (emoji and CJK often are); the decoder holds
/// its first bytes back until the rest arrive, so streamed text never shows a broken char.
/// Call [`StreamDecoder::flush`] at the end for whatever is still held.
///
/// ```no_run
/// # use any_llm_local::tokenizer::{DecodeOptions, Tokenizer};
/// # fn demo(tokenizer: &Tokenizer, ids: &[u32]) -> Result<(), Box<dyn std::error::Error>> {
/// let mut decoder = tokenizer.stream_decoder(DecodeOptions { skip_special: true });
/// let mut text = String::new();
/// for &id in ids {
///     text.push_str(&decoder.push(id)?);
/// }
/// text.push_str(&decoder.flush());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    options: DecodeOptions,
    pending: Vec<u8>,
    strip_space: bool,
}

impl StreamDecoder {
    /// A decoder at the start of a sequence.
    pub fn new(tokenizer: Tokenizer, options: DecodeOptions) -> Self {
        let strip_space = tokenizer.strips_space_prefix();
        Self {
            tokenizer,
            options,
            pending: Vec::new(),
            strip_space,
        }
    }

    /// Adds token `id` and returns the text it completes (often empty while a char is
    /// incomplete).
    ///
    /// # Errors
    ///
    /// [`TokenizerError::TokenIdOutOfRange`] for an id not in the vocabulary; the decoder is
    /// unchanged.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let mut pending = std::mem::take(&mut self.pending);
        let res = self.append(id, &mut pending);
        self.pending = pending;
        res?;
        Ok(self.take_complete())
    }

    /// Returns what is held back, with an incomplete char written as U+FFFD, and resets the
    /// decoder's pending bytes.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Appends the bytes of `id` to `buf`, applying the options and the space-prefix rule.
    fn append(&mut self, id: u32, buf: &mut Vec<u8>) -> Result<()> {
        let piece = self.tokenizer.token_to_piece(id)?;
        let ty = self.tokenizer.inner.vocab.token_type(id);
        let special = matches!(ty, TokenType::Control | TokenType::Unknown);
        if special && self.options.skip_special {
            return Ok(());
        }
        let mut bytes: &[u8] = &piece;
        if self.strip_space && !special {
            self.strip_space = false;
            bytes = bytes.strip_prefix(b" ").unwrap_or(bytes);
        }
        buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Removes and returns the longest prefix of pending bytes that is complete text;
    /// invalid bytes (not the start of a char still arriving) become U+FFFD.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete char at the end: wait for the next token.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_parse_only_in_their_exact_form() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("0x41"), None);
    }
}
