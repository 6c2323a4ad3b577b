//! The hot loops, chosen at run time for the CPU at hand.
//!
//! Every function here has a portable path (the scalar reference in [`quant`] or a plain loop)
//! and, where the CPU has them, SIMD paths; tests check each SIMD path against the portable
//! one.
//!
//! This layer is the same for every CPU: it names no instruction set and holds no `unsafe`.
//! The kernels live in one module per instruction set architecture, laid out alike
//! (`x86` for x86-64, `arm` for aarch64: `legacy`, `kquants`, `attention`, `kvq8`,
//! `tests`), and those two are where `unsafe` may be used in `kernels` ([where `unsafe`
//! lives](crate#where-unsafe-lives) in the crate is said once, in the crate docs). Their
//! functions called from here are safe: each checks the CPU and the shapes, and says `false`
//! or `None` where it has no kernel for the call.
//!
//! [`quant`]: crate::quant

use half::f16;

use crate::quant::{self, GgmlType, Q8_0_BYTES, Q8_1_BYTES, QK};

pub(crate) mod gemm;
pub(crate) mod packed;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[allow(unsafe_code)]
mod arm;

/// The dot product [`quant::vec_dot`] computes, through the fastest kernel for `ty` on this
/// CPU (what the local backend's matrix multiplications run). Public for benchmarks and for
/// checking a kernel against the reference.
///
/// # Errors
/// As [`quant::vec_dot`]: an unsupported type, or rows that are not `n` values of `ty` and
/// of `ty.vec_dot_type()`.
pub fn vec_dot(ty: GgmlType, weight_row: &[u8], act_row: &[u8], n: usize) -> quant::Result<f32> {
    let act_ty = ty
        .vec_dot_type()
        .ok_or(quant::QuantError::Unsupported { ty, op: "vec_dot" })?;
    quant::check(ty, n, weight_row.len(), "weight row")?;
    quant::check(act_ty, n, act_row.len(), "activation row")?;
    Ok(dot_fn(ty)(weight_row, act_row, n))
}

/// Quantizes one row of activations into `ty` (a weight type's `vec_dot_type()`) as the
/// local backend's matrix multiplications do before their dot products.
///
/// # Errors
/// When `out` is not the size of `x.len()` values of `ty`, or `ty` cannot be quantized to.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> quant::Result<()> {
    quant::check(ty, x.len(), out.len(), "output")?;
    match ty {
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            quantize_activations(ty, x, out);
            Ok(())
        }
        _ => quant::quantize_row(ty, x, out),
    }
}

/// A dot product of one weight row (in its GGUF type) with one quantized activation row (in
/// the paired type), over `n` values. The slices must have exactly the row sizes.
pub(crate) type DotFn = fn(&[u8], &[u8], usize) -> f32;

/// The fastest dot product for weight type `ty` on this CPU.
pub(crate) fn dot_fn(ty: GgmlType) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::dot_fn(ty) {
        return f;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if let Some(f) = arm::dot_fn(ty) {
        return f;
    }
    scalar_dot_fn(ty)
}

/// Weight rows per tile of a [`TileFn`].
pub(crate) const TILE_ROWS: usize = 2;
/// Activation rows (tokens) per tile of a [`TileFn`].
pub(crate) const TILE_TOKENS: usize = 4;

/// [`TILE_ROWS`] × [`TILE_TOKENS`] dot products sharing their loads: weight rows
/// `w[r * wb..][..wb]` with activation rows `a[t * ab..][..ab]` (`wb`, `ab` the row sizes for
/// `n` values) into `out[r * TILE_TOKENS + t]`.
///
/// Each output is computed by exactly the operations, in the same order, that the [`DotFn`]
/// of the same type uses, so tiled and untiled results are bit for bit the same.
pub(crate) type TileFn = fn(&[u8], &[u8], usize, &mut [f32; TILE_ROWS * TILE_TOKENS]);

/// The tiled dot product for weight type `ty` on this CPU, where there is one.
pub(crate) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::tile_fn(ty) {
        return Some(f);
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if let Some(f) = arm::tile_fn(ty) {
        return Some(f);
    }
    let _ = ty;
    None
}

/// Weight rows of a [`RowsFn`].
pub(crate) const ROWS: usize = 4;

/// [`ROWS`] dot products of consecutive weight rows `w[r * wb..][..wb]` with one activation
/// row, into `out[r]` — what a one-token step (decode) multiplies with. Each output is computed
/// by exactly the operations the [`DotFn`] of the same type uses.
pub(crate) type RowsFn = fn(&[u8], &[u8], usize, &mut [f32; ROWS]);

/// The several-rows kernel for weight type `ty` on this CPU, where there is one.
pub(crate) fn rows_fn(ty: GgmlType) -> Option<RowsFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::rows_fn(ty) {
        return Some(f);
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if let Some(f) = arm::rows_fn(ty) {
        return Some(f);
    }
    let _ = ty;
    None
}

/// The scalar reference dot product for `ty`.
pub(crate) fn scalar_dot_fn(ty: GgmlType) -> DotFn {
    macro_rules! scalar {
        ($($t:ident),*) => {
            match ty {
                $(GgmlType::$t => |w, a, n| {
                    quant::vec_dot(GgmlType::$t, w, a, n).expect("row sizes were checked by the caller")
                },)*
                _ => |_, _, _| unreachable!("weight types are checked at load"),
            }
        };
    }
    scalar!(
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
        IQ4_NL, IQ4_XS
    )
}

/// Quantizes one activation row into `ty` (the type a weight pairs with).
///
/// Q8_0 and Q8_1 follow what llama.cpp's CPU kernels compute (scale `127 / max|x|`, ties
/// rounded to even) rather than its portable reference (`1 / d`, ties away from zero): the
/// two differ on exact ties, and a small model's logits are sensitive to those.
pub(crate) fn quantize_activations(ty: GgmlType, x: &[f32], out: &mut [u8]) {
    match ty {
        GgmlType::Q8_0 => quantize_q8(x, out, false),
        GgmlType::Q8_1 => quantize_q8(x, out, true),
        #[cfg(target_arch = "x86_64")]
        GgmlType::Q8_K if x86::quantize_q8_k(x, out) => {}
        _ => quant::quantize_row(ty, x, out).expect("activation sizes match the weight"),
    }
}

fn quantize_q8(x: &[f32], out: &mut [u8], with_sum: bool) {
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_q8(x, out, with_sum) {
        return;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if arm::quantize_q8(x, out, with_sum) {
        return;
    }
    quantize_q8_scalar(x, out, with_sum);
}

/// The portable [`quantize_q8`], which the vector paths must equal byte for byte.
fn quantize_q8_scalar(x: &[f32], out: &mut [u8], with_sum: bool) {
    let block = if with_sum { Q8_1_BYTES } else { Q8_0_BYTES };
    let head = if with_sum { 4 } else { 2 };
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(block)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (o, &v) in ob[head..].iter_mut().zip(xb) {
            let q = (v * id).round_ties_even() as i32;
            sum += q;
            *o = q as i8 as u8;
        }
        ob[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        if with_sum {
            ob[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_bits().to_le_bytes());
        }
    }
}

/// The dot product of f16 keys and f32 queries summed in 16 lanes (lane `L` takes indices
/// `≡ L mod 16`, reduced by halving), or with `lanes64` in 4 × 16 lanes over steps of 64
/// folded 0+2, 1+3, 0+1 first — the two orders of llama.cpp's f16 dot products (batch and
/// single token). `None` where this CPU has no vector path or the length is not a multiple of
/// 16: the caller then runs the same order in portable code.
pub(crate) fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> Option<f32> {
    debug_assert_eq!(k.len(), q.len());
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = x86::dot_f16_lanes(lanes64, k, q) {
        return Some(s);
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if let Some(s) = arm::dot_f16_lanes(lanes64, k, q) {
        return Some(s);
    }
    let _ = (lanes64, k, q);
    None
}

/// [`dot_f16_lanes`] for f32 keys (a Q8_0 cache's rows, widened exactly), in the same order.
pub(crate) fn dot_f32_lanes(lanes64: bool, k: &[f32], q: &[f32]) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = x86::dot_f32_lanes(lanes64, k, q) {
        return Some(s);
    }
    let _ = (lanes64, k, q);
    None
}

/// `acc[i] = fma(p, v[i], acc[i])` for a row of f32 values (one rounding per element).
pub(crate) fn fma_f32_row(acc: &mut [f32], p: f32, v: &[f32]) {
    debug_assert_eq!(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if x86::fma_f32_row(acc, p, v) {
        return;
    }
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = p.mul_add(x, *a);
    }
}

/// The rows of one key or value head in the KV cache (`hd` values each), in the cache's type.
///
/// Both types read back exactly: an f16 widens to f32 without rounding, and a Q8_0 value is
/// its block's f16 scale times an integer below 128 in magnitude, a product f32 holds
/// exactly. So the attention kernels sum the same f32 numbers in the same order whichever the
/// type, and the portable paths can dequantize a row and run the f32 order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KvRows<'a> {
    /// f16 bits, `hd` per row.
    F16(&'a [u16]),
    /// Q8_0 blocks, `hd / 32` per row.
    Q8_0(&'a [u8]),
}

impl<'a> KvRows<'a> {
    /// How many whole rows of `hd` values there are.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the x86 kernels check it
    pub(crate) fn rows(self, hd: usize) -> usize {
        match self {
            KvRows::F16(b) => b.len() / hd,
            KvRows::Q8_0(b) => b.len() / (hd / QK * Q8_0_BYTES),
        }
    }

    /// Rows `start..start + n`.
    pub(crate) fn range(self, start: usize, n: usize, hd: usize) -> KvRows<'a> {
        match self {
            KvRows::F16(b) => KvRows::F16(&b[start * hd..(start + n) * hd]),
            KvRows::Q8_0(b) => {
                let rb = hd / QK * Q8_0_BYTES;
                KvRows::Q8_0(&b[start * rb..(start + n) * rb])
            }
        }
    }

    /// Row `j`'s values as f32 (exact), into `out` (`hd` long).
    pub(crate) fn row_f32(self, j: usize, out: &mut [f32]) {
        let hd = out.len();
        match self {
            KvRows::F16(b) => {
                for (o, &h) in out.iter_mut().zip(&b[j * hd..(j + 1) * hd]) {
                    *o = f16::from_bits(h).to_f32();
                }
            }
            KvRows::Q8_0(b) => {
                let rb = hd / QK * Q8_0_BYTES;
                for (blk, o) in b[j * rb..(j + 1) * rb]
                    .chunks_exact(Q8_0_BYTES)
                    .zip(out.chunks_exact_mut(QK))
                {
                    let d = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
                    for (o, &q) in o.iter_mut().zip(&blk[2..]) {
                        *o = d * f32::from(q as i8);
                    }
                }
            }
        }
    }
}

/// Which of this CPU's vector kernels the attention functions may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The fastest this CPU has: what the backend runs.
    Best,
    /// Only the instruction set's baseline kernels, so that tests reach them on CPUs that
    /// would pick faster ones: on x86 the AVX2 kernels (also where AVX-512 is present); none
    /// elsewhere, where there is one tier.
    #[cfg_attr(not(test), allow(dead_code))]
    Baseline,
}

/// Attention scores of the query heads in `q` (`hd` values each) that share one key head:
/// `out[h * len + j] = dot(keys_j, q_h) * scale` for `len = out.len() / heads` key rows, every
/// dot product summed in the order of [`dot_f16_lanes`]. `false` where this CPU (in `tier`)
/// has no vector path for it: the caller then computes the same numbers one by one.
pub(crate) fn attn_scores(
    tier: Tier,
    lanes64: bool,
    keys: KvRows<'_>,
    q: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::attn_scores(tier, lanes64, keys, q, hd, scale, out) {
        return true;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if tier == Tier::Best && arm::attn_scores(lanes64, keys, q, hd, scale, out) {
        return true;
    }
    let _ = (tier, lanes64, keys, q, hd, scale, out);
    false
}

/// Partial sums of the weighted value rows for heads sharing them: head `h`'s row `j` (of
/// the `values`, `hd` wide) scaled by `p[h * len + j]` and fused-multiply-added into slot
/// `j mod 64` (single-token order) or `j mod 16` (batch order) in increasing `j`, for the
/// slots in `slots` only. Head `h`'s slot `s` is `acc[(h * (slots.len() + 1) + s -
/// slots.start) * hd..][..hd]` (a spare slot per head keeps the heads from aliasing in the
/// cache). `false` where this CPU (in `tier`) or head width has no vector path: the caller
/// then computes the same numbers row by row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attn_value_slots(
    tier: Tier,
    lanes64: bool,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::attn_value_slots(tier, lanes64, p, values, hd, heads, slots.clone(), acc) {
        return true;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if tier == Tier::Best
        && arm::attn_value_slots(lanes64, p, values, hd, heads, slots.clone(), acc)
    {
        return true;
    }
    let _ = (tier, lanes64, p, values, hd, heads, slots, acc);
    false
}

/// Scores of a Q8_0 cache's decode step: `out[h * len + j]` = query head `h` (`qs` signed
/// bytes and `qd` scales, one scale per 32 values, `hd` values a head) dotted with the Q8_0 key
/// row `j` of `keys`, times `scale`. Each block's integer sum is exact; the blocks are summed
/// as `s = fma(dk · dq, sum, s)` in order. `false` where this CPU (in `tier`) or head width
/// has no vector path: the caller then computes the same numbers in portable code.
pub(crate) fn attn_q8_scores(
    tier: Tier,
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::attn_q8_scores(tier, qs, qd, keys, hd, scale, out) {
        return true;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if tier == Tier::Best && arm::attn_q8_scores(qs, qd, keys, hd, scale, out) {
        return true;
    }
    let _ = (tier, qs, qd, keys, hd, scale, out);
    false
}

/// Weighted values of a Q8_0 cache's decode step: `acc[h * hd + d] = Σ_j p[h * len + j] ·
/// value_j[d]` over the Q8_0 rows `values`, summed in increasing `j` as `acc = fma(p · d,
/// byte, acc)` (`d` the value's block scale). `false` where this CPU (in `tier`) or head width
/// has no vector path: the caller then computes the same numbers in portable code.
pub(crate) fn attn_q8_values(
    tier: Tier,
    p: &[f32],
    values: &[u8],
    hd: usize,
    heads: usize,
    acc: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::attn_q8_values(tier, p, values, hd, heads, acc) {
        return true;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if tier == Tier::Best && arm::attn_q8_values(p, values, hd, heads, acc) {
        return true;
    }
    let _ = (tier, p, values, hd, heads, acc);
    false
}

/// Whether the Q8_0 score kernels take these shapes: head widths multiples of `unit` (the
/// values a kernel's step takes: 64 on x86, 32 on ARM) up to 256, whole heads of queries with
/// their scales, and keys for every score.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn q8_scores_fit(qs: &[i8], qd: &[f32], keys: &[u8], hd: usize, unit: usize, out: &[f32]) -> bool {
    let heads = qs.len() / hd.max(1);
    hd > 0
        && hd <= 256
        && hd.is_multiple_of(unit)
        && heads > 0
        && qs.len() == heads * hd
        && qd.len() == heads * hd / QK
        && out.len().is_multiple_of(heads)
        && keys.len() >= out.len() / heads * (hd / QK * Q8_0_BYTES)
}

/// Whether the Q8_0 value kernels take these shapes: whole Q8_0 rows, a probability per head
/// and row, and `hd` sums per head.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn q8_values_fit(p: &[f32], values: &[u8], hd: usize, heads: usize, acc: &[f32]) -> bool {
    hd > 0
        && hd.is_multiple_of(QK)
        && heads > 0
        && p.len().is_multiple_of(heads)
        && acc.len() == heads * hd
        && values.len() >= p.len() / heads * (hd / QK * Q8_0_BYTES)
}

/// Folds `rows` slots (`out.len()` floats each, in `acc`; `rows` a power of two) into `out`
/// by halving: slots `0..rows / 2` += the next `rows / 2`, down to one.
pub(crate) fn fold_slots(rows: usize, acc: &mut [f32], out: &mut [f32]) {
    let hd = out.len();
    debug_assert!(rows.is_power_of_two() && acc.len() >= rows * hd);
    #[cfg(target_arch = "x86_64")]
    if x86::fold_slots(rows, acc, out) {
        return;
    }
    fold_slots_portable(rows, acc, out);
}

/// [`fold_slots`] without vector kernels.
pub(crate) fn fold_slots_portable(rows: usize, acc: &mut [f32], out: &mut [f32]) {
    let hd = out.len();
    halve_rows(rows, acc, hd);
    out.copy_from_slice(&acc[..hd]);
}

/// Folds `rows` rows of `width` (a power of two of them) into row 0 by halving, in place:
/// rows `0..rows / 2` += the next `rows / 2`, and so on down to one.
pub(crate) fn halve_rows(rows: usize, acc: &mut [f32], width: usize) {
    let mut m = rows / 2;
    while m >= 1 {
        let (lo, hi) = acc.split_at_mut(m * width);
        for (d, x) in lo.iter_mut().zip(&hi[..m * width]) {
            *d += x;
        }
        m /= 2;
    }
}

/// `acc[i] = fma(p, v[i], acc[i])` for a row of f16 values (one rounding per element).
pub(crate) fn fma_f16_row(acc: &mut [f32], p: f32, v: &[u16]) {
    debug_assert_eq!(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if x86::fma_f16_row(acc, p, v) {
        return;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if arm::fma_f16_row(acc, p, v) {
        return;
    }
    fma_f16_row_portable(acc, p, v);
}

/// [`fma_f16_row`] without vector kernels.
fn fma_f16_row_portable(acc: &mut [f32], p: f32, v: &[u16]) {
    for (a, &vb) in acc.iter_mut().zip(v) {
        *a = p.mul_add(f16::from_bits(vb).to_f32(), *a);
    }
}

/// `e^x` as llama.cpp's vectorised `exp` computes it: `x·log2 e` rounded to an integer `n`
/// (with the 1.5·2^23 trick), the reduced argument `b = x − n·ln 2` in two parts, a degree-5
/// polynomial in `b`, scaled by `2^n`. Within about 1.5 ulp of the true value, and equal to
/// llama.cpp's bit for bit: the attention softmax and SiLU use it so that our activations
/// round exactly as its do.
pub(crate) fn exp(x: f32) -> f32 {
    let c = f32::from_bits;
    let shift = c(EXP_SHIFT);
    let z = x.mul_add(c(EXP_LOG2E), shift);
    let n = z - shift;
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let b = (-n).mul_add(c(EXP_LN2_LO), (-n).mul_add(c(EXP_LN2_HI), x));
    let u = b * b;
    let p = c(EXP_C5)
        .mul_add(b, c(EXP_C4))
        .mul_add(u, c(EXP_C3).mul_add(b, c(EXP_C2)))
        .mul_add(u, c(EXP_C1).mul_add(b, 1.0));
    (f64::from(p) * 2f64.powi(n as i32)) as f32
}

// The constants of `exp`, as f32 bit patterns.
const EXP_SHIFT: u32 = 0x4b40_0000;
const EXP_LOG2E: u32 = 0x3fb8_aa3b;
const EXP_LN2_HI: u32 = 0x3f31_7200;
const EXP_LN2_LO: u32 = 0x35bf_be8e;
const EXP_C5: u32 = 0x3c07_2010;
const EXP_C4: u32 = 0x3d2b_9f17;
const EXP_C3: u32 = 0x3e2a_af33;
const EXP_C2: u32 = 0x3eff_fedb;
const EXP_C1: u32 = 0x3f7f_fff6;

/// `x[i] = exp(x[i])` with [`exp`].
pub(crate) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::exp_in_place(x) {
        return;
    }
    for v in x {
        *v = exp(*v);
    }
}

/// `gate[i] = silu(gate[i]) · up[i]` (SwiGLU), with `silu(x) = x / (1 + exp(0 − x))`.
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) {
    debug_assert_eq!(gate.len(), up.len());
    #[cfg(target_arch = "x86_64")]
    if x86::swiglu(gate, up) {
        return;
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(0.0 - *g)) * u;
    }
}

/// Rounds every value to the nearest f16 (ties to even), kept as f32.
pub(crate) fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if x86::round_to_f16(x) {
        return;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if arm::round_to_f16(x) {
        return;
    }
    round_to_f16_portable(x);
}

/// [`round_to_f16`] without vector kernels.
fn round_to_f16_portable(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// Writes `x` as f16 bits (round to nearest even).
pub(crate) fn f32_to_f16(x: &[f32], out: &mut [u16]) {
    debug_assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if x86::f32_to_f16(x, out) {
        return;
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if arm::f32_to_f16(x, out) {
        return;
    }
    f32_to_f16_portable(x, out);
}

/// [`f32_to_f16`] without vector kernels.
fn f32_to_f16_portable(x: &[f32], out: &mut [u16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v).to_bits();
    }
}

#[cfg(test)]
mod tests;
