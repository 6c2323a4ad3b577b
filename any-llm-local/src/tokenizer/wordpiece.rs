//! WordPiece, the tokenizer of BERT-family encoders, read from a Hugging Face
//! `tokenizer.json`.
//!
//! Text goes through four steps, as the `tokenizers` library runs them for BERT:
//!
//! 1. The added tokens (`[CLS]`, `[SEP]`, `[MASK]`, ...) are found in the raw text and kept
//!    whole, as Hugging Face's tokenizer does, so text that spells one gets its id.
//! 2. The BERT normaliser: control and format characters are dropped, whitespace becomes a
//!    space, each CJK ideograph gets spaces around it, accents are stripped (NFD, then the
//!    non-spacing marks dropped) and letters lowercased, as the file's `normalizer` asks.
//! 3. The BERT pre-tokeniser: words split at whitespace, and every punctuation character a
//!    word of its own.
//! 4. WordPiece: each word is cut greedily into the longest pieces in the vocabulary, pieces
//!    after the first spelled with the `##` prefix; a word with no such cut, or longer than
//!    `max_input_chars_per_word` characters, is one `[UNK]`.
//!
//! [`WordPiece::encode`] adds `[CLS]` and `[SEP]` and truncates to the encoder's maximum
//! ([`WordPiece::max_tokens`]), keeping the first pieces, as sentence-transformers does. The
//! `truncation` and `padding` sections of `tokenizer.json` are not used: the encoder packs
//! its batches, and its maximum comes from the model (`sentence_bert_config.json`).
//!
//! ```
//! use any_llm_local::tokenizer::wordpiece::WordPiece;
//!
//! let json = r###"{
//!   "added_tokens": [{"id": 0, "content": "[UNK]"}, {"id": 1, "content": "[CLS]"},
//!                    {"id": 2, "content": "[SEP]"}],
//!   "normalizer": {"type": "BertNormalizer", "clean_text": true,
//!                  "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
//!   "pre_tokenizer": {"type": "BertPreTokenizer"},
//!   "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
//!             "max_input_chars_per_word": 100,
//!             "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "cafe": 3, "play": 4,
//!                       "##ing": 5, "!": 6}}
//! }"###;
//! let tokenizer = WordPiece::from_json(json)?;
//! assert_eq!(tokenizer.encode("Playing, CAFÉ!"), [1, 4, 5, 0, 3, 6, 2]);
//! # Ok::<(), any_llm_local::tokenizer::wordpiece::WordPieceError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

/// What can be wrong with a WordPiece `tokenizer.json`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WordPieceError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON, or a section is not the shape the format has.
    #[error("tokenizer.json: {0}")]
    Format(String),
    /// A normaliser, pre-tokeniser or model this tokenizer does not implement.
    #[error("tokenizer.json: expected {expected}, found {found}")]
    Unsupported {
        /// What is implemented.
        expected: &'static str,
        /// What the file has.
        found: String,
    },
}

type Result<T> = std::result::Result<T, WordPieceError>;

/// A WordPiece tokenizer; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    tokens: Vec<String>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_word_chars: usize,
    norm: Normalizer,
    /// The added tokens, matched in raw text, and their ids.
    added: Option<(AhoCorasick, Vec<u32>)>,
    max_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Normalizer {
    clean_text: bool,
    chinese: bool,
    strip_accents: bool,
    lowercase: bool,
}

/// The token ids of a text and whether truncation dropped some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// `[CLS]`, the pieces kept, `[SEP]`.
    pub ids: Vec<u32>,
    /// How many ids the text would have had without truncation (`ids.len()` when none).
    pub untruncated: usize,
}

impl WordPiece {
    /// Reads `tokenizer.json` at `path`.
    ///
    /// # Errors
    /// [`WordPieceError::Io`] if it cannot be read; otherwise as [`WordPiece::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| WordPieceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Builds the tokenizer a `tokenizer.json` describes. The maximum length starts at 512
    /// tokens (BERT's position count); the encoder sets its own with
    /// [`WordPiece::with_max_tokens`].
    ///
    /// # Errors
    /// [`WordPieceError::Format`] for a file that is not a tokenizer.json or lacks `[CLS]`,
    /// `[SEP]` or the unknown token; [`WordPieceError::Unsupported`] for a model other than
    /// WordPiece, a normaliser other than BERT's (or none), a pre-tokeniser other than BERT's.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| WordPieceError::Format(format!("not JSON: {e}")))?;
        let model = &v["model"];
        let kind = model["type"].as_str().unwrap_or("none");
        if kind != "WordPiece" {
            return Err(WordPieceError::Unsupported {
                expected: "model type WordPiece",
                found: kind.to_owned(),
            });
        }
        let vocab_json = model["vocab"]
            .as_object()
            .ok_or_else(|| WordPieceError::Format("model.vocab is not an object".into()))?;
        let mut vocab = HashMap::with_capacity(vocab_json.len());
        for (piece, id) in vocab_json {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| WordPieceError::Format(format!("vocab entry {piece:?}")))?;
            vocab.insert(piece.clone(), id);
        }
        let mut added_ids = Vec::new();
        let mut added_text = Vec::new();
        for t in v["added_tokens"].as_array().into_iter().flatten() {
            let (Some(content), Some(id)) = (t["content"].as_str(), t["id"].as_u64()) else {
                return Err(WordPieceError::Format(format!("added token {t}")));
            };
            let id = u32::try_from(id)
                .map_err(|_| WordPieceError::Format(format!("added token id {id}")))?;
            vocab.entry(content.to_owned()).or_insert(id);
            added_text.push(content.to_owned());
            added_ids.push(id);
        }
        let n = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let mut tokens = vec![String::new(); n];
        for (piece, &id) in &vocab {
            tokens[id as usize].clone_from(piece);
        }
        let lookup = |name: &str| {
            vocab.get(name).copied().ok_or_else(|| {
                WordPieceError::Format(format!("the vocabulary has no {name} token"))
            })
        };
        let unk = lookup(model["unk_token"].as_str().unwrap_or("[UNK]"))?;
        let cls = lookup("[CLS]")?;
        let sep = lookup("[SEP]")?;
        let norm = normalizer(&v["normalizer"])?;
        match v["pre_tokenizer"]["type"].as_str() {
            Some("BertPreTokenizer") => {}
            other => {
                return Err(WordPieceError::Unsupported {
                    expected: "pre_tokenizer BertPreTokenizer",
                    found: other.unwrap_or("none").to_owned(),
                });
            }
        }
        let added = if added_text.is_empty() {
            None
        } else {
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&added_text)
                .map_err(|e| WordPieceError::Format(format!("added tokens: {e}")))?;
            Some((matcher, added_ids))
        };
        Ok(WordPiece {
            vocab,
            tokens,
            unk,
            cls,
            sep,
            prefix: model["continuing_subword_prefix"]
                .as_str()
                .unwrap_or("##")
                .to_owned(),
            max_word_chars: model["max_input_chars_per_word"]
                .as_u64()
                .map_or(100, |m| m as usize),
            norm,
            added,
            max_tokens: 512,
        })
    }

    /// The same tokenizer, truncating to `max` ids in all (`[CLS]` and `[SEP]` included;
    /// at least 2).
    pub fn with_max_tokens(mut self, max: usize) -> Self {
        self.max_tokens = max.max(2);
        self
    }

    /// The most ids [`WordPiece::encode`] returns.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// How many ids the vocabulary spans.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The piece of `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of `piece`.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.vocab.get(piece).copied()
    }

    /// `[CLS]`, the pieces of `text`, `[SEP]`, cut to [`WordPiece::max_tokens`].
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_full(text).ids
    }

    /// As [`WordPiece::encode`], also saying how long the text was before truncation.
    pub fn encode_full(&self, text: &str) -> Encoding {
        let mut ids = vec![self.cls];
        let mut pos = 0;
        if let Some((matcher, added_ids)) = &self.added {
            for m in matcher.find_iter(text) {
                self.encode_plain(&text[pos..m.start()], &mut ids);
                ids.push(added_ids[m.pattern().as_usize()]);
                pos = m.end();
            }
        }
        self.encode_plain(&text[pos..], &mut ids);
        ids.push(self.sep);
        let untruncated = ids.len();
        if ids.len() > self.max_tokens {
            ids.truncate(self.max_tokens - 1);
            ids.push(self.sep);
        }
        Encoding { ids, untruncated }
    }

    /// Normalises, splits and cuts text that holds no added token.
    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let normal = self.norm.apply(text);
        let mut word = String::new();
        let mut piece = String::new();
        for c in normal.chars() {
            if c.is_whitespace() {
                self.word_pieces(&word, &mut piece, ids);
                word.clear();
            } else if is_punctuation(c) {
                self.word_pieces(&word, &mut piece, ids);
                word.clear();
                word.push(c);
                self.word_pieces(&word, &mut piece, ids);
                word.clear();
            } else {
                word.push(c);
            }
        }
        self.word_pieces(&word, &mut piece, ids);
    }

    /// Greedy longest-match-first WordPiece of one word.
    fn word_pieces(&self, word: &str, piece: &mut String, ids: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > self.max_word_chars {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while end > start {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end = word[..end]
                    .char_indices()
                    .next_back()
                    .map_or(start, |(i, _)| i);
            }
            let Some(id) = found else {
                ids.truncate(first);
                ids.push(self.unk);
                return;
            };
            ids.push(id);
            start = end;
        }
    }
}

fn normalizer(v: &Value) -> Result<Normalizer> {
    match v["type"].as_str() {
        Some("BertNormalizer") => {
            let flag = |k: &str, default: bool| v[k].as_bool().unwrap_or(default);
            let lowercase = flag("lowercase", true);
            Ok(Normalizer {
                clean_text: flag("clean_text", true),
                chinese: flag("handle_chinese_chars", true),
                // `null` means "as lowercase does", as in BERT's original tokenizer.
                strip_accents: v["strip_accents"].as_bool().unwrap_or(lowercase),
                lowercase,
            })
        }
        other => Err(WordPieceError::Unsupported {
            expected: "normalizer BertNormalizer",
            found: other.unwrap_or("none").to_owned(),
        }),
    }
}

impl Normalizer {
    fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    out.push(' ');
                    continue;
                }
            }
            if self.chinese && is_chinese_char(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out
                .nfd()
                .filter(|&c| get_general_category(c) != GeneralCategory::NonspacingMark)
                .collect();
        }
        if self.lowercase {
            // Char by char (no final-sigma rule), as the reference tokenizer lowercases.
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control, format, unassigned, private-use and surrogate characters, less the three
/// whitespace controls.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Unassigned
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
    )
}

/// ASCII punctuation (which includes `$`, `+`, `<`, `^`, ... that Unicode calls symbols) and
/// every Unicode punctuation category.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            GeneralCategory::ConnectorPunctuation
                | GeneralCategory::DashPunctuation
                | GeneralCategory::ClosePunctuation
                | GeneralCategory::FinalPunctuation
                | GeneralCategory::InitialPunctuation
                | GeneralCategory::OtherPunctuation
                | GeneralCategory::OpenPunctuation
        )
}

/// The CJK Unified Ideographs blocks BERT spaces out (not Hangul, kana or other CJK
/// characters, which are ordinary letters to it).
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(vocab: &[&str]) -> WordPiece {
        let vocab: serde_json::Map<String, Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, p)| ((*p).to_owned(), Value::from(i)))
            .collect();
        let json = serde_json::json!({
            "added_tokens": [{"id": 0, "content": "[UNK]"}, {"id": 1, "content": "[CLS]"},
                             {"id": 2, "content": "[SEP]"}],
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": true, "strip_accents": null,
                           "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 9,
                      "vocab": vocab},
        });
        WordPiece::from_json(&json.to_string()).unwrap()
    }

    #[test]
    fn normalises_splits_and_cuts() {
        let t = tiny(&[
            "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "a", "東", "京", "$", "i", "##a",
        ]);
        // Longest match first, `##` pieces after the first, accents stripped, lowercased.
        assert_eq!(t.encode("UNÄFFABLE"), [1, 3, 4, 5, 2]);
        // Ideographs spaced, `$` punctuation, a word with no cut is one [UNK], the İ loses
        // its dot, and a bell (a control character) disappears.
        assert_eq!(t.encode("東京$unx İ\u{7}"), [1, 7, 8, 9, 0, 10, 2]);
        // Longer than max_input_chars_per_word (9): [UNK] even though pieces exist.
        assert_eq!(t.encode("aaaaaaaaaa a"), [1, 0, 6, 2]);
        // Added tokens in the raw text keep their ids.
        assert_eq!(t.encode("a[SEP]a"), [1, 6, 2, 6, 2]);
        assert_eq!(t.encode(""), [1, 2]);
    }

    #[test]
    fn truncation_keeps_the_first_pieces_and_the_separator() {
        let t = tiny(&["[UNK]", "[CLS]", "[SEP]", "a"]).with_max_tokens(4);
        let e = t.encode_full("a a a a a");
        assert_eq!(e.ids, [1, 3, 3, 2]);
        assert_eq!(e.untruncated, 7);
    }

    #[test]
    fn other_tokenizers_are_refused_by_name() {
        let e = WordPiece::from_json(r#"{"model": {"type": "BPE"}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tokenizer.json: expected model type WordPiece, found BPE"
        );
        let e = WordPiece::from_json("[").unwrap_err();
        assert!(matches!(e, WordPieceError::Format(_)), "{e}");
    }
}
