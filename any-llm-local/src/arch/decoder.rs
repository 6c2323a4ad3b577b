//! The forward pass shared by every architecture: embedding, the blocks, the output head,
//! with each architecture's differences (biases, fused tensors, Q/K norms, the RoPE pairing)
//! taken from the tensors the file has and from [`ModelConfig`].

use std::collections::HashMap;
use std::sync::Arc;

use half::f16;

use super::{Activation, Architecture, ModelConfig, RopeStyle};
use crate::attention::{AttnBuffers, attend_layer};
use crate::gguf::{GgufFile, TensorInfo};
use crate::kernels;
use crate::kv_cache::KvCache;
use crate::matmul::{MatmulScratch, WeightView, matmul, matmul_group};
use crate::pool::Pool;
use crate::quant::GgmlType;
use any_core::{Error, Result};

/// The query, key and value projections: three tensors, or one with their rows stacked
/// (`attn_qkv`, as Phi-3 ships them).
#[derive(Debug)]
enum Qkv {
    Separate {
        wq: TensorInfo,
        wk: TensorInfo,
        wv: TensorInfo,
    },
    Fused(TensorInfo),
}

/// The gate and up projections of the feed-forward: two tensors, or one whose first half of
/// rows is the gate (`ffn_up` of twice the width, as Phi-3 ships it).
#[derive(Debug)]
enum GateUp {
    Separate { gate: TensorInfo, up: TensorInfo },
    Fused(TensorInfo),
}

#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    qkv: Qkv,
    /// Q, K and V biases (Qwen2), each optional as llama.cpp has them.
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    /// RMSNorm weights applied to each query and key head before RoPE (Qwen3).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: TensorInfo,
    /// RMSNorm of the attention's output before the residual (Gemma).
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate_up: GateUp,
    w_down: TensorInfo,
    /// RMSNorm of the feed-forward's output before the residual (Gemma).
    post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded decoder model: its configuration and weights, which stay in the memory-mapped
/// file but for the matrices packed at load for this CPU's kernels.
#[derive(Debug)]
pub struct Decoder {
    cfg: ModelConfig,
    file: Arc<GgufFile>,
    tok_embd: TensorInfo,
    blocks: Vec<Block>,
    output_norm: Vec<f32>,
    output: TensorInfo,
    /// Divisors of RoPE's frequencies: Llama 3's `rope_freqs`, for every context.
    rope_factors: Option<Vec<f32>>,
    /// LongRoPE's divisors (Phi-3.5, Phi-4 mini) for contexts past the original one, and
    /// for those within it.
    rope_long: Option<Vec<f32>>,
    rope_short: Option<Vec<f32>>,
    /// The matrices repacked at load for this CPU's packed kernels (`kernels::packed`).
    packed: HashMap<PackKey, kernels::packed::Packed>,
}

/// What a packed matrix is found by: its data's offset in the file, its type and its shape (a
/// file may name the same bytes twice with different types or shapes).
type PackKey = (u64, GgmlType, u64, u64);

/// A matrix's [`PackKey`] (matrices were checked to have two dimensions).
fn pack_key(t: &TensorInfo) -> PackKey {
    (t.offset, t.ty, t.dims[0], t.dims[1])
}

/// The `matrices` this CPU has packed kernels for, repacked (`kernels::packed`); each one's
/// pages of the file are released once it is packed, so the model holds one copy. The
/// matrices are shared among the CPU's threads. `ANY_NO_PACK` set in the environment packs
/// nothing (to compare).
fn pack_matrices(
    file: &GgufFile,
    matrices: &[&TensorInfo],
) -> HashMap<PackKey, kernels::packed::Packed> {
    if std::env::var_os("ANY_NO_PACK").is_some() {
        return HashMap::new();
    }
    let mut todo: Vec<&TensorInfo> = matrices.to_vec();
    let mut seen = std::collections::HashSet::new();
    todo.retain(|t| seen.insert(pack_key(t)));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let pack_some = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(t) = todo.get(i) else { break out };
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            if let Some(p) = kernels::packed::pack(t.ty, file.tensor_data(t), rows, cols) {
                file.release_pages(t);
                out.push((pack_key(t), p));
            }
        }
    };
    std::thread::scope(|s| {
        // A thread that cannot be started leaves its share to the others.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, pack_some).ok())
            .collect();
        let mut packed: HashMap<PackKey, kernels::packed::Packed> =
            pack_some().into_iter().collect();
        for h in helpers {
            packed.extend(h.join().expect("packing does not panic"));
        }
        packed
    })
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

impl Decoder {
    /// Loads a model of any supported architecture from an open GGUF file.
    ///
    /// # Errors
    /// [`Error::Model`] naming an unsupported architecture, a missing tensor, a tensor of the
    /// wrong shape (expected and found), or a weight type the backend cannot use.
    pub fn load(file: Arc<GgufFile>) -> Result<Self> {
        let cfg = ModelConfig::from_gguf(&file)?;
        let tensor = |name: &str, dims: &[usize]| -> Result<TensorInfo> {
            let t = file.tensor(name).ok_or_else(|| {
                Error::model(format!(
                    "GGUF tensor {name} is missing (a {} model needs it)",
                    cfg.arch
                ))
            })?;
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
        let optional = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
            match file.tensor(name) {
                Some(_) => vector(name, n).map(Some),
                None => Ok(None),
            }
        };
        let (d, q, kv, ff, hd) = (
            cfg.n_embd,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.n_ff,
            cfg.head_dim,
        );
        let tok_embd = weight("token_embd.weight", d, cfg.n_vocab)?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            let qkv = match file.tensor(&n("attn_qkv")) {
                Some(_) => Qkv::Fused(weight(&n("attn_qkv"), d, q + 2 * kv)?),
                None => Qkv::Separate {
                    wq: weight(&n("attn_q"), d, q)?,
                    wk: weight(&n("attn_k"), d, kv)?,
                    wv: weight(&n("attn_v"), d, kv)?,
                },
            };
            let needs_qk_norm = matches!(cfg.arch, Architecture::Qwen3 | Architecture::Gemma3);
            let gemma = matches!(cfg.arch, Architecture::Gemma2 | Architecture::Gemma3);
            let post_norm = |s: &str| -> Result<Option<Vec<f32>>> {
                if gemma {
                    vector(&n(s), d).map(Some)
                } else {
                    Ok(None)
                }
            };
            let qk_norm = |s: &str| -> Result<Option<Vec<f32>>> {
                if needs_qk_norm {
                    vector(&n(s), hd).map(Some)
                } else {
                    optional(&n(s), hd)
                }
            };
            let gate_up = match file.tensor(&n("ffn_gate")) {
                Some(_) => GateUp::Separate {
                    gate: weight(&n("ffn_gate"), d, ff)?,
                    up: weight(&n("ffn_up"), d, ff)?,
                },
                None if cfg.arch == Architecture::Phi3 => {
                    GateUp::Fused(weight(&n("ffn_up"), d, 2 * ff)?)
                }
                None => {
                    return Err(Error::model(format!(
                        "GGUF tensor {} is missing (a {} model needs it)",
                        n("ffn_gate"),
                        cfg.arch
                    )));
                }
            };
            if let Some(t) = ["attn_qkv", "attn_output", "output"]
                .iter()
                .find_map(|s| file.tensor(&b(s)))
            {
                return Err(Error::model(format!(
                    "GGUF tensor {}: biases on this projection are not implemented",
                    t.name
                )));
            }
            blocks.push(Block {
                attn_norm: vector(&n("attn_norm"), d)?,
                qkv,
                q_bias: optional(&b("attn_q"), q)?,
                k_bias: optional(&b("attn_k"), kv)?,
                v_bias: optional(&b("attn_v"), kv)?,
                q_norm: qk_norm("attn_q_norm")?,
                k_norm: qk_norm("attn_k_norm")?,
                wo: weight(&n("attn_output"), q, d)?,
                post_attn_norm: post_norm("post_attention_norm")?,
                ffn_norm: vector(&n("ffn_norm"), d)?,
                gate_up,
                w_down: weight(&n("ffn_down"), ff, d)?,
                post_ffn_norm: post_norm("post_ffw_norm")?,
            });
        }
        let output_norm = vector("output_norm.weight", d)?;
        let output = match file.tensor("output.weight") {
            Some(_) => weight("output.weight", d, cfg.n_vocab)?,
            None => tok_embd.clone(),
        };
        if file.tensor("output.bias").is_some() {
            return Err(Error::model(
                "GGUF tensor output.bias: a bias on the output head is not implemented",
            ));
        }
        let rope_factors = optional("rope_freqs.weight", cfg.rope_dim / 2)?;
        let rope_long = optional("rope_factors_long.weight", cfg.rope_dim / 2)?;
        let rope_short = optional("rope_factors_short.weight", cfg.rope_dim / 2)?;
        let mut matrices: Vec<&TensorInfo> = Vec::with_capacity(7 * blocks.len() + 1);
        for b in &blocks {
            match &b.qkv {
                Qkv::Separate { wq, wk, wv } => matrices.extend([wq, wk, wv]),
                Qkv::Fused(w) => matrices.push(w),
            }
            matrices.push(&b.wo);
            match &b.gate_up {
                GateUp::Separate { gate, up } => matrices.extend([gate, up]),
                GateUp::Fused(w) => matrices.push(w),
            }
            matrices.push(&b.w_down);
        }
        // A head tied to the embedding stays as it is: lookups read its rows.
        if output.offset != tok_embd.offset {
            matrices.push(&output);
        }
        let packed = pack_matrices(&file, &matrices);
        Ok(Decoder {
            cfg,
            file,
            tok_embd,
            blocks,
            output_norm,
            output,
            rope_factors,
            rope_long,
            rope_short,
            packed,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn view(&self, t: &TensorInfo) -> WeightView<'_> {
        let dims = &t.dims;
        let packed = self.packed.get(&pack_key(t));
        WeightView {
            ty: t.ty,
            cols: dims[0] as usize,
            rows: dims[1] as usize,
            data: match packed {
                Some(p) => p,
                None => self.file.tensor_data(t),
            },
            packed: packed.is_some(),
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
        if let Some(k) = cfg.embed_scale {
            s.x.iter_mut().for_each(|v| *v *= k);
        }
        for (l, b) in self.blocks.iter().enumerate() {
            rms_norm_rows(&s.x, &b.attn_norm, cfg.rms_eps, &mut s.xn);
            let (q, k, v) = (&mut s.q[..n * qd], &mut s.k[..n * kvd], &mut s.v[..n * kvd]);
            match &b.qkv {
                Qkv::Separate { wq, wk, wv } => matmul_group(
                    &[self.view(wq), self.view(wk), self.view(wv)],
                    &s.xn,
                    n,
                    &mut [q, k, v],
                    &mut s.mm,
                    &s.pool,
                ),
                Qkv::Fused(w) => {
                    s.fused.resize(n * (qd + 2 * kvd), 0.0);
                    matmul(self.view(w), &s.xn, n, &mut s.fused, &mut s.mm, &s.pool);
                    split_rows(&s.fused, n, &mut [q, k, v]);
                }
            }
            add_bias(&mut s.q[..n * qd], b.q_bias.as_deref());
            add_bias(&mut s.k[..n * kvd], b.k_bias.as_deref());
            add_bias(&mut s.v[..n * kvd], b.v_bias.as_deref());
            if let Some(w) = &b.q_norm {
                rms_norm_in_place(&mut s.q[..n * qd], w, cfg.rms_eps);
            }
            if let Some(w) = &b.k_norm {
                rms_norm_in_place(&mut s.k[..n * kvd], w, cfg.rms_eps);
            }
            let rope = cfg.rope_for(l);
            let factors = self.rope_factors_for(kv.capacity);
            for t in 0..n {
                self.rope_angles(pos0 + t, rope, factors, &mut s.angles);
                self.rope(&mut s.q[t * qd..(t + 1) * qd], &s.angles);
                self.rope(&mut s.k[t * kvd..(t + 1) * kvd], &s.angles);
            }
            if let Some(k) = cfg.query_scale {
                s.q[..n * qd].iter_mut().for_each(|v| *v *= k);
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
            if let Some(w) = &b.post_attn_norm {
                rms_norm_in_place(&mut s.xn, w, cfg.rms_eps);
            }
            add_in_place(&mut s.x, &s.xn);
            rms_norm_rows(&s.x, &b.ffn_norm, cfg.rms_eps, &mut s.xn);
            let (gate, up) = (&mut s.gate[..n * ff], &mut s.up[..n * ff]);
            match &b.gate_up {
                GateUp::Separate { gate: wg, up: wu } => matmul_group(
                    &[self.view(wg), self.view(wu)],
                    &s.xn,
                    n,
                    &mut [gate, up],
                    &mut s.mm,
                    &s.pool,
                ),
                GateUp::Fused(w) => {
                    s.fused.resize(n * 2 * ff, 0.0);
                    matmul(self.view(w), &s.xn, n, &mut s.fused, &mut s.mm, &s.pool);
                    split_rows(&s.fused, n, &mut [gate, up]);
                }
            }
            match cfg.activation {
                Activation::Silu => kernels::swiglu(&mut s.gate, &s.up),
                Activation::GeluTanh => geglu(&mut s.gate, &s.up),
            }
            matmul(
                self.view(&b.w_down),
                &s.gate,
                n,
                &mut s.xn,
                &mut s.mm,
                &s.pool,
            );
            if let Some(w) = &b.post_ffn_norm {
                rms_norm_in_place(&mut s.xn, w, cfg.rms_eps);
            }
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
        if let Some(cap) = self.cfg.final_softcap {
            soft_cap(out, cap);
        }
    }

    /// The RoPE frequency divisors for a context of `context` positions: Llama 3's, else
    /// LongRoPE's long or short ones as llama.cpp picks them.
    fn rope_factors_for(&self, context: usize) -> Option<&[f32]> {
        let longrope = if context > self.cfg.rope_ctx_orig {
            &self.rope_long
        } else {
            &self.rope_short
        };
        self.rope_factors.as_deref().or(longrope.as_deref())
    }

    /// The cosines and sines of position `pos`'s RoPE angles, one pair per rotated pair of
    /// values: the same for every head, so computed once per position, as ggml does.
    /// `(base, freq_scale)` are the layer's ([`ModelConfig::rope_for`]), `factors` the
    /// frequencies' divisors if any; both are scaled by [`ModelConfig::rope_attn_factor`].
    /// Under YaRN each angle mixes its scaled (interpolated) and unscaled (extrapolated)
    /// value along a ramp over the rotated pairs, and the magnitudes grow by YaRN's
    /// `1 + 0.1 ln(1 / freq_scale)`, in ggml's steps.
    fn rope_angles(
        &self,
        pos: usize,
        (base, freq_scale): (f32, f32),
        factors: Option<&[f32]>,
        out: &mut Vec<(f32, f32)>,
    ) {
        let cfg = &self.cfg;
        let theta_scale = base.powf(-2.0 / cfg.rope_dim as f32);
        let ext = cfg.rope_ext_factor;
        let mut m = cfg.rope_attn_factor;
        let mut ramp = None;
        if ext != 0.0 {
            ramp = Some(yarn_ramp_dims(cfg.rope_dim, cfg.rope_ctx_orig, base));
            m *= 1.0 + 0.1 * (1.0 / freq_scale).ln();
        }
        out.clear();
        let mut theta = pos as f32;
        for i in 0..cfg.rope_dim / 2 {
            let extrapolated = match factors {
                Some(f) => theta / f[i],
                None => theta,
            };
            let interpolated = freq_scale * extrapolated;
            let t = match ramp {
                Some((low, high)) => {
                    let y = (i as f32 - low) / (high - low).max(0.001);
                    let mix = (1.0 - y.clamp(0.0, 1.0)) * ext;
                    interpolated * (1.0 - mix) + extrapolated * mix
                }
                None => interpolated,
            };
            out.push((t.cos() * m, t.sin() * m));
            theta *= theta_scale;
        }
    }

    /// Rotates pairs of each head's first `rope_dim` values by `angles`
    /// ([`Self::rope_angles`]): adjacent pairs (llama's "normal" RoPE; its GGUF conversion has
    /// permuted Q and K for it) or value `i` with value `i + rope_dim / 2` (NeoX style, the
    /// Hugging Face layout).
    fn rope(&self, x: &mut [f32], angles: &[(f32, f32)]) {
        let cfg = &self.cfg;
        let half = angles.len();
        for head in x.chunks_exact_mut(cfg.head_dim) {
            for (i, &(cos, sin)) in angles.iter().enumerate() {
                let (ia, ib) = match cfg.rope_style {
                    RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + half),
                };
                let (a, b) = (head[ia], head[ib]);
                // Fused multiply-adds, as llama.cpp's compiled rotation has them.
                head[ia] = a.mul_add(cos, -(b * sin));
                head[ib] = a.mul_add(sin, b * cos);
            }
        }
    }
}

/// YaRN's ramp over the rotated pairs, as ggml places it: pairs up to `low` keep their
/// extrapolated angles, pairs from `high` on take the interpolated ones. The bounds are the
/// dimensions whose wavelengths fit 32 and 1 times into the original context (llama.cpp's
/// `beta_fast` and `beta_slow`, which it does not read from these architectures' files).
fn yarn_ramp_dims(rope_dim: usize, ctx_orig: usize, base: f32) -> (f32, f32) {
    const BETA_FAST: f32 = 32.0;
    const BETA_SLOW: f32 = 1.0;
    let dim = |rotations: f32| {
        rope_dim as f32 * (ctx_orig as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let low = dim(BETA_FAST).floor().max(0.0);
    let high = dim(BETA_SLOW).ceil().min(rope_dim as f32 - 1.0);
    (low, high)
}

/// Splits the token-major rows of stacked projections (`[q k v]` per token, `stacked.len() /
/// tokens` wide) into one buffer per projection, each `parts[i].len() / tokens` wide.
fn split_rows(stacked: &[f32], tokens: usize, parts: &mut [&mut [f32]]) {
    let width = stacked.len() / tokens;
    for (t, row) in stacked.chunks_exact(width).enumerate() {
        let mut at = 0;
        for p in parts.iter_mut() {
            let w = p.len() / tokens;
            p[t * w..(t + 1) * w].copy_from_slice(&row[at..at + w]);
            at += w;
        }
    }
}

/// `cap * tanh(x / cap)` of every value, in ggml's steps (a multiplication by `1 / cap`).
pub(crate) fn soft_cap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x {
        *v = (*v * inv).tanh() * cap;
    }
}

/// GELU (tanh approximation) of `gate` times `up`, into `gate`, as llama.cpp's CPU build
/// computes it: GELU looked up for the f16-rounded input and rounded to f16, the identity
/// from 10 up and zero from -10 down.
fn geglu(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            let x = f16::from_f32(x).to_f32();
            let gelu = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh());
            f16::from_f32(gelu).to_f32() * u
        };
    }
}

/// Adds `bias` to every row of `x`, if there is one.
fn add_bias(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in x.chunks_exact_mut(bias.len()) {
            add_in_place(row, bias);
        }
    }
}

/// RMSNorm of every `weight.len()`-wide piece of `x` (each head of a Q or K row), in place.
fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(weight.len()) {
        let scale = rms_scale(row, eps);
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)`: squares in f32, summed in f64, as ggml does.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    1.0 / ((sum / x.len() as f64) as f32 + eps).sqrt()
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let scale = rms_scale(xr, eps);
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
    /// Outputs of fused projections before they are split (Phi-3's QKV and gate/up).
    fused: Vec<f32>,
    /// One position's RoPE cosines and sines.
    angles: Vec<(f32, f32)>,
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
            fused: Vec::new(),
            angles: Vec::new(),
            mm: MatmulScratch::default(),
            attn_buf: AttnBuffers::new(pool.threads()),
            pool,
        }
    }

    fn resize(&mut self, n: usize, cfg: &ModelConfig) {
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
