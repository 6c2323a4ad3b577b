//! The local backend: quantized GGUF models on the CPU, with no C/C++ toolchain, no key and
//! no network.
//!
//! From the file up: [`gguf`] reads the container, [`quant`] knows the block formats,
//! [`tokenizer`] and [`template`] turn chats into token ids, [`arch`] holds the architectures,
//! [`sampler`] picks tokens, [`constrain`] keeps them inside a grammar, and [`LocalModel`]
//! ties them into a chat service. [`fetch`]
//! obtains the embedded default model, and [`cache`] names the models kept beside it.
//! Sentence embeddings come from a BERT-family encoder ([`bert::SentenceEncoder`],
//! all-MiniLM-L6-v2 by default: [`default_embedder`]), its weights read by [`safetensors`]
//! and its text cut by [`tokenizer::wordpiece`].
//!
//! ```no_run
//! use any_core::ChatServiceExt;
//!
//! # #[tokio::main] async fn main() -> any_core::Result<()> {
//! let model = any_llm_local::default_model().await?;
//! println!("{}", model.complete("Name three colours.").await?);
//! # Ok(()) }
//! ```
//!
//! # Where `unsafe` lives
//!
//! The workspace denies `unsafe` (`unsafe_code = "deny"`), and this crate allows it in three
//! places only, each `unsafe` block with a `// SAFETY:` line saying why it holds: the
//! instruction-set modules of [`kernels`] (`kernels::x86` and `kernels::arm`; the
//! arch-neutral layer `kernels` itself has none), the thread pool (`pool`), whose regions
//! lend the caller's stack to its threads, and the memory map of a model file (`map_file` in
//! [`gguf`]).

pub mod arch;
mod attention;
pub mod bert;
pub mod cache;
pub mod constrain;
mod engine;
pub mod fetch;
pub mod gguf;
pub mod kernels;
pub(crate) mod kv_cache;
mod matmul;
mod pool;
pub mod quant;
pub mod safetensors;
pub mod sampler;
pub mod template;
pub mod tokenizer;

pub use kv_cache::KvCacheType;

pub use engine::{
    ChatFuture, DEFAULT_CONTEXT, LocalModel, LocalModelOptions, LogLikelihood, MAX_EMBED_INPUTS,
    MAX_EMBED_TOKENS, ModelInfo, Perplexity, top_logits,
};

/// The default sentence encoder (all-MiniLM-L6-v2), or the sentence-transformers folder
/// `ANY_EMBED_MODEL` names, opened with default options. The first call downloads the default
/// encoder (see [`fetch::default_embedder_dir`]).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let encoder = any_llm_local::default_embedder().await?;
/// let vectors = encoder.embed_texts(&["Where does my sister live?".into()]).await?;
/// assert_eq!(vectors[0].len(), 384);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`fetch::default_embedder_dir`] and [`bert::SentenceEncoder::open`].
pub async fn default_embedder() -> any_core::Result<bert::SentenceEncoder> {
    tokio::task::spawn_blocking(|| bert::SentenceEncoder::open(fetch::default_embedder_dir()?))
        .await
        .map_err(|e| {
            any_core::Error::model_with_source(
                format!("loading the default sentence encoder panicked: {e}"),
                e,
            )
        })?
}

/// The embedded default model (SmolLM2-135M-Instruct, Q4_1), or the model `ANY_MODEL` names,
/// opened with default options. The first call downloads the default model (see [`fetch`]).
///
/// # Errors
/// As [`fetch::default_model_path`] and [`LocalModel::open`].
pub async fn default_model() -> any_core::Result<LocalModel> {
    tokio::task::spawn_blocking(|| LocalModel::open(fetch::default_model_path()?))
        .await
        .map_err(|e| {
            any_core::Error::model_with_source(
                format!("loading the default model panicked: {e}"),
                e,
            )
        })?
}
