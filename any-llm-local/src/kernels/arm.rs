//! aarch64 kernels: NEON, and the `dotprod` extension's `sdot` for the integer dot products
//! where the CPU has it (little-endian only: the kernels read block fields as such).
//!
//! The two integer paths give the same sums lane for lane — without `sdot`, the widened byte
//! products are paired into exactly the lanes `sdot` fills — and both run the same float
//! steps, so a CPU with `dotprod` computes the same bits as one without.
//!
//! Stable Rust does not expose `vdotq_s32` or the f16 vector types yet, so `sdot` and the
//! f16 conversions (`fcvtl`, `fcvtn`, both in base ARMv8.0) are one instruction of inline
//! assembly each. Pointer arithmetic stays inside slices whose lengths the safe wrappers check
//! first.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{DotFn, KvRows, RowsFn, TileFn, q8_scores_fit, q8_values_fit};
use crate::quant::{GgmlType, Q8_0_BYTES, Q8_1_BYTES, QK};

mod attention;
mod iquants;
mod kquants;
mod kvq8;
mod legacy;
#[cfg(all(test, target_feature = "neon"))]
mod tests;

/// Whether this build may use NEON. Every aarch64 target with an operating system enables
/// it; only soft-float builds do not, and they take the portable paths. Every function here
/// marked `#[target_feature(enable = "neon")]` is only reached after this said yes.
pub(super) const fn has_neon() -> bool {
    cfg!(target_feature = "neon")
}

/// Whether this CPU has the `dotprod` extension (`sdot`).
pub(super) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// The fastest aarch64 dot product for `ty`, where there is one.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    if !has_neon() {
        None
    } else if has_dotprod() {
        legacy::dot_fn::<true>(ty)
            .or_else(|| kquants::dot_fn::<true>(ty))
            .or_else(|| iquants::dot_fn::<true>(ty))
    } else {
        legacy::dot_fn::<false>(ty)
            .or_else(|| kquants::dot_fn::<false>(ty))
            .or_else(|| iquants::dot_fn::<false>(ty))
    }
}

/// The fastest aarch64 tiled dot product for `ty`, where there is one.
pub(super) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    if !has_neon() {
        None
    } else if has_dotprod() {
        legacy::tile_fn::<true>(ty)
    } else {
        legacy::tile_fn::<false>(ty)
    }
}

/// The fastest aarch64 several-rows-by-one-token kernel for `ty`, where there is one.
pub(super) fn rows_fn(ty: GgmlType) -> Option<RowsFn> {
    if !has_neon() {
        None
    } else if has_dotprod() {
        legacy::rows_fn::<true>(ty)
    } else {
        legacy::rows_fn::<false>(ty)
    }
}

/// `kernels::quantize_q8` with NEON; `false` (nothing done) where the build has none.
pub(super) fn quantize_q8(x: &[f32], out: &mut [u8], with_sum: bool) -> bool {
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { quantize_q8_neon(x, out, with_sum) };
    true
}

/// `kernels::fma_f16_row` with NEON; `false` (nothing done) where the build has none.
pub(super) fn fma_f16_row(acc: &mut [f32], p: f32, v: &[u16]) -> bool {
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { fma_f16_row_neon(acc, p, v) };
    true
}

/// `kernels::round_to_f16` with NEON; `false` (nothing done) where the build has none.
pub(super) fn round_to_f16(x: &mut [f32]) -> bool {
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { round_to_f16_neon(x) };
    true
}

/// `kernels::f32_to_f16` with NEON; `false` (nothing done) where the build has none.
pub(super) fn f32_to_f16(x: &[f32], out: &mut [u16]) -> bool {
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { f32_to_f16_neon(x, out) };
    true
}

/// `kernels::dot_f16_lanes` with NEON; `None` where the build has none (or as
/// [`attention::dot_f16_lanes`] says).
pub(super) fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> Option<f32> {
    if !has_neon() {
        return None;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { attention::dot_f16_lanes(lanes64, k, q) }
}

/// `kernels::attn_scores` with NEON; `false` where the build has none, for a Q8_0 cache (the
/// NEON kernels read f16 rows; a Q8_0 cache takes the portable path here), or as
/// [`attention::attn_scores`] says.
pub(super) fn attn_scores(
    lanes64: bool,
    keys: KvRows<'_>,
    q: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    let KvRows::F16(keys) = keys else {
        return false;
    };
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { attention::attn_scores(lanes64, keys, q, hd, scale, out) }
}

/// `kernels::attn_value_slots` with NEON; `false` where the build has none, for a Q8_0 cache,
/// or as [`attention::attn_value_slots`] says.
pub(super) fn attn_value_slots(
    lanes64: bool,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) -> bool {
    let KvRows::F16(values) = values else {
        return false;
    };
    if !has_neon() {
        return false;
    }
    // SAFETY: the build has NEON (checked just above).
    unsafe { attention::attn_value_slots(lanes64, p, values, hd, heads, slots, acc) }
}

/// `kernels::attn_q8_scores` with NEON (and `sdot` where the CPU has `dotprod`); `false`
/// where the build has no NEON or the shapes do not fit.
pub(super) fn attn_q8_scores(
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    if !(has_neon() && q8_scores_fit(qs, qd, keys, hd, 32, out)) {
        return false;
    }
    // SAFETY: the build has NEON, `sdot` is used only where the CPU has `dotprod`, and the
    // shapes fit (all checked just here).
    unsafe { kvq8::attn_q8_scores(has_dotprod(), qs, qd, keys, hd, scale, out) };
    true
}

/// `kernels::attn_q8_values` with NEON; `false` where the build has none or the shapes do
/// not fit.
pub(super) fn attn_q8_values(
    p: &[f32],
    values: &[u8],
    hd: usize,
    heads: usize,
    acc: &mut [f32],
) -> bool {
    if !(has_neon() && q8_values_fit(p, values, hd, heads, acc)) {
        return false;
    }
    // SAFETY: the build has NEON and the shapes fit (checked just above).
    unsafe { kvq8::attn_q8_values(p, values, hd, heads, acc) };
    true
}

/// Whole blocks of 32 values in `n`, after checking the weight rows hold `wb` bytes per block
/// and the activation rows `ab`.
fn check(w: &[u8], a: &[u8], n: usize, wb: usize, ab: usize) -> usize {
    let nb = n / QK;
    assert!(
        n.is_multiple_of(QK) && w.len() == nb * wb && a.len() == nb * ab,
        "row sizes do not match n = {n}"
    );
    nb
}

/// Four f16 values (as bits) as f32; the conversion is exact.
#[inline]
fn f16x4_to_f32(bits: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` only reads and writes these registers (base ARMv8.0 SIMD).
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {bits:v}.4h",
            bits = in(vreg) bits,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// Four f32 values as f16 bits, rounded to nearest even (the default rounding mode).
#[inline]
fn f32x4_to_f16(v: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: `fcvtn` only reads and writes these registers (base ARMv8.0 SIMD).
    unsafe {
        asm!(
            "fcvtn {out:v}.4h, {v:v}.4s",
            v = in(vreg) v,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// The four lanes of `v`.
#[inline]
#[target_feature(enable = "neon")]
fn lanes(v: float32x4_t) -> [f32; 4] {
    let mut out = [0.0; 4];
    // SAFETY: `out` holds four floats.
    unsafe { vst1q_f32(out.as_mut_ptr(), v) };
    out
}

/// 32 signed bytes at `p`.
///
/// # Safety
/// `p` points at 32 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load32(p: *const u8) -> [int8x16_t; 2] {
    // SAFETY: the caller's promise.
    unsafe { [vld1q_s8(p.cast()), vld1q_s8(p.add(16).cast())] }
}

/// Sums of products of 32 signed bytes in two halves of 16: lane `k` sums bytes `4k..4k + 4`
/// of both halves (what two `sdot`s do), from widened products, exact for every byte value.
#[inline]
#[target_feature(enable = "neon")]
fn isum32_neon(x: [int8x16_t; 2], y: [int8x16_t; 2]) -> int32x4_t {
    let lo0 = vmull_s8(vget_low_s8(x[0]), vget_low_s8(y[0]));
    let hi0 = vmull_high_s8(x[0], y[0]);
    let lo1 = vmull_s8(vget_low_s8(x[1]), vget_low_s8(y[1]));
    let hi1 = vmull_high_s8(x[1], y[1]);
    // Lanes 0 and 1 take bytes 0..8 of both halves, in pairs; lanes 2 and 3 bytes 8..16.
    let lo = vpadalq_s16(vpaddlq_s16(lo0), lo1);
    let hi = vpadalq_s16(vpaddlq_s16(hi0), hi1);
    vpaddq_s32(lo, hi)
}

/// [`isum32_neon`] over one half: 16 bytes.
#[inline]
#[target_feature(enable = "neon")]
fn isum16_neon(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let hi = vmull_high_s8(x, y);
    vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}

/// `acc` plus the `sdot` of `x` and `y`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` only reads and writes these registers; the CPU has `dotprod` (the
    // function's target feature).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {x:v}.16b, {y:v}.16b",
            acc = inout(vreg) acc,
            x = in(vreg) x,
            y = in(vreg) y,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// [`isum32_neon`] in two instructions.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn isum32_dotprod(x: [int8x16_t; 2], y: [int8x16_t; 2]) -> int32x4_t {
    sdot(sdot(vdupq_n_s32(0), x[0], y[0]), x[1], y[1])
}

/// [`isum16_neon`] in one instruction.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn isum16_dotprod(x: int8x16_t, y: int8x16_t) -> int32x4_t {
    sdot(vdupq_n_s32(0), x, y)
}

/// Q8_0 (`with_sum == false`, 34-byte blocks) or Q8_1 (36-byte blocks) quantization of whole
/// blocks of 32 values, byte for byte as `kernels::quantize_q8_scalar`: scale `127 / max|x|`,
/// products rounded to nearest even (`fcvtns`), narrowed as `as i8` does, the block's integer
/// sum for Q8_1.
#[target_feature(enable = "neon")]
fn quantize_q8_neon(x: &[f32], out: &mut [u8], with_sum: bool) {
    let (block, head) = if with_sum {
        (Q8_1_BYTES, 4)
    } else {
        (Q8_0_BYTES, 2)
    };
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(block)) {
        // SAFETY: `xb` holds 32 floats.
        let v: [float32x4_t; 8] =
            std::array::from_fn(|k| unsafe { vld1q_f32(xb.as_ptr().add(4 * k)) });
        // `maxnm` skips NaN as `f32::max` does.
        let m = v
            .iter()
            .fold(vdupq_n_f32(0.0), |m, &v| vmaxnmq_f32(m, vabsq_f32(v)));
        let amax = vmaxnmvq_f32(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let q = v.map(|v| vcvtnq_s32_f32(vmulq_n_f32(v, id)));
        // Truncating narrows keep the low byte, as `as i8` does.
        let half = |k: usize| vcombine_s16(vmovn_s32(q[2 * k]), vmovn_s32(q[2 * k + 1]));
        let bytes = [
            vcombine_s8(vmovn_s16(half(0)), vmovn_s16(half(1))),
            vcombine_s8(vmovn_s16(half(2)), vmovn_s16(half(3))),
        ];
        // SAFETY: `ob` is a whole block: 32 quant bytes from `head`.
        unsafe {
            let p = ob.as_mut_ptr().add(head).cast();
            vst1q_s8(p, bytes[0]);
            vst1q_s8(p.add(16), bytes[1]);
        }
        ob[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        if with_sum {
            let sum = vaddvq_s32(
                q.into_iter()
                    .reduce(|x, y| vaddq_s32(x, y))
                    .expect("eight vectors"),
            );
            let s = half::f16::from_f32(d * sum as f32).to_bits();
            ob[2..4].copy_from_slice(&s.to_le_bytes());
        }
    }
}

/// `acc[i] = fma(p, v[i], acc[i])`, values as f16 bits.
#[target_feature(enable = "neon")]
fn fma_f16_row_neon(acc: &mut [f32], p: f32, v: &[u16]) {
    let n = acc.len().min(v.len()) / 4 * 4;
    let pv = vdupq_n_f32(p);
    for (a, vb) in acc[..n].chunks_exact_mut(4).zip(v.chunks_exact(4)) {
        // SAFETY: both chunks hold four values.
        unsafe {
            let x = f16x4_to_f32(vld1_u16(vb.as_ptr()));
            vst1q_f32(a.as_mut_ptr(), vfmaq_f32(vld1q_f32(a.as_ptr()), pv, x));
        }
    }
    super::fma_f16_row_portable(&mut acc[n..], p, &v[n..]);
}

/// Rounds every value to f16 and back (nearest, ties to even).
#[target_feature(enable = "neon")]
fn round_to_f16_neon(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: the chunk holds four floats.
        unsafe {
            let h = f32x4_to_f16(vld1q_f32(c.as_ptr()));
            vst1q_f32(c.as_mut_ptr(), f16x4_to_f32(h));
        }
    }
    super::round_to_f16_portable(chunks.into_remainder());
}

/// f32 to f16 bits, rounding to nearest even.
#[target_feature(enable = "neon")]
fn f32_to_f16_neon(x: &[f32], out: &mut [u16]) {
    let n = x.len().min(out.len()) / 4 * 4;
    for (c, o) in x[..n].chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        // SAFETY: both chunks hold four values.
        unsafe { vst1_u16(o.as_mut_ptr(), f32x4_to_f16(vld1q_f32(c.as_ptr()))) };
    }
    super::f32_to_f16_portable(&x[n..], &mut out[n..]);
}
