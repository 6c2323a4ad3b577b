//! Pre-tokenizers: the regex-defined splits a byte-level BPE vocabulary applies before merging.
//!
//! Each vocabulary names its splitter in `tokenizer.ggml.pre`. The splitters are written by hand
//! rather than through a regex engine: the upstream patterns rely on lookahead (`\s+(?!\S)`),
//! which the linear-time `regex` crate does not offer, and a hand-written scanner over
//! pre-classified characters is several times faster than a backtracking engine.
//!
//! A pre-tokenizer is a list of *stages*. Each stage scans every piece the previous stage
//! produced, independently (so lookahead stops at a piece's end); the text a stage's pattern
//! does not match is kept as a piece of its own, so no byte is ever lost. This is how
//! llama.cpp applies its lists of expressions, and the committed vectors in
//! `tests/data/pretokenize.json` pin the result against the Python `regex` module.

use std::ops::Range;

use unicode_general_category::{GeneralCategory, get_general_category};

use super::error::{Result, TokenizerError};

/// A named pre-tokenizer, as `tokenizer.ggml.pre` selects it.
///
/// The names follow llama.cpp's conversion script; several names share one pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PreTokenizer {
    /// `default` (also used when the key is absent): punctuation runs, then the GPT-2 pattern,
    /// then number runs cut into groups of three ASCII digits.
    Default,
    /// `gpt-2` / `gpt2` and vocabularies that copied it (`mpt`, `olmo`, `jais`, `phi-2`, …):
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// `llama-bpe` (Llama 3) and its relatives: case-insensitive contractions, a letter run
    /// with one optional leading non-letter, numbers in runs of at most three, newlines
    /// grouped with the whitespace before them.
    Llama3,
    /// `qwen2`: the Llama 3 pattern with every digit on its own.
    Qwen2,
    /// `smollm` (also `starcoder`, `refact`, `command-r`, `codeshell`, `exaone`,
    /// `minerva-7b`): every digit on its own, then the GPT-2 pattern.
    Smollm,
}

impl PreTokenizer {
    /// The pre-tokenizer a `tokenizer.ggml.pre` value names.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::UnknownPreTokenizer`] for a name this crate does not implement. An
    /// unknown name is an error rather than a silent fallback to `default`, because a wrong
    /// split gives plausible-looking but different token ids.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "default" => Self::Default,
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de"
            | "jina-v2-es" | "jina-v2-de" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
            | "gigachat" | "exaone4" | "trillion" | "granite-docling" | "a.x-4.0" | "mellum" => {
                Self::Gpt2
            }
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "hunyuan" | "megrez" => {
                Self::Qwen2
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::Smollm,
            other => return Err(TokenizerError::UnknownPreTokenizer(other.to_owned())),
        })
    }

    /// Whether a word the vocabulary holds whole is emitted as that token without running the
    /// merges (`ignore_merges` in HF tokenizers; set for the Llama 3 family).
    pub(crate) fn ignores_merges(self) -> bool {
        matches!(self, Self::Llama3)
    }

    /// Splits `text` into the pieces BPE merges run on; the pieces concatenate back to `text`.
    pub fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut out = Vec::new();
        self.split_ranges(text, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    /// Byte ranges of the pieces of `text`, appended to `out` in order.
    pub(crate) fn split_ranges(&self, text: &str, out: &mut Vec<Range<usize>>) {
        if text.is_empty() {
            return;
        }
        let chars = Chars::new(text);
        let stages: &[Stage] = match self {
            Self::Default => &[
                Stage::PunctuationRuns,
                Stage::Gpt2,
                Stage::NumberRuns,
                Stage::AsciiDigitTriples,
            ],
            Self::Gpt2 => &[Stage::Gpt2],
            Self::Llama3 => &[Stage::Llama3 { max_digits: 3 }],
            Self::Qwen2 => &[Stage::Llama3 { max_digits: 1 }],
            Self::Smollm => &[Stage::SingleNumbers, Stage::Gpt2],
        };
        let mut pieces = Vec::with_capacity(chars.len() / 3 + 1);
        pieces.push(0..chars.len());
        let mut next = Vec::with_capacity(chars.len() / 3 + 1);
        for stage in stages {
            next.clear();
            for piece in &pieces {
                split_piece(&chars, piece.clone(), *stage, &mut next);
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        out.extend(pieces.into_iter().map(|r| chars.byte_range(r)));
    }
}

/// One pattern of a pre-tokenizer.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|
    /// \p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3 { max_digits: usize },
    /// `\p{N}`
    SingleNumbers,
    /// `\p{N}+`
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`
    PunctuationRuns,
    /// `[0-9][0-9][0-9]`
    AsciiDigitTriples,
}

/// Character classes the patterns test, one bit each.
const LETTER: u8 = 1;
const NUMBER: u8 = 2;
const SPACE: u8 = 4;
const PUNCT: u8 = 8;

/// The text decoded once: each char with its byte offset and class bits.
struct Chars {
    chars: Vec<char>,
    class: Vec<u8>,
    /// Byte offset of each char, plus the text's length at the end.
    offsets: Vec<usize>,
}

impl Chars {
    fn new(text: &str) -> Self {
        let n = text.len();
        let mut chars = Vec::with_capacity(n);
        let mut class = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n + 1);
        for (i, c) in text.char_indices() {
            chars.push(c);
            class.push(classify(c));
            offsets.push(i);
        }
        offsets.push(n);
        Self {
            chars,
            class,
            offsets,
        }
    }

    fn len(&self) -> usize {
        self.chars.len()
    }

    fn byte_range(&self, r: Range<usize>) -> Range<usize> {
        self.offsets[r.start]..self.offsets[r.end]
    }
}

fn classify(c: char) -> u8 {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => LETTER,
            '0'..='9' => NUMBER,
            ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' => SPACE,
            '!'..='/' | ':'..='@' | '['..='`' | '{'..='~' => {
                // ASCII symbols ($ + < = > ^ ` | ~) are not \p{P}.
                if matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~') {
                    0
                } else {
                    PUNCT
                }
            }
            _ => 0,
        };
    }
    let mut bits = if c.is_whitespace() { SPACE } else { 0 };
    use GeneralCategory as G;
    bits |= match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => LETTER,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => NUMBER,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => PUNCT,
        _ => 0,
    };
    bits
}

/// Runs `stage` over the chars `piece`, pushing matches and the unmatched text between them.
fn split_piece(chars: &Chars, piece: Range<usize>, stage: Stage, out: &mut Vec<Range<usize>>) {
    let mut gap_start = piece.start;
    let mut i = piece.start;
    let end = piece.end;
    while i < end {
        let matched = match stage {
            Stage::Gpt2 => match_gpt2(chars, i, end),
            Stage::Llama3 { max_digits } => match_llama3(chars, i, end, max_digits),
            Stage::SingleNumbers => (chars.class[i] & NUMBER != 0).then_some(i + 1),
            Stage::NumberRuns => run(chars, i, end, |c, _| c & NUMBER != 0),
            Stage::PunctuationRuns => run(chars, i, end, |c, ch| {
                c & PUNCT != 0 || matches!(ch, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
            }),
            Stage::AsciiDigitTriples => (i + 3 <= end
                && chars.chars[i..i + 3].iter().all(char::is_ascii_digit))
            .then_some(i + 3),
        };
        match matched {
            Some(m) if m > i => {
                if gap_start < i {
                    out.push(gap_start..i);
                }
                out.push(i..m);
                i = m;
                gap_start = m;
            }
            _ => i += 1,
        }
    }
    if gap_start < end {
        out.push(gap_start..end);
    }
}

/// The end of the run of chars from `i` that satisfy `pred`, if the run is not empty.
fn run(chars: &Chars, i: usize, end: usize, pred: impl Fn(u8, char) -> bool) -> Option<usize> {
    let mut j = i;
    while j < end && pred(chars.class[j], chars.chars[j]) {
        j += 1;
    }
    (j > i).then_some(j)
}

fn run_of(chars: &Chars, i: usize, end: usize, bits: u8) -> usize {
    let mut j = i;
    while j < end && chars.class[j] & bits != 0 {
        j += 1;
    }
    j
}

/// `[^\s\p{L}\p{N}]`: anything but whitespace, letters and numbers.
fn is_other(class: u8) -> bool {
    class & (LETTER | NUMBER | SPACE) == 0
}

/// The contraction at `i` (`'s`, `'re`, …), lower case only or any case.
fn contraction(chars: &Chars, i: usize, end: usize, any_case: bool) -> Option<usize> {
    if chars.chars[i] != '\'' || i + 1 >= end {
        return None;
    }
    let fold = |c: char| if any_case { c.to_ascii_lowercase() } else { c };
    let a = fold(chars.chars[i + 1]);
    if matches!(a, 's' | 't' | 'm' | 'd') {
        return Some(i + 2);
    }
    if i + 2 < end {
        let b = fold(chars.chars[i + 2]);
        if matches!((a, b), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return Some(i + 3);
        }
    }
    None
}

/// `\s+(?!\S)`: a whitespace run, less its last char when a non-space follows it.
fn spaces_not_before_text(chars: &Chars, i: usize, end: usize) -> Option<usize> {
    let j = run_of(chars, i, end, SPACE);
    if j == i {
        None
    } else if j == end {
        Some(j)
    } else {
        (j - i >= 2).then_some(j - 1)
    }
}

fn match_gpt2(chars: &Chars, i: usize, end: usize) -> Option<usize> {
    if let Some(m) = contraction(chars, i, end, false) {
        return Some(m);
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let start = if chars.chars[i] == ' ' && i + 1 < end {
        i + 1
    } else {
        i
    };
    for cls in [LETTER, NUMBER] {
        let j = run_of(chars, start, end, cls);
        if j > start {
            return Some(j);
        }
    }
    let j = run(chars, start, end, |c, _| is_other(c));
    if let Some(j) = j {
        return Some(j);
    }
    // Whitespace; a lone space before text that matched nothing above stays a gap.
    spaces_not_before_text(chars, i, end)
}

fn match_llama3(chars: &Chars, i: usize, end: usize, max_digits: usize) -> Option<usize> {
    if let Some(m) = contraction(chars, i, end, true) {
        return Some(m);
    }
    let c = chars.chars[i];
    let class = chars.class[i];
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    let lead = class & (LETTER | NUMBER) == 0 && c != '\r' && c != '\n';
    if lead && i + 1 < end && chars.class[i + 1] & LETTER != 0 {
        return Some(run_of(chars, i + 1, end, LETTER));
    }
    if class & LETTER != 0 {
        return Some(run_of(chars, i, end, LETTER));
    }
    // `\p{N}{1,max}`
    if class & NUMBER != 0 {
        let j = run_of(chars, i, end, NUMBER);
        return Some(j.min(i + max_digits));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let start = if c == ' ' && i + 1 < end && is_other(chars.class[i + 1]) {
        i + 1
    } else {
        i
    };
    if is_other(chars.class[start]) {
        let mut j = run(chars, start, end, |c, _| is_other(c)).unwrap_or(start);
        while j < end && matches!(chars.chars[j], '\r' | '\n') {
            j += 1;
        }
        return Some(j);
    }
    // `\s*[\r\n]+`: up to the last newline of the whitespace run.
    let j = run_of(chars, i, end, SPACE);
    if let Some(last_nl) = (i..j)
        .rev()
        .find(|&k| matches!(chars.chars[k], '\r' | '\n'))
    {
        return Some(last_nl + 1);
    }
    // `\s+(?!\S)|\s+`
    spaces_not_before_text(chars, i, end).or((j > i).then_some(j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_keeps_one_space_with_the_next_word() {
        let p = PreTokenizer::Gpt2.split("a  b\tc  ");
        assert_eq!(p, ["a", " ", " b", "\t", "c", "  "]);
    }

    #[test]
    fn llama3_groups_digits_by_three_and_newlines_with_spaces() {
        let p = PreTokenizer::Llama3.split("12345 x \n\nY's");
        assert_eq!(p, ["123", "45", " x", " \n\n", "Y", "'s"]);
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(PreTokenizer::Smollm.split(" 22"), [" ", "2", "2"]);
    }

    #[test]
    fn unknown_name_is_named_in_the_error() {
        let err = PreTokenizer::from_name("klingon").unwrap_err();
        assert!(err.to_string().contains("klingon"), "{err}");
    }
}
