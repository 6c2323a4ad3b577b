//! Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Two vocabulary types are implemented, as `tokenizer.ggml.model` names them:
//!
//! - `gpt2`: byte-level BPE. Text is first split by the pre-tokenizer `tokenizer.ggml.pre`
//!   names (see [`PreTokenizer`]), each piece is spelled in GPT-2's byte alphabet, and merges
//!   apply by rank.
//! - `llama`: SentencePiece-style BPE. Spaces become `▁` (with one in front of the text when
//!   `tokenizer.ggml.add_space_prefix` says so), pieces merge by score, and chars no piece
//!   spells fall back to `<0xNN>` byte tokens.
//!
//! Special tokens (control and user-defined types) are found in the input before either
//! algorithm runs and are never split; control tokens only when the caller asks
//! ([`EncodeOptions::parse_special`]), since text from users should not be able to forge them.
//! A rendered chat prompt mixes both: [`Tokenizer::escape_special`] marks the text that came
//! from messages before rendering and [`Tokenizer::encode_escaped`] parses control tokens only
//! in the template's own text.
//! The rules follow llama.cpp's, and the tests hold the ids to llama.cpp's on the default model.
//!
//! ```no_run
//! # use any_llm_local::tokenizer::{EncodeOptions, Tokenizer, TokenizerConfig};
//! # fn demo(config: TokenizerConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let tokenizer = Tokenizer::new(config)?;
//! let ids = tokenizer.encode(
//!     "<|im_start|>user\nhi<|im_end|>\n",
//!     EncodeOptions { add_special: false, parse_special: true },
//! );
//! assert_eq!(tokenizer.decode(&ids)?, "<|im_start|>user\nhi<|im_end|>\n");
//! # Ok(()) }
//! ```

mod bpe;
mod decode;
mod error;
mod escape;
mod gguf;
mod pretokenize;
mod special;
mod spm;
mod vocab;
pub mod wordpiece;

use std::sync::Arc;

pub use decode::{DecodeOptions, StreamDecoder};
pub use error::{Result, TokenizerError};
pub use escape::Escapes;
pub use pretokenize::PreTokenizer;

use special::{Fragment, SpecialMatcher};
use vocab::Vocab;

/// What a token is, as `tokenizer.ggml.token_type` stores it (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TokenType {
    /// Type 0: not given.
    Undefined,
    /// Type 1: an ordinary piece of text.
    #[default]
    Normal,
    /// Type 2: the unknown token.
    Unknown,
    /// Type 3: a control token (`<s>`, `<|im_end|>`): never produced from ordinary text.
    Control,
    /// Type 4: a token the model's authors added; always matched whole in text.
    UserDefined,
    /// Type 5: a reserved slot.
    Unused,
    /// Type 6: a `<0xNN>` byte-fallback token.
    Byte,
}

impl TokenType {
    /// The type a stored `tokenizer.ggml.token_type` value stands for, if it is one.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Undefined,
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }

    /// The value GGUF stores for this type.
    pub fn code(self) -> i32 {
        match self {
            Self::Undefined => 0,
            Self::Normal => 1,
            Self::Unknown => 2,
            Self::Control => 3,
            Self::UserDefined => 4,
            Self::Unused => 5,
            Self::Byte => 6,
        }
    }
}

/// The vocabulary type, as `tokenizer.ggml.model` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VocabType {
    /// `gpt2`: byte-level BPE with a pre-tokenizer.
    Bpe,
    /// `llama`: SentencePiece-style BPE with scores and byte fallback.
    Spm,
}

impl VocabType {
    /// The vocabulary type a `tokenizer.ggml.model` value names.
    ///
    /// # Errors
    ///
    /// [`TokenizerError::UnknownModel`] for any other name (`bert`, `t5`, `rwkv`, …).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "gpt2" => Ok(Self::Bpe),
            "llama" => Ok(Self::Spm),
            other => Err(TokenizerError::UnknownModel(other.to_owned())),
        }
    }
}

/// Everything a tokenizer is built from, field for field the `tokenizer.ggml.*` metadata,
/// so tests and tools can build one without a file.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer; `None` means `default`. Ignored for `llama`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the text of each token, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: one per token, or empty for all [`TokenType::Normal`].
    pub token_types: Vec<TokenType>,
    /// `tokenizer.ggml.scores`: one per token (`llama` merges by them), or empty for zeros.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges`: `"left right"` rules in rank order (`gpt2` only).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`; found from the token texts (`<|im_end|>`,
    /// `<|eot_id|>`, …) when absent.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`; found from `<|eom_id|>` when absent.
    pub eom: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; `None` takes the vocabulary's default (true for
    /// `llama` and the Llama 3 pre-tokenizer, false otherwise), as llama.cpp does.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`; `None` means false.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`; `None` means true for `llama`, false for `gpt2`.
    pub add_space_prefix: Option<bool>,
}

/// How [`Tokenizer::encode`] treats special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS in front and EOS at the end where the model asks for them
    /// ([`Tokenizer::add_bos`], [`Tokenizer::add_eos`]).
    pub add_special: bool,
    /// Match control tokens written in the text (`<|im_start|>`) as those tokens. Leave it
    /// off for text from users; a rendered chat prompt holds both, and is encoded with
    /// [`Tokenizer::encode_escaped`].
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    /// `add_special` on, `parse_special` off: llama.cpp's defaults for a plain prompt.
    fn default() -> Self {
        Self {
            add_special: true,
            parse_special: false,
        }
    }
}

/// A tokenizer: text to token ids and back. Cheap to clone (the tables are shared).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    vocab: Vocab,
    model: Model,
    specials: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    pad: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

#[derive(Debug)]
enum Model {
    Bpe(Box<bpe::Bpe>),
    Spm,
}

/// End-of-turn texts, in the order of preference when the metadata names no EOT token.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts of tokens that end generation besides EOS/EOT/EOM.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

impl Tokenizer {
    /// Builds a tokenizer from plain data.
    ///
    /// # Errors
    ///
    /// An unknown model or pre-tokenizer name, per-token arrays whose length is not the
    /// vocabulary size, a malformed merge rule, or a special id past the vocabulary.
    pub fn new(config: TokenizerConfig) -> Result<Self> {
        let model_type = VocabType::from_name(&config.model)?;
        let n = config.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        let types = if config.token_types.is_empty() {
            vec![TokenType::Normal; n]
        } else {
            config.token_types
        };
        check_len("tokenizer.ggml.token_type", n, types.len())?;
        let scores = if config.scores.is_empty() {
            vec![0.0; n]
        } else {
            config.scores
        };
        check_len("tokenizer.ggml.scores", n, scores.len())?;
        let check_id = |which: &'static str, id: Option<u32>| match id {
            Some(id) if id as usize >= n => Err(TokenizerError::SpecialIdOutOfRange {
                which,
                id,
                vocab_size: n,
            }),
            _ => Ok(id),
        };
        let bos = check_id("bos", config.bos)?;
        let eos = check_id("eos", config.eos)?;
        let unk = check_id("unknown", config.unk)?;
        let pad = check_id("padding", config.pad)?;
        let eot = check_id("eot", config.eot)?;
        let eom = check_id("eom", config.eom)?;

        let mut vocab = Vocab::new(config.tokens, types, scores);
        vocab.unk = unk;
        let eot = eot.or_else(|| EOT_TEXTS.iter().find_map(|t| vocab.id(t)));
        let eom = eom.or_else(|| vocab.id("<|eom_id|>"));
        // Tokens that end a turn are control tokens whatever the file says, so they are
        // parsed whole and skipped when decoding (llama.cpp overrides their type likewise).
        let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| vocab.id(t)).collect();
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        for &id in &eog {
            if let Some(t) = vocab.types.get_mut(id as usize)
                && *t != TokenType::Control
            {
                tracing::debug!(
                    id,
                    "end-of-generation token typed {t:?}; treated as control"
                );
                *t = TokenType::Control;
            }
        }

        let (model, default_bos) = match model_type {
            VocabType::Bpe => {
                let pre = match config.pre.as_deref() {
                    None => PreTokenizer::Default,
                    Some(name) => PreTokenizer::from_name(name)?,
                };
                let default_bos = matches!(pre, PreTokenizer::Llama3);
                (
                    Model::Bpe(Box::new(bpe::Bpe::new(&vocab, &config.merges, pre)?)),
                    default_bos,
                )
            }
            VocabType::Spm => (Model::Spm, true),
        };
        let add_space_prefix = config
            .add_space_prefix
            .unwrap_or(matches!(model_type, VocabType::Spm));
        let specials = SpecialMatcher::new(&vocab);
        Ok(Self {
            inner: Arc::new(Inner {
                vocab,
                model,
                specials,
                bos,
                eos,
                eot,
                eom,
                pad,
                eog,
                add_bos: config.add_bos.unwrap_or(default_bos) && bos.is_some(),
                add_eos: config.add_eos.unwrap_or(false) && eos.is_some(),
                add_space_prefix,
            }),
        })
    }

    /// Encodes `text` to token ids.
    pub fn encode(&self, text: &str, options: EncodeOptions) -> Vec<u32> {
        let mut fragments = Vec::new();
        self.inner
            .specials
            .partition(text, options.parse_special, &mut fragments);
        self.encode_fragments(&fragments, options.add_special)
    }

    /// Token ids of text already split around its special tokens.
    fn encode_fragments(&self, fragments: &[Fragment<'_>], add_special: bool) -> Vec<u32> {
        let inner = &*self.inner;
        let len: usize = fragments
            .iter()
            .map(|f| match f {
                Fragment::Text(t) => t.len() / 3,
                Fragment::Token(_) => 1,
            })
            .sum();
        let mut out = Vec::with_capacity(len + 2);
        if add_special && inner.add_bos {
            out.extend(inner.bos);
        }
        match &inner.model {
            Model::Bpe(bpe) => {
                let mut scratch = bpe::Scratch::default();
                let mut words = Vec::new();
                for &fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(t) => {
                            words.clear();
                            bpe.pre.split_ranges(t, &mut words);
                            for w in &words {
                                let word = &t.as_bytes()[w.clone()];
                                bpe.encode_word(&inner.vocab, word, &mut out, &mut scratch);
                            }
                        }
                    }
                }
            }
            Model::Spm => {
                // As llama.cpp: a space goes before the text at the start and after each
                // special token, user-defined ones too (SentencePiece itself adds one
                // prefix to the whole input; llama.cpp's ids are the ones we keep to).
                let mut after_special = true;
                let mut buf = String::new();
                for &fragment in fragments {
                    match fragment {
                        Fragment::Token(id) => {
                            out.push(id);
                            after_special = true;
                        }
                        Fragment::Text(t) => {
                            buf.clear();
                            if inner.add_space_prefix && after_special {
                                buf.push(spm::SPACE);
                            }
                            buf.extend(t.chars().map(|c| if c == ' ' { spm::SPACE } else { c }));
                            spm::encode(&inner.vocab, &buf, &mut out);
                            after_special = false;
                        }
                    }
                }
            }
        }
        if add_special && inner.add_eos {
            out.extend(inner.eos);
        }
        out
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab.len()
    }

    /// The vocabulary type.
    pub fn vocab_type(&self) -> VocabType {
        match self.inner.model {
            Model::Bpe(_) => VocabType::Bpe,
            Model::Spm => VocabType::Spm,
        }
    }

    /// The pre-tokenizer of a BPE vocabulary.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match &self.inner.model {
            Model::Bpe(b) => Some(b.pre),
            Model::Spm => None,
        }
    }

    /// The stored text of token `id` (byte-level or `▁`-escaped, as in the file).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.inner.vocab.texts.get(id as usize).map(String::as_str)
    }

    /// The type of token `id`.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.inner.vocab.types.get(id as usize).copied()
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.vocab.id(text)
    }

    /// The beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.bos
    }

    /// The end-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.inner.eos
    }

    /// The end-of-turn token (`<|im_end|>`, `<|eot_id|>`, …), from the metadata or the texts.
    pub fn eot_id(&self) -> Option<u32> {
        self.inner.eot
    }

    /// The end-of-message token (`<|eom_id|>`), where the vocabulary has one.
    pub fn eom_id(&self) -> Option<u32> {
        self.inner.eom
    }

    /// The unknown token.
    pub fn unk_id(&self) -> Option<u32> {
        self.inner.vocab.unk
    }

    /// The padding token.
    pub fn pad_id(&self) -> Option<u32> {
        self.inner.pad
    }

    /// Every token that ends generation (EOS, EOT, EOM and the known end-of-turn texts),
    /// sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.inner.eog
    }

    /// Whether generating `id` ends the turn.
    pub fn is_eog(&self, id: u32) -> bool {
        self.inner.eog.binary_search(&id).is_ok()
    }

    /// Whether `encode` with `add_special` puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.inner.add_bos
    }

    /// Whether `encode` with `add_special` puts EOS last.
    pub fn add_eos(&self) -> bool {
        self.inner.add_eos
    }
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(TokenizerError::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}
