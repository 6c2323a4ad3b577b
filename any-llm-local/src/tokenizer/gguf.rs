//! Reading a tokenizer's `tokenizer.ggml.*` metadata from a GGUF file.

use super::{Result, TokenType, Tokenizer, TokenizerConfig, TokenizerError, VocabType};
use crate::gguf::{GgufFile, Metadata};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";

impl TokenizerConfig {
    /// Reads the tokenizer metadata of a GGUF file.
    ///
    /// Special ids past the end of the vocabulary are dropped with a warning (llama.cpp
    /// ignores them too); a `llama` vocabulary without BOS/EOS/unknown ids gets
    /// SentencePiece's usual 1/2/0.
    ///
    /// # Errors
    ///
    /// A missing `tokenizer.ggml.model` or `tokenizer.ggml.tokens`, a missing
    /// `tokenizer.ggml.merges` for `gpt2`, or any key of the wrong type.
    pub fn from_gguf_metadata(md: &Metadata) -> Result<Self> {
        let model = md.get_str(MODEL)?.to_owned();
        let kind = VocabType::from_name(&model)?;
        let tokens = md.get_str_array(TOKENS)?.to_vec();
        let token_types = match md.contains_key(TOKEN_TYPE) {
            true => md
                .get_i32_array(TOKEN_TYPE)?
                .iter()
                .enumerate()
                .map(|(id, &value)| {
                    TokenType::from_code(value).ok_or(TokenizerError::BadTokenType {
                        id: id as u32,
                        value,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        let scores = match md.contains_key(SCORES) {
            true => md.get_f32_array(SCORES)?.to_vec(),
            false => Vec::new(),
        };
        let merges = match kind {
            VocabType::Bpe => md.get_str_array(MERGES)?.to_vec(),
            VocabType::Spm => Vec::new(),
        };
        let n = tokens.len();
        let id = |key: &'static str| -> Result<Option<u32>> {
            Ok(md.get_opt_u32(key)?.filter(|&id| {
                let ok = (id as usize) < n;
                if !ok {
                    tracing::warn!(
                        key,
                        id,
                        vocab_size = n,
                        "special token id out of range; ignored"
                    );
                }
                ok
            }))
        };
        let spm_default = |v: u32| (kind == VocabType::Spm && (v as usize) < n).then_some(v);
        Ok(Self {
            model,
            pre: md.get_opt_str(PRE)?.map(str::to_owned),
            tokens,
            token_types,
            scores,
            merges,
            bos: id("tokenizer.ggml.bos_token_id")?.or(spm_default(1)),
            eos: id("tokenizer.ggml.eos_token_id")?.or(spm_default(2)),
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?.or(spm_default(0)),
            pad: id("tokenizer.ggml.padding_token_id")?,
            add_bos: md.get_opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: md.get_opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: md.get_opt_bool("tokenizer.ggml.add_space_prefix")?,
        })
    }
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    ///
    /// ```no_run
    /// # use any_llm_local::{gguf::GgufFile, tokenizer::{EncodeOptions, Tokenizer}};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    /// let tokenizer = Tokenizer::from_gguf(&file)?;
    /// let ids = tokenizer.encode("Hello world!", EncodeOptions::default());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`TokenizerConfig::from_gguf_metadata`] and [`Tokenizer::new`].
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        Self::new(TokenizerConfig::from_gguf_metadata(file.metadata())?)
    }
}
