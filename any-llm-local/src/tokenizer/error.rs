//! The errors building or using a tokenizer can raise.

/// A `Result` whose error is [`TokenizerError`].
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Why a tokenizer could not be built or could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names a vocabulary type this crate does not implement.
    #[error(
        "unknown tokenizer model {0:?}: expected \"gpt2\" (byte-level BPE) or \"llama\" (SentencePiece)"
    )]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error(
        "unknown pre-tokenizer {0:?}: expected one of default, gpt-2, llama-bpe, qwen2, smollm \
         (or an alias of one of them)"
    )]
    UnknownPreTokenizer(String),
    /// A metadata key the tokenizer needs is missing or has the wrong type.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A per-token array does not have one entry per token.
    #[error("{what} has {found} entries, expected one per token ({expected})")]
    LengthMismatch {
        /// Which array, e.g. `tokenizer.ggml.scores`.
        what: &'static str,
        /// The vocabulary size.
        expected: usize,
        /// The array's length.
        found: usize,
    },
    /// A token type value outside the GGUF token-type enumeration.
    #[error("token {id} has type {value}, expected 0..=6 (see llama_token_type)")]
    BadTokenType {
        /// The token.
        id: u32,
        /// The stored value.
        value: i32,
    },
    /// A merge rule that is not two space-separated pieces.
    #[error("merge {index} is {merge:?}, expected two pieces separated by one space")]
    BadMerge {
        /// Its position in `tokenizer.ggml.merges`.
        index: usize,
        /// The rule as stored.
        merge: String,
    },
    /// A special-token id (BOS, EOS, …) past the end of the vocabulary.
    #[error("{which} token id {id} is out of range for a vocabulary of {vocab_size} tokens")]
    SpecialIdOutOfRange {
        /// Which special token, e.g. `bos`.
        which: &'static str,
        /// The id given.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The vocabulary is empty.
    #[error("the vocabulary has no tokens")]
    EmptyVocabulary,
    /// A token id past the end of the vocabulary was given to decode.
    #[error("token id {id} is out of range for a vocabulary of {vocab_size} tokens")]
    TokenIdOutOfRange {
        /// The id given.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// One prompt's messages hold more distinct control-token texts and private-use chars
    /// than there are placeholders for them.
    #[error(
        "the messages hold more than {limit} distinct control-token texts and private-use \
         chars; they cannot be kept apart from the template's own control tokens"
    )]
    TooManyEscapes {
        /// How many placeholders there are.
        limit: usize,
    },
}

/// The typed error stays reachable as the [`any_core::Error::Model`]'s
/// [`source`](std::error::Error::source), so a caller can downcast to it.
impl From<TokenizerError> for any_core::Error {
    fn from(err: TokenizerError) -> Self {
        any_core::Error::model_with_source(err.to_string(), err)
    }
}
