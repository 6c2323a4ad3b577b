//! The llama architecture: Llama 2 and 3, Mistral, SmolLM, TinyLlama and their kin, all
//! `general.architecture = llama` in GGUF.
//!
//! Token embedding (quantized), then per block: RMSNorm, attention with rotary position
//! embeddings and grouped-query heads over a KV cache, a residual; RMSNorm, a SwiGLU
//! feed-forward, a residual. A final RMSNorm, and the output head (tied to the embedding when
//! the file has no `output.weight`).

use std::sync::Arc;

use crate::attention::{AttnBuffers, attend_layer};
use crate::gguf::{GgufFile, TensorInfo};
use crate::kernels;
use crate::kv_cache::KvCache;
pub use crate::kv_cache::KvCacheType;
use crate::matmul::{MatmulScratch, WeightView, matmul, matmul_group};
use crate::pool::Pool;
use any_core::{Error, Result};

/// The shape of a llama-family model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
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
    /// Width of one head.
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
    /// Position scale for linear RoPE scaling (1.0 when none).
    pub rope_freq_scale: f32,
}

impl LlamaConfig {
    /// Reads the configuration from a GGUF file's metadata.
    ///
    /// # Errors
    /// [`Error::Model`] naming a missing or ill-typed key, an architecture that is not of the
    /// llama family, or a RoPE scaling this backend does not implement.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let md = file.metadata();
        let e = Error::from;
        let arch = md.get_str("general.architecture").map_err(e)?;
        if arch != "llama" {
            return Err(Error::model(format!(
                "unsupported architecture `{arch}`: this backend runs the llama family \
                 (Llama 2/3, Mistral, SmolLM, TinyLlama: `general.architecture = llama`)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let get = |k: &str| md.get_u32(&key(k)).map(|v| v as usize).map_err(e);
        let n_embd = get("embedding_length")?;
        let n_head = get("attention.head_count")?;
        if n_head == 0 || n_embd == 0 || n_embd % n_head != 0 {
            return Err(Error::model(format!(
                "{arch}.embedding_length {n_embd} is not a multiple of attention.head_count {n_head}"
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
        let head_dim = md
            .get_opt_u32(&key("attention.key_length"))
            .map_err(e)?
            .map_or(n_embd / n_head, |v| v as usize);
        let rope_dim = md
            .get_opt_u32(&key("rope.dimension_count"))
            .map_err(e)?
            .map_or(head_dim, |v| v as usize);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::model(format!(
                "rope.dimension_count {rope_dim} does not fit head width {head_dim}"
            )));
        }
        let n_vocab = match md.get_opt_u32(&key("vocab_size")).map_err(e)? {
            Some(v) => v as usize,
            None => md.get_str_array("tokenizer.ggml.tokens").map_err(e)?.len(),
        };
        let scaling = md.get_opt_str(&key("rope.scaling.type")).map_err(e)?;
        let factor = md.get_opt_f32(&key("rope.scaling.factor")).map_err(e)?;
        let rope_freq_scale = match (scaling, factor) {
            (None | Some("none"), _) | (_, None) => 1.0,
            (Some("linear"), Some(f)) if f > 0.0 => 1.0 / f,
            (Some(other), _) => {
                return Err(Error::model(format!(
                    "RoPE scaling `{other}` is not implemented (linear and llama3 frequency factors are)"
                )));
            }
        };
        // Sizes are checked against the file before anything is allocated from them: each
        // layer has nine tensors, so a count past the file's tensors is a corrupt header.
        let n_layer = get("block_count")?;
        let tensors = file.tensors().len();
        if n_layer == 0 || n_layer > tensors / 9 {
            return Err(Error::model(format!(
                "{arch}.block_count is {n_layer}: expected 1 or more layers, and the file's \
                 {tensors} tensors hold at most {} (nine tensors each)",
                tensors / 9
            )));
        }
        let n_ff = get("feed_forward_length")?;
        if n_ff == 0 || n_vocab == 0 {
            return Err(Error::model(format!(
                "{arch}.feed_forward_length is {n_ff} and the vocabulary has {n_vocab} tokens: \
                 both must be 1 or more"
            )));
        }
        let rms_eps = md
            .get_opt_f32(&key("attention.layer_norm_rms_epsilon"))
            .map_err(e)?
            .unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(Error::model(format!(
                "{arch}.attention.layer_norm_rms_epsilon is {rms_eps}: expected a small \
                 positive number such as 1e-5"
            )));
        }
        let rope_base = md
            .get_opt_f32(&key("rope.freq_base"))
            .map_err(e)?
            .unwrap_or(10_000.0);
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(Error::model(format!(
                "{arch}.rope.freq_base is {rope_base}: expected a positive number such as 10000"
            )));
        }
        Ok(LlamaConfig {
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train: get("context_length")?,
            rms_eps,
            rope_base,
            rope_dim,
            rope_freq_scale,
        })
    }

    pub(crate) fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    wq: TensorInfo,
    wk: TensorInfo,
    wv: TensorInfo,
    wo: TensorInfo,
    ffn_norm: Vec<f32>,
    w_gate: TensorInfo,
    w_up: TensorInfo,
    w_down: TensorInfo,
}

/// A loaded llama-family model: its configuration and weights, which stay in the
/// memory-mapped file.
#[derive(Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    file: Arc<GgufFile>,
    tok_embd: TensorInfo,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    output: TensorInfo,
    rope_factors: Option<Vec<f32>>,
}

/// Weight types the backend can multiply by.
fn check_matmul_type(t: &TensorInfo) -> Result<()> {
    match t.ty.vec_dot_type() {
        Some(_) => Ok(()),
        None => Err(Error::model(format!(
            "GGUF tensor {}: type {} cannot be used as a weight by this backend",
            t.name,
            t.ty.name()
        ))),
    }
}

impl Llama {
    /// Loads a llama-family model from an open GGUF file.
    ///
    /// # Errors
    /// [`Error::Model`] naming a missing tensor, a tensor of the wrong shape (expected and
    /// found), or a weight type the backend cannot use.
    pub fn load(file: Arc<GgufFile>) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(&file)?;
        let tensor = |name: &str, dims: &[usize]| -> Result<TensorInfo> {
            let t = file
                .tensor(name)
                .ok_or_else(|| Error::model(format!("GGUF tensor {name} is missing")))?;
            let found: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            if found != dims {
                return Err(Error::model(format!(
                    "GGUF tensor {name}: expected shape {dims:?}, found {found:?}"
                )));
            }
            Ok(t.clone())
        };
        let weight = |name: &str, cols: usize, rows: usize| -> Result<TensorInfo> {
            let t = tensor(name, &[cols, rows])?;
            check_matmul_type(&t)?;
            Ok(t)
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = tensor(name, &[n])?;
            let mut out = vec![0.0; n];
            crate::quant::dequantize_row(t.ty, file.tensor_data(&t), &mut out)
                .map_err(|e| Error::model_with_source(format!("GGUF tensor {name}: {e}"), e))?;
            Ok(out)
        };
        let (d, q, kv, ff) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        let tok_embd = weight("token_embd.weight", d, cfg.n_vocab)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: vector(&n("attn_norm"), d)?,
                wq: weight(&n("attn_q"), d, q)?,
                wk: weight(&n("attn_k"), d, kv)?,
                wv: weight(&n("attn_v"), d, kv)?,
                wo: weight(&n("attn_output"), q, d)?,
                ffn_norm: vector(&n("ffn_norm"), d)?,
                w_gate: weight(&n("ffn_gate"), d, ff)?,
                w_up: weight(&n("ffn_up"), d, ff)?,
                w_down: weight(&n("ffn_down"), ff, d)?,
            });
        }
        let output_norm = vector("output_norm.weight", d)?;
        let output = match file.tensor("output.weight") {
            Some(_) => weight("output.weight", d, cfg.n_vocab)?,
            None => tok_embd.clone(),
        };
        let rope_factors = match file.tensor("rope_freqs.weight") {
            Some(_) => Some(vector("rope_freqs.weight", cfg.rope_dim / 2)?),
            None => None,
        };
        Ok(Llama {
            cfg,
            file,
            tok_embd,
            blocks,
            output_norm,
            output,
            rope_factors,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    fn view(&self, t: &TensorInfo) -> WeightView<'_> {
        let dims = &t.dims;
        WeightView {
            ty: t.ty,
            cols: dims[0] as usize,
            rows: dims[1] as usize,
            data: self.file.tensor_data(t),
        }
    }

    /// Runs `tokens` at positions `kv.len()..`, appending their keys and values to `kv`, and
    /// leaves the final (normalised) hidden state of every token in `s.hidden()`.
    pub(crate) fn forward(&self, tokens: &[u32], kv: &mut KvCache, s: &mut Scratch) -> Result<()> {
        let cfg = &self.cfg;
        let n = tokens.len();
        let pos0 = kv.len;
        if pos0 + n > kv.capacity {
            return Err(Error::ContextLengthExceeded {
                message: format!(
                    "{} tokens do not fit the context window of {} tokens",
                    pos0 + n,
                    kv.capacity
                ),
                requested: Some(pos0 + n),
                limit: Some(kv.capacity),
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                cfg.n_vocab
            )));
        }
        let (d, qd, kvd, ff) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        s.resize(n, cfg);
        let embd = self.view(&self.tok_embd);
        for (t, &tok) in tokens.iter().enumerate() {
            embd.dequantize_row(tok as usize, &mut s.x[t * d..(t + 1) * d]);
        }
        for (l, b) in self.blocks.iter().enumerate() {
            rms_norm_rows(&s.x, &b.attn_norm, cfg.rms_eps, &mut s.xn);
            matmul_group(
                &[self.view(&b.wq), self.view(&b.wk), self.view(&b.wv)],
                &s.xn,
                n,
                &mut [&mut s.q[..n * qd], &mut s.k[..n * kvd], &mut s.v[..n * kvd]],
                &mut s.mm,
                &s.pool,
            );
            for t in 0..n {
                let pos = pos0 + t;
                self.rope(&mut s.q[t * qd..(t + 1) * qd], pos);
                self.rope(&mut s.k[t * kvd..(t + 1) * kvd], pos);
            }
            kv.store(l, pos0, &s.k[..n * kvd], &s.v[..n * kvd], cfg);
            attend_layer(
                cfg,
                kv,
                l,
                pos0,
                n,
                &s.q[..n * qd],
                &mut s.attn[..n * qd],
                &s.pool,
                &mut s.attn_buf,
            );
            matmul(self.view(&b.wo), &s.attn, n, &mut s.xn, &mut s.mm, &s.pool);
            add_in_place(&mut s.x, &s.xn);
            rms_norm_rows(&s.x, &b.ffn_norm, cfg.rms_eps, &mut s.xn);
            matmul_group(
                &[self.view(&b.w_gate), self.view(&b.w_up)],
                &s.xn,
                n,
                &mut [&mut s.gate[..n * ff], &mut s.up[..n * ff]],
                &mut s.mm,
                &s.pool,
            );
            kernels::swiglu(&mut s.gate, &s.up);
            matmul(
                self.view(&b.w_down),
                &s.gate,
                n,
                &mut s.xn,
                &mut s.mm,
                &s.pool,
            );
            add_in_place(&mut s.x, &s.xn);
        }
        kv.len = pos0 + n;
        rms_norm_rows(&s.x, &self.output_norm, cfg.rms_eps, &mut s.xn);
        Ok(())
    }

    /// Logits of the output head for `hidden` (rows of `n_embd` values).
    pub(crate) fn logits(&self, hidden: &[f32], out: &mut Vec<f32>, s: &mut Scratch) {
        let n = hidden.len() / self.cfg.n_embd;
        out.resize(n * self.cfg.n_vocab, 0.0);
        matmul(self.view(&self.output), hidden, n, out, &mut s.mm, &s.pool);
    }

    /// Rotates adjacent pairs of each head's first `rope_dim` values by the position angle
    /// (the "normal" RoPE of llama; GGUF conversion has already permuted Q and K for it).
    fn rope(&self, x: &mut [f32], pos: usize) {
        let cfg = &self.cfg;
        let theta_scale = cfg.rope_base.powf(-2.0 / cfg.rope_dim as f32);
        for head in x.chunks_exact_mut(cfg.head_dim) {
            let mut theta = pos as f32 * cfg.rope_freq_scale;
            for i in 0..cfg.rope_dim / 2 {
                let t = match &self.rope_factors {
                    Some(f) => theta / f[i],
                    None => theta,
                };
                let (sin, cos) = (t.sin(), t.cos());
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                // Fused multiply-adds, as llama.cpp's compiled rotation has them.
                head[2 * i] = a.mul_add(cos, -(b * sin));
                head[2 * i + 1] = a.mul_add(sin, b * cos);
                theta *= theta_scale;
            }
        }
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // Squares in f32, summed in f64, as ggml does.
        let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let scale = 1.0 / ((sum / d as f64) as f32 + eps).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// Buffers of one forward pass, reused across calls, and the threads that run it.
#[derive(Debug)]
pub(crate) struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    mm: MatmulScratch,
    attn_buf: AttnBuffers,
    pool: Pool,
}

impl Scratch {
    /// Buffers for forward passes run on `pool`'s threads.
    pub(crate) fn new(pool: Pool) -> Self {
        Scratch {
            x: Vec::new(),
            xn: Vec::new(),
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            attn: Vec::new(),
            gate: Vec::new(),
            up: Vec::new(),
            mm: MatmulScratch::default(),
            attn_buf: AttnBuffers::new(pool.threads()),
            pool,
        }
    }

    fn resize(&mut self, n: usize, cfg: &LlamaConfig) {
        self.x.resize(n * cfg.n_embd, 0.0);
        self.xn.resize(n * cfg.n_embd, 0.0);
        self.q.resize(n * cfg.q_dim(), 0.0);
        self.k.resize(n * cfg.kv_dim(), 0.0);
        self.v.resize(n * cfg.kv_dim(), 0.0);
        self.attn.resize(n * cfg.q_dim(), 0.0);
        self.gate.resize(n * cfg.n_ff, 0.0);
        self.up.resize(n * cfg.n_ff, 0.0);
        // Shrink views to exactly n rows so whole-buffer loops see only this batch.
        self.x.truncate(n * cfg.n_embd);
        self.xn.truncate(n * cfg.n_embd);
        self.attn.truncate(n * cfg.q_dim());
        self.gate.truncate(n * cfg.n_ff);
        self.up.truncate(n * cfg.n_ff);
    }

    /// The final normalised hidden states of the last forward pass, `n_embd` per token.
    pub(crate) fn hidden(&self) -> &[f32] {
        &self.xn
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small model's shape (SmolLM2-135M's attention), one layer.
    pub(crate) fn config() -> LlamaConfig {
        LlamaConfig {
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
            rope_freq_scale: 1.0,
        }
    }

    /// `n` deterministic values in -3..3.
    pub(crate) fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed as f32 * 1.7).sin() * 3.0)
            .collect()
    }
}
