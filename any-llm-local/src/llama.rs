//! The llama architecture: Llama 2 and 3, Mistral, SmolLM, TinyLlama and their kin, all
//! `general.architecture = llama` in GGUF.
//!
//! Token embedding (quantized), then per block: RMSNorm, attention with rotary position
//! embeddings and grouped-query heads over a KV cache, a residual; RMSNorm, a SwiGLU
//! feed-forward, a residual. A final RMSNorm, and the output head (tied to the embedding when
//! the file has no `output.weight`).

use std::sync::{Arc, Mutex, PoisonError};

use crate::attention::{
    AttentionScratch, Q8_BLOCK, SumOrder, attend_group, group_scores, group_value_slots,
    q8_combine, q8_partial, q8_partial_len, quantize_queries, softmax_rounded,
};
use crate::gguf::{GgufFile, TensorInfo};
use crate::kernels::{self, KvRows};
use crate::matmul::{MatmulScratch, WeightView, matmul, matmul_group};
use crate::pool::Pool;
use crate::quant::GgmlType;
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
        if n_head == 0 || n_embd % n_head != 0 {
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
        Ok(LlamaConfig {
            n_vocab,
            n_embd,
            n_layer: get("block_count")?,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: get("feed_forward_length")?,
            n_ctx_train: get("context_length")?,
            rms_eps: md
                .get_opt_f32(&key("attention.layer_norm_rms_epsilon"))
                .map_err(e)?
                .unwrap_or(1e-5),
            rope_base: md
                .get_opt_f32(&key("rope.freq_base"))
                .map_err(e)?
                .unwrap_or(10_000.0),
            rope_dim,
            rope_freq_scale,
        })
    }

    fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_dim(&self) -> usize {
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
            attention(
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

/// Context length from which a single token's attention is split across threads by
/// positions (scores) and by columns (weighted values) rather than by key/value head: below
/// it the heads are too little work to be worth a second region.
const SPLIT_FROM: usize = 128;

/// Positions per task of the split's scores.
const SCORE_BLOCK: usize = 256;

/// Causal grouped-query attention of `n` new tokens (at `pos0..`) over the cache. The query
/// heads sharing a key/value head are computed together, so each cached row is read once for
/// all of them.
#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &LlamaConfig,
    kv: &KvCache,
    layer: usize,
    pos0: usize,
    n: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let order = SumOrder::for_batch(n);
    let len = pos0 + 1;
    if n == 1 && kv.ty == KvCacheType::Q8_0 {
        return attention_q8(cfg, kv, layer, len, q, out, pool, s);
    }
    if n == 1 && len >= SPLIT_FROM && pool.threads() > 1 {
        return attention_split(cfg, kv, layer, len, q, out, pool, s);
    }
    // One task per token and key/value head: its query heads are contiguous in `q` and `out`.
    pool.for_each_chunk(out, group * hd, |idx, o, thread| {
        // Each thread index is used by one task at a time: the lock is never contended.
        let mut sc = s.per_thread[thread]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (t, g) = (idx / cfg.n_head_kv, idx % cfg.n_head_kv);
        let len = pos0 + t + 1;
        let q = &q[idx * group * hd..(idx + 1) * group * hd];
        attend_group(
            order,
            q,
            kv.keys(layer, g, len),
            kv.values(layer, g, len),
            len,
            hd,
            scale,
            &mut sc,
            o,
        );
    });
}

/// A single token's attention over a long context in two regions: scores by blocks of
/// positions, then softmax and weighted values by halves of the head width. Every number is
/// the one [`attend_group`] computes.
#[allow(clippy::too_many_arguments)]
fn attention_split(
    cfg: &LlamaConfig,
    kv: &KvCache,
    layer: usize,
    len: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let order = SumOrder::Lanes64;
    let blocks = len.div_ceil(SCORE_BLOCK);
    // The queries rounded to f16, as the keys are.
    s.q.clear();
    s.q.extend_from_slice(q);
    kernels::round_to_f16(&mut s.q);
    // Scores: task (g, b) holds its heads' scores of block b, head-major.
    s.scores
        .resize(cfg.n_head_kv * blocks * group * SCORE_BLOCK, 0.0);
    let qr = &s.q;
    pool.for_each_chunk(&mut s.scores, group * SCORE_BLOCK, |idx, o, _| {
        let (g, b) = (idx / blocks, idx % blocks);
        let start = b * SCORE_BLOCK;
        let rows = SCORE_BLOCK.min(len - start);
        let keys = kv.keys(layer, g, len).range(start, rows, hd);
        let qg = &qr[g * group * hd..(g + 1) * group * hd];
        group_scores(order, qg, keys, hd, scale, &mut o[..group * rows]);
    });
    // Probabilities, a task per query head, gathered from the blocks.
    s.probs.resize(cfg.n_head * len, 0.0);
    let scores = &s.scores;
    pool.for_each_chunk(&mut s.probs, len, |head, p, _| {
        let (g, h) = (head / group, head % group);
        for b in 0..blocks {
            let start = b * SCORE_BLOCK;
            let rows = SCORE_BLOCK.min(len - start);
            let at = (g * blocks + b) * group * SCORE_BLOCK + h * rows;
            p[start..start + rows].copy_from_slice(&scores[at..at + rows]);
        }
        softmax_rounded(p);
    });
    // Weighted values: task (g, half) sums its heads' values into half of the slots (half of
    // each run of 64 positions: whole rows, read front to back).
    let half_slots = order.period() / 2;
    let stride = half_slots + 1;
    let part = group * stride * hd;
    s.parts.resize(cfg.n_head_kv * 2 * part, 0.0);
    let probs = &s.probs;
    pool.for_each_chunk(&mut s.parts, part, |idx, acc, _| {
        let (g, half) = (idx / 2, idx % 2);
        let p = &probs[g * group * len..(g + 1) * group * len];
        let slots = half * half_slots..(half + 1) * half_slots;
        group_value_slots(order, p, kv.values(layer, g, len), hd, group, slots, acc);
    });
    // Fold: the first halving adds the second half's slots to the first's, elementwise.
    for (g, parts) in s.parts.chunks_exact_mut(2 * part).enumerate() {
        let (lo, hi) = parts.split_at_mut(part);
        for h in 0..group {
            let at = h * stride * hd;
            let (a, b) = (
                &mut lo[at..at + half_slots * hd],
                &hi[at..at + half_slots * hd],
            );
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
            let o = (g * group + h) * hd;
            kernels::fold_slots(half_slots, a, &mut out[o..o + hd]);
        }
    }
}

/// A single token's attention over a Q8_0 cache in one region: a task per key/value head and
/// block of [`Q8_BLOCK`] positions computes integer scores against the queries quantized to
/// Q8_0 (as llama.cpp scores a quantized cache), their exponentials and the weighted values;
/// the blocks are then joined head by head. The blocks do not depend on the number of
/// threads, so neither does the result.
#[allow(clippy::too_many_arguments)]
fn attention_q8(
    cfg: &LlamaConfig,
    kv: &KvCache,
    layer: usize,
    len: usize,
    q: &[f32],
    out: &mut [f32],
    pool: &Pool,
    s: &mut AttnBuffers,
) {
    let hd = cfg.head_dim;
    let group = cfg.n_head / cfg.n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let blocks = len.div_ceil(Q8_BLOCK);
    quantize_queries(q, &mut s.qs, &mut s.qd);
    let part = q8_partial_len(group, hd);
    s.parts.resize(cfg.n_head_kv * blocks * part, 0.0);
    let (qs, qd) = (&s.qs, &s.qd);
    let per_thread = &s.per_thread;
    pool.for_each_chunk(&mut s.parts, part, |idx, o, thread| {
        let (g, b) = (idx / blocks, idx % blocks);
        let start = b * Q8_BLOCK;
        let rows = Q8_BLOCK.min(len - start);
        let (KvRows::Q8_0(keys), KvRows::Q8_0(values)) = (
            kv.keys(layer, g, len).range(start, rows, hd),
            kv.values(layer, g, len).range(start, rows, hd),
        ) else {
            unreachable!("a Q8_0 cache holds Q8_0 rows")
        };
        // Each thread index is used by one task at a time: the lock is never contended.
        let mut sc = per_thread[thread]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        q8_partial(
            &qs[g * group * hd..(g + 1) * group * hd],
            &qd[g * group * hd / 32..(g + 1) * group * hd / 32],
            keys,
            values,
            rows,
            hd,
            scale,
            &mut sc.scores,
            o,
        );
    });
    for (head, o) in out[..cfg.n_head * hd].chunks_exact_mut(hd).enumerate() {
        let (g, h) = (head / group, head % group);
        let parts = s.parts[g * blocks * part..(g + 1) * blocks * part]
            .chunks_exact(part)
            .map(|p| (p[2 * h], p[2 * h + 1], &p[2 * group + h * hd..][..hd]));
        q8_combine(parts, o);
    }
}

/// Attention buffers: per-thread scratch and the split's shared arrays.
#[derive(Debug)]
struct AttnBuffers {
    per_thread: Vec<Mutex<AttentionScratch>>,
    q: Vec<f32>,
    scores: Vec<f32>,
    probs: Vec<f32>,
    parts: Vec<f32>,
    /// A Q8_0 cache's quantized queries: bytes and a scale per 32.
    qs: Vec<i8>,
    qd: Vec<f32>,
}

impl AttnBuffers {
    fn new(threads: usize) -> Self {
        AttnBuffers {
            per_thread: (0..threads).map(|_| Mutex::default()).collect(),
            q: Vec::new(),
            scores: Vec::new(),
            probs: Vec::new(),
            parts: Vec::new(),
            qs: Vec::new(),
            qd: Vec::new(),
        }
    }
}

/// The number type the KV cache stores keys and values in.
///
/// `F16` is llama.cpp's default and what the reference tests compare against bit for bit.
/// `Q8_0` (blocks of 32 signed bytes with an f16 scale, as llama.cpp's `--cache-type-k q8_0
/// --cache-type-v q8_0`) holds the cache in 34 bytes per 32 values instead of 64: a long
/// context's decode step reads about half as much cache, for a small change in the numbers
/// (perplexity on the reference text within a few tenths of a percent of f16's; see the
/// book's chapter on the local backend).
///
/// ```
/// use any_llm_local::{KvCacheType, LocalModelOptions};
///
/// let kv: KvCacheType = "q8_0".parse()?;
/// assert_eq!(kv.row_bytes(64), 68); // two blocks of 32 values, 34 bytes each
/// let options = LocalModelOptions { kv_cache: kv, ..Default::default() };
/// // LocalModel::open_with("model.gguf", options)?
/// # let _ = options;
/// # Ok::<(), any_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KvCacheType {
    /// IEEE half precision, 2 bytes a value.
    #[default]
    F16,
    /// 8-bit blocks of 32 values with an f16 scale, 1.0625 bytes a value.
    Q8_0,
}

impl KvCacheType {
    /// The name llama.cpp's `--cache-type-k` uses: `f16` or `q8_0`.
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of one cached row of `head_dim` values (`head_dim` a multiple of 32 for Q8_0).
    pub fn row_bytes(self, head_dim: usize) -> usize {
        match self {
            KvCacheType::F16 => 2 * head_dim,
            KvCacheType::Q8_0 => head_dim / 32 * kernels::Q8_0_BLOCK,
        }
    }
}

impl std::fmt::Display for KvCacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KvCacheType {
    type Err = Error;

    /// `f16` or `q8_0` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvCacheType::F16),
            "q8_0" => Ok(KvCacheType::Q8_0),
            _ => Err(Error::InvalidRequest(format!(
                "unknown KV cache type {s:?}: expected f16 or q8_0"
            ))),
        }
    }
}

/// One layer's keys or values, `[kv_head][position][head_dim]`.
#[derive(Debug)]
enum Plane {
    F16(Vec<u16>),
    Q8_0(Vec<u8>),
}

/// Keys and values of every position so far, per layer and key/value head, each head's
/// positions contiguous so attention streams through them.
#[derive(Debug)]
pub(crate) struct KvCache {
    k: Vec<Plane>,
    v: Vec<Plane>,
    head_dim: usize,
    ty: KvCacheType,
    /// Positions filled.
    pub(crate) len: usize,
    /// Positions the cache holds (the context window).
    pub(crate) capacity: usize,
}

impl KvCache {
    /// A cache for `capacity` positions. Pages are touched only as positions fill.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for Q8_0 with a head width that is not a multiple of 32.
    pub(crate) fn new(cfg: &LlamaConfig, capacity: usize, ty: KvCacheType) -> Result<Self> {
        if ty == KvCacheType::Q8_0 && !cfg.head_dim.is_multiple_of(32) {
            return Err(Error::InvalidRequest(format!(
                "a Q8_0 KV cache needs a head width that is a multiple of 32; this model's is {}",
                cfg.head_dim
            )));
        }
        let rows = cfg.n_head_kv * capacity;
        let plane = || match ty {
            KvCacheType::F16 => Plane::F16(vec![0; rows * cfg.head_dim]),
            KvCacheType::Q8_0 => Plane::Q8_0(vec![0; rows * ty.row_bytes(cfg.head_dim)]),
        };
        Ok(KvCache {
            k: (0..cfg.n_layer).map(|_| plane()).collect(),
            v: (0..cfg.n_layer).map(|_| plane()).collect(),
            head_dim: cfg.head_dim,
            ty,
            len: 0,
            capacity,
        })
    }

    /// Forgets every position from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32], cfg: &LlamaConfig) {
        let hd = self.head_dim;
        let kvd = cfg.kv_dim();
        let rb = self.ty.row_bytes(hd);
        for (t, (kr, vr)) in k.chunks_exact(kvd).zip(v.chunks_exact(kvd)).enumerate() {
            for g in 0..cfg.n_head_kv {
                let row = g * self.capacity + pos0 + t;
                let (ks, vs) = (&kr[g * hd..(g + 1) * hd], &vr[g * hd..(g + 1) * hd]);
                for (plane, x) in [(&mut self.k[layer], ks), (&mut self.v[layer], vs)] {
                    match plane {
                        Plane::F16(p) => kernels::f32_to_f16(x, &mut p[row * hd..(row + 1) * hd]),
                        Plane::Q8_0(p) => kernels::quantize_activations(
                            GgmlType::Q8_0,
                            x,
                            &mut p[row * rb..(row + 1) * rb],
                        ),
                    }
                }
            }
        }
    }

    /// The first `len` rows of key/value head `head` in `plane`.
    fn rows<'a>(&self, plane: &'a Plane, head: usize, len: usize) -> KvRows<'a> {
        let first = head * self.capacity;
        KvRows::range(
            match plane {
                Plane::F16(p) => KvRows::F16(p),
                Plane::Q8_0(p) => KvRows::Q8_0(p),
            },
            first,
            len,
            self.head_dim,
        )
    }

    fn keys(&self, layer: usize, head: usize, len: usize) -> KvRows<'_> {
        self.rows(&self.k[layer], head, len)
    }

    fn values(&self, layer: usize, head: usize, len: usize) -> KvRows<'_> {
        self.rows(&self.v[layer], head, len)
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
mod tests {
    use super::*;

    fn config() -> LlamaConfig {
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

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed as f32 * 1.7).sin() * 3.0)
            .collect()
    }

    #[test]
    fn a_single_tokens_attention_split_across_threads_equals_the_one_thread_result() {
        let cfg = config();
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let one = Pool::new(1).unwrap();
        let two = Pool::new(2).unwrap();
        for (len, ty) in [1, 100, SPLIT_FROM, 300, SCORE_BLOCK * 2 + 17]
            .into_iter()
            .flat_map(|len| [(len, KvCacheType::F16), (len, KvCacheType::Q8_0)])
        {
            let mut kv = KvCache::new(&cfg, len, ty).unwrap();
            kv.store(0, 0, &noise(len * kvd, 1), &noise(len * kvd, 2), &cfg);
            kv.len = len;
            let q = noise(qd, 3);
            let (mut a, mut b) = (vec![0.0; qd], vec![0.0; qd]);
            let mut sa = AttnBuffers::new(1);
            let mut sb = AttnBuffers::new(2);
            attention(&cfg, &kv, 0, len - 1, 1, &q, &mut a, &one, &mut sa);
            attention(&cfg, &kv, 0, len - 1, 1, &q, &mut b, &two, &mut sb);
            assert!(
                a.iter().all(|v| v.is_finite() && *v != 0.0),
                "len {len} {ty}"
            );
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "len {len} {ty}"
            );
        }
    }

    #[test]
    fn a_q8_0_cache_stays_close_to_the_f16_one() {
        let cfg = config();
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let pool = Pool::new(2).unwrap();
        let len = 300;
        let (k, v) = (noise(len * kvd, 1), noise(len * kvd, 2));
        let q = noise(qd, 3);
        let out = |ty| {
            let mut kv = KvCache::new(&cfg, len, ty).unwrap();
            kv.store(0, 0, &k, &v, &cfg);
            kv.len = len;
            let mut o = vec![0.0; qd];
            attention(
                &cfg,
                &kv,
                0,
                len - 1,
                1,
                &q,
                &mut o,
                &pool,
                &mut AttnBuffers::new(2),
            );
            o
        };
        let (f16, q8) = (out(KvCacheType::F16), out(KvCacheType::Q8_0));
        let scale = f16.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = f16
            .iter()
            .zip(&q8)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // 8 bits per value over values up to 3: a step of 3/127 at worst, far less on average.
        assert!(worst < 0.02 * scale, "q8_0 off by {worst} (scale {scale})");
        assert_ne!(f16, q8, "the Q8_0 cache computed nothing of its own");
    }

    #[test]
    fn kv_cache_types_parse_and_check_the_head_width() {
        assert_eq!("Q8_0".parse::<KvCacheType>().unwrap(), KvCacheType::Q8_0);
        assert_eq!("f16".parse::<KvCacheType>().unwrap(), KvCacheType::F16);
        let e = "q4".parse::<KvCacheType>().unwrap_err().to_string();
        assert!(e.contains("q4") && e.contains("q8_0"), "{e}");
        let mut cfg = config();
        cfg.head_dim = 48;
        let e = KvCache::new(&cfg, 8, KvCacheType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of 32") && e.contains("48"), "{e}");
        assert!(KvCache::new(&cfg, 8, KvCacheType::F16).is_ok());
    }
}
