//! Decoder-only transformer architectures: one forward pass ([`Decoder`]) configured per
//! architecture ([`ModelConfig`]) from the file's own metadata keys (`{arch}.embedding_length`,
//! `{arch}.attention.head_count`, …).
//!
//! | `general.architecture` | models | what differs from llama |
//! |---|---|---|
//! | `llama` | Llama 2 and 3, Mistral, SmolLM, TinyLlama | — (Llama 3.1+ RoPE frequency factors from `rope_freqs.weight`; a `llama.attention.sliding_window`, Mistral 7B v0.1's, on every layer) |
//! | `qwen2` | Qwen2, Qwen2.5 | Q/K/V biases, NeoX RoPE (YaRN scaling, as any of these may have) |
//! | `qwen3` | Qwen3 (dense) | per-head Q and K RMSNorm before RoPE, NeoX RoPE |
//! | `phi3` | Phi-3, Phi-3.5, Phi-4 mini | fused QKV and gate/up tensors, NeoX RoPE, LongRoPE factors |
//! | `gemma2` | Gemma 2 | embedding × √n_embd, GELU, post-norms, soft-capped scores and logits, sliding-window layers |
//! | `gemma3` | Gemma 3 (text) | as Gemma 2 with Q/K norms instead of soft-capping, five local layers to a global one |
//!
//! Every block is: RMSNorm, attention with rotary position embeddings and grouped-query heads
//! over a KV cache, a residual; RMSNorm, a gated feed-forward, a residual. A final RMSNorm,
//! and the output head (tied to the embedding when the file has no `output.weight`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use any_llm_local::arch::{Architecture, Decoder};
//! use any_llm_local::gguf::GgufFile;
//!
//! # fn main() -> any_core::Result<()> {
//! let file = Arc::new(GgufFile::open("qwen2.5-0.5b-instruct-q8_0.gguf").map_err(any_core::Error::from)?);
//! let model = Decoder::load(file)?;
//! assert_eq!(model.config().arch, Architecture::Qwen2);
//! # Ok(()) }
//! ```

mod decoder;

pub use decoder::Decoder;
pub(crate) use decoder::{Scratch, soft_cap};

use std::fmt;

use crate::gguf::{GgufFile, MetadataArray, MetadataValue};
use any_core::{Error, Result};

/// The architectures this backend runs, by their GGUF `general.architecture` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Architecture {
    /// `llama`: Llama 2 and 3, Mistral, SmolLM, TinyLlama and their kin.
    Llama,
    /// `qwen2`: Qwen2 and Qwen2.5.
    Qwen2,
    /// `qwen3`: Qwen3 (dense).
    Qwen3,
    /// `phi3`: Phi-3, Phi-3.5 and Phi-4 mini.
    Phi3,
    /// `gemma2`: Gemma 2.
    Gemma2,
    /// `gemma3`: Gemma 3 (the text model).
    Gemma3,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: [Architecture; 6] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Phi3,
        Architecture::Gemma2,
        Architecture::Gemma3,
    ];

    /// The architecture a GGUF `general.architecture` value names, if it is supported.
    ///
    /// ```
    /// use any_llm_local::arch::Architecture;
    /// assert_eq!(Architecture::from_gguf_name("qwen2"), Some(Architecture::Qwen2));
    /// assert_eq!(Architecture::from_gguf_name("mamba"), None);
    /// ```
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// The `general.architecture` value of this architecture.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
            Architecture::Gemma2 => "gemma2",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// How this architecture pairs the values RoPE rotates (llama.cpp's choice per
    /// architecture: the GGUF conversion of llama permutes Q and K for adjacent pairs; the
    /// others keep the Hugging Face layout of halves).
    fn rope_style(self) -> RopeStyle {
        match self {
            Architecture::Llama => RopeStyle::Adjacent,
            _ => RopeStyle::Halves,
        }
    }

    fn is_gemma(self) -> bool {
        matches!(self, Architecture::Gemma2 | Architecture::Gemma3)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gguf_name())
    }
}

/// Which values of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Values `2i` and `2i + 1` (llama.cpp's "normal" RoPE).
    Adjacent,
    /// Values `i` and `i + rope_dim / 2` (llama.cpp's "NeoX" RoPE).
    Halves,
}

/// The feed-forward's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): llama, Qwen, Phi-3.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// The shape of a decoder model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelConfig {
    /// The architecture (`general.architecture`).
    pub arch: Architecture,
    /// Tokens in the vocabulary (rows of the embedding).
    pub n_vocab: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (fewer than query heads under grouped-query attention).
    pub n_head_kv: usize,
    /// Width of one head (`attention.key_length`, else `n_embd / n_head`).
    pub head_dim: usize,
    /// Hidden width of the feed-forward.
    pub n_ff: usize,
    /// The context length the model was trained with.
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// How many dimensions of each head RoPE rotates.
    pub rope_dim: usize,
    /// Which values RoPE rotates together.
    pub rope_style: RopeStyle,
    /// Position scale for linear RoPE scaling (1.0 when none).
    pub rope_freq_scale: f32,
    /// YaRN's extrapolation mix (`rope.scaling.type = yarn`: 1.0, as llama.cpp sets it; 0.0
    /// without YaRN): how far the high frequencies keep their unscaled angles.
    pub rope_ext_factor: f32,
    /// Factor RoPE's cosines and sines are multiplied by (`rope.scaling.attn_factor`, LongRoPE's
    /// attention scaling; 1.0 when none). Under YaRN, times the factor llama.cpp derives from
    /// the scaling factor, and each rotation multiplies in YaRN's magnitude scaling too.
    pub rope_attn_factor: f32,
    /// The context length RoPE was trained at before any extension
    /// (`rope.scaling.original_context_length`, else the training context): a context past
    /// it takes LongRoPE's long factors, and YaRN places its ramp by it.
    pub rope_ctx_orig: usize,
    /// Factor the token embeddings are multiplied by (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// Factor the queries are multiplied by before attention, which then leaves scores
    /// unscaled (Phi-3, Gemma); `None`: scores are scaled by `1 / sqrt(head_dim)`.
    pub query_scale: Option<f32>,
    /// The feed-forward's gate activation.
    pub activation: Activation,
    /// Attention scores soft-capped to `cap * tanh(score / cap)` (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits soft-capped the same way (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Width of the sliding window: a query at position `p` in a windowed layer sees the
    /// positions `p - window + 1 ..= p`.
    pub sliding_window: Option<usize>,
    /// Whether each layer is windowed (all false without a window).
    pub windowed_layers: Vec<bool>,
    /// RoPE base frequency of the windowed layers (which use no RoPE scaling).
    pub rope_base_windowed: f32,
}

impl ModelConfig {
    /// Reads the configuration from a GGUF file's metadata.
    ///
    /// # Errors
    /// [`Error::Model`] naming a missing or ill-typed key, an architecture this backend does
    /// not run, or a RoPE scaling it does not implement.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let md = file.metadata();
        let e = Error::from;
        let name = md.get_str("general.architecture").map_err(e)?;
        let Some(arch) = Architecture::from_gguf_name(name) else {
            let known: Vec<&str> = Architecture::ALL.iter().map(|a| a.gguf_name()).collect();
            return Err(Error::model(format!(
                "unsupported architecture `{name}`: this backend runs {}",
                known.join(", ")
            )));
        };
        let key = |k: &str| format!("{name}.{k}");
        let get = |k: &str| md.get_u32(&key(k)).map(|v| v as usize).map_err(e);
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        if n_head == 0 || n_embd == 0 {
            return Err(Error::model(format!(
                "{name}.embedding_length {n_embd} and attention.head_count {n_head} must both \
                 be 1 or more"
            )));
        }
        let n_head_kv = md
            .get_opt_u32(&key("attention.head_count_kv"))
            .map_err(e)?
            .map_or(n_head, |v| v as usize);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(Error::model(format!(
                "attention.head_count {n_head} is not a multiple of attention.head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match md.get_opt_u32(&key("attention.key_length")).map_err(e)? {
            Some(v) => v as usize,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(Error::model(format!(
                    "{name}.embedding_length {n_embd} is not a multiple of attention.head_count \
                     {n_head}, and the file has no attention.key_length"
                )));
            }
        };
        if let Some(v) = md.get_opt_u32(&key("attention.value_length")).map_err(e)?
            && v as usize != head_dim
        {
            return Err(Error::model(format!(
                "{name}.attention.value_length {v} differs from key_length {head_dim}: heads \
                 of two widths are not implemented"
            )));
        }
        let rope_dim = md
            .get_opt_u32(&key("rope.dimension_count"))
            .map_err(e)?
            .map_or(head_dim, |v| v as usize);
        if head_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::model(format!(
                "rope.dimension_count {rope_dim} does not fit head width {head_dim}"
            )));
        }
        let n_vocab = match md.get_opt_u32(&key("vocab_size")).map_err(e)? {
            Some(v) => v as usize,
            None => md.get_str_array("tokenizer.ggml.tokens").map_err(e)?.len(),
        };
        // As llama.cpp reads them: no type is linear scaling, no factor (or 0) is none.
        let scaling = md
            .get_opt_str(&key("rope.scaling.type"))
            .map_err(e)?
            .unwrap_or("linear");
        let scale = match md.get_opt_f32(&key("rope.scaling.factor")).map_err(e)? {
            None | Some(0.0) => 1.0,
            Some(f) if f.is_finite() && f > 0.0 => 1.0 / f,
            Some(f) => {
                return Err(Error::model(format!(
                    "{name}.rope.scaling.factor is {f}: expected a positive factor such as 4"
                )));
            }
        };
        let (rope_freq_scale, yarn) = match scaling {
            "none" => (1.0, false),
            // LongRoPE (Phi-3.5, Phi-4 mini) scales positions as linear scaling does, as
            // llama.cpp has it; its per-frequency factors are tensors.
            "linear" | "longrope" => (scale, false),
            "yarn" => (scale, true),
            other => {
                return Err(Error::model(format!(
                    "RoPE scaling `{other}` is not implemented (none, linear, yarn, longrope \
                     and llama3 frequency factors are)"
                )));
            }
        };
        // Sizes are checked against the file before anything is allocated from them: each
        // layer has at least six tensors (norms, attention and feed-forward weights), so a
        // count past the file's tensors is a corrupt header.
        let n_layer = get("block_count")?;
        let tensors = file.tensors().len();
        if n_layer == 0 || n_layer > tensors / 6 {
            return Err(Error::model(format!(
                "{name}.block_count is {n_layer}: expected 1 or more layers, and the file's \
                 {tensors} tensors hold at most {} (six tensors each at least)",
                tensors / 6
            )));
        }
        let n_ff = get("feed_forward_length")?;
        if n_ff == 0 || n_vocab == 0 {
            return Err(Error::model(format!(
                "{name}.feed_forward_length is {n_ff} and the vocabulary has {n_vocab} tokens: \
                 both must be 1 or more"
            )));
        }
        let rms_eps = md
            .get_opt_f32(&key("attention.layer_norm_rms_epsilon"))
            .map_err(e)?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(Error::model(format!(
                "{name}.attention.layer_norm_rms_epsilon is {rms_eps}: expected a small \
                 positive number such as 1e-5"
            )));
        }
        let rope_base = md
            .get_opt_f32(&key("rope.freq_base"))
            .map_err(e)?
            .unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(Error::model(format!(
                "{name}.rope.freq_base is {rope_base}: expected a positive number such as 10000"
            )));
        }
        let file_attn_factor = md
            .get_opt_f32(&key("rope.scaling.attn_factor"))
            .map_err(e)?
            .unwrap_or(1.0);
        if !(file_attn_factor.is_finite() && file_attn_factor > 0.0) {
            return Err(Error::model(format!(
                "{name}.rope.scaling.attn_factor is {file_attn_factor}: expected a positive \
                 number near 1"
            )));
        }
        let rope_attn_factor = if yarn {
            yarn_attn_factor(1.0 / rope_freq_scale) * file_attn_factor
        } else {
            file_attn_factor
        };
        let n_ctx_train = get("context_length")?;
        let rope_ctx_orig = md
            .get_opt_u32(&key("rope.scaling.original_context_length"))
            .map_err(e)?
            .map_or(n_ctx_train, |v| v as usize);
        let gemma = arch.is_gemma();
        let opt_f32 = |k: &str| md.get_opt_f32(&key(k)).map_err(e);
        let softcap = |k: &str| -> Result<Option<f32>> {
            match opt_f32(k)? {
                Some(c) if c.is_finite() && c > 0.0 => Ok(Some(c)),
                Some(0.0) | None => Ok(None),
                Some(c) => Err(Error::model(format!(
                    "{name}.{k} is {c}: expected a positive cap such as 30"
                ))),
            }
        };
        let (attn_softcap, final_softcap) = match arch {
            // llama.cpp defaults Gemma 2's caps to the released models' values.
            Architecture::Gemma2 => (
                Some(softcap("attn_logit_softcapping")?.unwrap_or(50.0)),
                Some(softcap("final_logit_softcapping")?.unwrap_or(30.0)),
            ),
            Architecture::Gemma3 => (None, softcap("final_logit_softcapping")?),
            _ => (None, None),
        };
        let window = md
            .get_opt_u32(&key("attention.sliding_window"))
            .map_err(e)?
            .map(|v| v as usize);
        // Which layers are windowed: the file's `attention.sliding_window_pattern` (one
        // flag per layer, or a period), else the model family's period.
        let layers = |period: usize| -> Result<Vec<bool>> {
            let k = key("attention.sliding_window_pattern");
            match md.get(&k) {
                None => Ok(pattern(n_layer, period)),
                Some(MetadataValue::U32(p)) => Ok(pattern(n_layer, *p as usize)),
                Some(MetadataValue::Array(MetadataArray::Bool(flags)))
                    if flags.len() == n_layer =>
                {
                    Ok(flags.clone())
                }
                Some(v) => Err(Error::model(format!(
                    "{k}: expected a period or one flag per layer ({n_layer}), found {v:?}"
                ))),
            }
        };
        let (sliding_window, windowed_layers) = match (arch, window) {
            // Gemma 2 has a window even when the file does not say (4096, its models' value);
            // every other layer is windowed. Gemma 3: five of every six.
            (Architecture::Gemma2, w) => (Some(w.unwrap_or(4096)), layers(2)?),
            (Architecture::Gemma3, Some(w)) if w > 0 => (Some(w), layers(6)?),
            // Mistral 7B v0.1 was trained with every layer windowed, and its reference code
            // and Hugging Face's apply the window; llama.cpp ignores the key for `llama`.
            // The two agree on every context up to the window; past it we keep the model's
            // own attention (the book's local-backend chapter says why).
            (Architecture::Llama, Some(w)) if w > 0 => (Some(w), layers(0)?),
            // Phi-3 files carry a window too, which llama.cpp turns off until its conversion
            // writes the window and its layer pattern correctly; Qwen2's configuration names
            // one it disables. Neither is applied, as llama.cpp has it.
            _ => (None, vec![false; n_layer]),
        };
        if let Some(0) = sliding_window {
            return Err(Error::model(format!(
                "{name}.attention.sliding_window is 0: expected 1 or more positions"
            )));
        }
        let rope_base_windowed = match (arch, opt_f32("rope.freq_base_swa")?) {
            (Architecture::Gemma2, None) | (Architecture::Llama, _) => rope_base,
            (_, Some(b)) if b.is_finite() && b > 0.0 => b,
            (_, None) => 10_000.0,
            (_, Some(b)) => {
                return Err(Error::model(format!(
                    "{name}.rope.freq_base_swa is {b}: expected a positive number such as 10000"
                )));
            }
        };
        let query_scale = match arch {
            // The 27B Gemmas scale by the width the residual stream gives each head, as
            // their reference code does; llama.cpp recognises them by their layer count.
            Architecture::Gemma2 if n_layer == 46 => Some(1.0 / ((n_embd / n_head) as f32).sqrt()),
            Architecture::Gemma3 if n_layer == 62 => Some(1.0 / ((n_embd / n_head) as f32).sqrt()),
            Architecture::Phi3 | Architecture::Gemma2 | Architecture::Gemma3 => {
                Some(1.0 / (head_dim as f32).sqrt())
            }
            _ => None,
        };
        Ok(ModelConfig {
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_dim,
            rope_style: arch.rope_style(),
            rope_freq_scale,
            rope_ext_factor: if yarn { 1.0 } else { 0.0 },
            rope_attn_factor,
            rope_ctx_orig,
            embed_scale: gemma.then(|| (n_embd as f32).sqrt()),
            query_scale,
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            attn_softcap,
            final_softcap,
            sliding_window,
            windowed_layers,
            rope_base_windowed,
        })
    }

    /// RoPE base frequency and position scale of layer `layer`: windowed layers have their
    /// own base, and (Gemma 3) no scaling.
    pub(crate) fn rope_for(&self, layer: usize) -> (f32, f32) {
        match (self.windowed_layers[layer], self.arch) {
            (false, _) => (self.rope_base, self.rope_freq_scale),
            (true, Architecture::Gemma3) => (self.rope_base_windowed, 1.0),
            (true, _) => (self.rope_base_windowed, self.rope_freq_scale),
        }
    }

    /// The factor attention scores are scaled by: 1 where the queries were scaled instead.
    pub(crate) fn score_scale(&self) -> f32 {
        match self.query_scale {
            Some(_) => 1.0,
            None => 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    /// The window of layer `layer`'s attention, if it is windowed.
    pub(crate) fn window(&self, layer: usize) -> Option<usize> {
        self.sliding_window.filter(|_| self.windowed_layers[layer])
    }

    pub(crate) fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// The attention factor llama.cpp gives YaRN for scaling `factor` when the file names none of
/// its own: YaRN's magnitude scaling `0.1 ln(factor) + 1`, divided out again because its RoPE
/// multiplies that in itself, in llama.cpp's steps (so the result is 1 to within a rounding).
fn yarn_attn_factor(factor: f32) -> f32 {
    let mscale = if factor <= 1.0 {
        1.0
    } else {
        0.1 * factor.ln() + 1.0
    };
    mscale * (1.0 / (1.0 + 0.1 * factor.ln()))
}

/// llama.cpp's layer pattern: of every `period` layers, all but the last windowed; a period
/// of 0, every layer.
fn pattern(n_layer: usize, period: usize) -> Vec<bool> {
    (0..n_layer)
        .map(|l| period == 0 || l % period < period - 1)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small model's shape (SmolLM2-135M's attention), one layer.
    pub(crate) fn config() -> ModelConfig {
        ModelConfig {
            arch: Architecture::Llama,
            n_vocab: 10,
            n_embd: 576,
            n_layer: 1,
            n_head: 9,
            n_head_kv: 3,
            head_dim: 64,
            n_ff: 1536,
            n_ctx_train: 2048,
            rms_eps: 1e-5,
            rope_base: 10_000.0,
            rope_dim: 64,
            rope_style: RopeStyle::Adjacent,
            rope_freq_scale: 1.0,
            rope_ext_factor: 0.0,
            rope_attn_factor: 1.0,
            rope_ctx_orig: 2048,
            embed_scale: None,
            query_scale: None,
            activation: Activation::Silu,
            attn_softcap: None,
            final_softcap: None,
            sliding_window: None,
            windowed_layers: vec![false],
            rope_base_windowed: 10_000.0,
        }
    }

    /// `n` deterministic values in -3..3.
    pub(crate) fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed as f32 * 1.7).sin() * 3.0)
            .collect()
    }

    /// The configuration of a `gemma3` file of six layers with `extra` metadata.
    fn gemma3_with(extra: &[(&str, MetadataValue)]) -> Result<ModelConfig> {
        config_of("gemma3", extra)
    }

    /// The configuration of a file of architecture `arch`, six layers, with `extra` metadata.
    fn config_of(arch: &str, extra: &[(&str, MetadataValue)]) -> Result<ModelConfig> {
        use crate::gguf::GgufWriter;
        use crate::quant::GgmlType;
        let mut w = GgufWriter::new();
        let k = |s: &str| format!("{arch}.{s}");
        let base = [
            ("general.architecture".to_owned(), MetadataValue::from(arch)),
            (k("embedding_length"), MetadataValue::U32(8)),
            (k("attention.head_count"), MetadataValue::U32(2)),
            (k("feed_forward_length"), MetadataValue::U32(16)),
            (k("context_length"), MetadataValue::U32(32)),
            (k("vocab_size"), MetadataValue::U32(4)),
            (k("block_count"), MetadataValue::U32(6)),
        ];
        let extra = extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
        for (k, v) in base.into_iter().chain(extra) {
            w.add_metadata(k, v).map_err(Error::from)?;
        }
        for i in 0..36 {
            w.add_tensor(format!("t{i}"), &[1], GgmlType::F32, vec![0; 4])
                .map_err(Error::from)?;
        }
        let file = GgufFile::from_bytes(w.to_bytes()).map_err(Error::from)?;
        ModelConfig::from_gguf(&file)
    }

    #[test]
    fn gemma3_windows_five_layers_of_six_with_their_own_rope_base() {
        let c = gemma3_with(&[("gemma3.attention.sliding_window", MetadataValue::U32(512))])
            .expect("reads");
        assert_eq!(c.windowed_layers, [true, true, true, true, true, false]);
        assert_eq!((c.window(0), c.window(5)), (Some(512), None));
        assert_eq!(c.rope_for(0), (10_000.0, 1.0));
        assert_eq!(c.rope_for(5), (10_000.0, 1.0));
        assert_eq!(c.embed_scale, Some(8f32.sqrt()));
        let c = gemma3_with(&[
            ("gemma3.attention.sliding_window", MetadataValue::U32(512)),
            (
                "gemma3.attention.sliding_window_pattern",
                MetadataValue::Array(MetadataArray::Bool(vec![
                    false, true, false, true, false, true,
                ])),
            ),
            ("gemma3.rope.freq_base", MetadataValue::F32(1e6)),
        ])
        .expect("reads");
        assert_eq!(c.windowed_layers, [false, true, false, true, false, true]);
        assert_eq!((c.rope_for(0).0, c.rope_for(1).0), (1e6, 10_000.0));
        // Without a window, no layer is windowed.
        let c = gemma3_with(&[]).expect("reads");
        assert!(c.windowed_layers.iter().all(|w| !w));
    }

    #[test]
    fn a_window_applies_where_llama_cpp_applies_it_and_to_llama_files() {
        // A period of 0 windows every layer, as llama.cpp reads it.
        let c = gemma3_with(&[
            ("gemma3.attention.sliding_window", MetadataValue::U32(8)),
            (
                "gemma3.attention.sliding_window_pattern",
                MetadataValue::U32(0),
            ),
        ])
        .expect("reads");
        assert!(c.windowed_layers.iter().all(|&w| w));
        // A `llama` file's window (Mistral 7B v0.1's) covers every layer, whose RoPE stays
        // the model's own.
        let c = config_of(
            "llama",
            &[
                ("llama.attention.sliding_window", MetadataValue::U32(4096)),
                ("llama.rope.freq_base", MetadataValue::F32(1e6)),
                ("llama.rope.scaling.type", MetadataValue::from("linear")),
                ("llama.rope.scaling.factor", MetadataValue::F32(2.0)),
            ],
        )
        .expect("reads");
        assert_eq!((c.window(0), c.window(5)), (Some(4096), Some(4096)));
        assert_eq!(c.rope_for(3), (1e6, 0.5));
        // Phi-3 and Qwen2 files name windows that llama.cpp does not apply: neither do we.
        for arch in ["phi3", "qwen2", "qwen3"] {
            let key = format!("{arch}.attention.sliding_window");
            let c = config_of(arch, &[(&key, MetadataValue::U32(2047))]).expect("reads");
            assert_eq!(c.sliding_window, None, "{arch}");
            assert!(c.windowed_layers.iter().all(|&w| !w), "{arch}");
        }
    }

    #[test]
    fn rope_scaling_is_read_as_llama_cpp_reads_it() {
        let scaling = |ty: Option<&str>, factor: f32| {
            let mut md = vec![("qwen2.rope.scaling.factor", MetadataValue::F32(factor))];
            if let Some(ty) = ty {
                md.push(("qwen2.rope.scaling.type", MetadataValue::from(ty)));
            }
            config_of("qwen2", &md)
        };
        // No type is linear scaling; `none` ignores the factor.
        let c = scaling(None, 2.0).expect("reads");
        assert_eq!((c.rope_freq_scale, c.rope_ext_factor), (0.5, 0.0));
        let c = scaling(Some("none"), 2.0).expect("reads");
        assert_eq!(c.rope_freq_scale, 1.0);
        // YaRN: positions scaled, the extrapolation mix on, and an attention factor that
        // llama.cpp derives and divides out again.
        let c = scaling(Some("yarn"), 4.0).expect("reads");
        assert_eq!((c.rope_freq_scale, c.rope_ext_factor), (0.25, 1.0));
        assert!(
            (c.rope_attn_factor - 1.0).abs() < 1e-6,
            "{}",
            c.rope_attn_factor
        );
        let err = scaling(Some("dynamic"), 2.0)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("RoPE scaling `dynamic`") && err.contains("yarn"),
            "{err}"
        );
        let err = scaling(Some("yarn"), -4.0)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("rope.scaling.factor is -4"), "{err}");
    }

    #[test]
    fn gemma_keys_that_make_no_sense_are_named() {
        let cases = [
            (
                "gemma3.attention.sliding_window_pattern",
                MetadataValue::Array(MetadataArray::Bool(vec![true; 2])),
                "one flag per layer (6)",
            ),
            (
                "gemma3.final_logit_softcapping",
                MetadataValue::F32(-3.0),
                "final_logit_softcapping is -3",
            ),
            (
                "gemma3.rope.freq_base_swa",
                MetadataValue::F32(f32::NAN),
                "rope.freq_base_swa is NaN",
            ),
        ];
        for (key, value, expected) in cases {
            let err = gemma3_with(&[
                ("gemma3.attention.sliding_window", MetadataValue::U32(4)),
                (key, value.clone()),
            ])
            .expect_err(key)
            .to_string();
            assert!(err.contains(expected), "{key} = {value:?}: {err}");
        }
    }

    #[test]
    fn every_architecture_round_trips_its_gguf_name() {
        for a in Architecture::ALL {
            assert_eq!(Architecture::from_gguf_name(a.gguf_name()), Some(a));
        }
        assert_eq!(Architecture::from_gguf_name("gemma"), None);
    }
}
