//! x86-64 kernels: AVX2 + FMA + F16C, and AVX-512 (VNNI for the integer dots) where present.
//!
//! Laid out as `kernels::arm` is: the dot products of the 32-value block families in
//! [`legacy`], of the K-quants in [`kquants`], attention over an f16 (or Q8_0) cache in
//! [`attention`], the Q8_0 cache's integer decode step in [`kvq8`], the tests comparing the
//! instruction sets in `tests`; here the CPU detection, the choice of kernel, and the
//! element-wise kernels.
//!
//! The functions `kernels` calls are safe: each checks the CPU (and where it matters the
//! shapes) and says `false` or `None` where it has no kernel for the call. Every function
//! marked `#[target_feature]` is only reached after [`has_avx2`] (or [`has_avx512`],
//! [`has_vnni`]) said yes. Pointer arithmetic stays inside slices whose lengths the safe
//! wrappers check first.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{
    DotFn, EXP_C1, EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_SHIFT,
    RowsFn, TILE_ROWS, TILE_TOKENS, TileFn,
};
use crate::quant::{GgmlType, Q8_0_BYTES, Q8_1_BYTES, Q8_K_BYTES, QK, QK_K};

mod attention;
mod gemm;
mod iquants;
mod kquants;
mod kvq8;
mod legacy;
mod packed;
#[cfg(test)]
mod tests;

pub(super) use attention::{
    attn_scores, attn_value_slots, dot_f16_lanes, dot_f32_lanes, fold_slots,
};
pub(super) use gemm::gemm_panel;
pub(super) use kvq8::{attn_q8_scores, attn_q8_values};

/// Whether this CPU runs the AVX2 kernels (AVX2, FMA and F16C together).
pub(super) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether this CPU has AVX-512 Foundation (with AVX2, FMA and F16C): the attention kernels
/// use its 16-lane registers and in-register shuffles.
pub(super) fn has_avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && std::env::var_os("ANY_NO_AVX512").is_none()
            && is_x86_feature_detected!("avx512f")
    })
}

/// Whether this CPU also has AVX-512 VNNI (with VL and BW), whose `vpdpbusd` sums byte
/// products in one instruction.
pub(super) fn has_vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && std::env::var_os("ANY_NO_VNNI").is_none()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// `kernels::quantize_q8` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn quantize_q8(x: &[f32], out: &mut [u8], with_sum: bool) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { quantize_q8_avx2(x, out, with_sum) };
    true
}

/// Q8_K activations (the K-quants' and IQ4_XS's) with AVX2, byte for byte the scalar
/// reference's; `false` (nothing done) where the CPU has no AVX2.
pub(super) fn quantize_q8_k(x: &[f32], out: &mut [u8]) -> bool {
    if !has_avx2() {
        return false;
    }
    assert!(
        x.len().is_multiple_of(QK_K) && out.len() == x.len() / QK_K * Q8_K_BYTES,
        "activation sizes do not match"
    );
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8_K_BYTES)) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above); the chunks are one block.
        unsafe { kquants::quantize_q8_k_block(xb, ob) };
    }
    true
}

/// `kernels::fma_f32_row` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn fma_f32_row(acc: &mut [f32], p: f32, v: &[f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { fma_f32_row_avx2(acc, p, v) };
    true
}

/// `kernels::fma_f16_row` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn fma_f16_row(acc: &mut [f32], p: f32, v: &[u16]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { fma_f16_row_avx2(acc, p, v) };
    true
}

/// `kernels::exp_in_place` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn exp_in_place(x: &mut [f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { exp_in_place_avx2(x) };
    true
}

/// `kernels::swiglu` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn swiglu(gate: &mut [f32], up: &[f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { swiglu_avx2(gate, up) };
    true
}

/// `kernels::round_to_f16` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn round_to_f16(x: &mut [f32]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { round_to_f16_avx2(x) };
    true
}

/// `kernels::f32_to_f16` with AVX2; `false` (nothing done) where the CPU has none.
pub(super) fn f32_to_f16(x: &[f32], out: &mut [u16]) -> bool {
    if !has_avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
    unsafe { f32_to_f16_avx2(x, out) };
    true
}

/// The fastest x86 dot product for `ty`, where there is one.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    if !has_avx2() {
        return None;
    }
    legacy::dot_fn(ty, has_vnni())
        .or_else(|| kquants::dot_fn(ty))
        .or_else(|| iquants::dot_fn(ty))
}

/// The fastest x86 tiled dot product for `ty`, where there is one.
pub(super) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    if !has_avx2() {
        return None;
    }
    legacy::tile_fn(ty, has_vnni()).or_else(|| kquants::tile_fn(ty))
}

/// The fastest x86 several-rows-by-one-token kernel for `ty`, where there is one.
pub(super) fn rows_fn(ty: GgmlType) -> Option<RowsFn> {
    if !has_avx2() {
        return None;
    }
    legacy::rows_fn(ty, has_vnni())
}

/// The fastest x86 kernel for `ty` packed in groups of interleaved rows, where there is one.
pub(super) fn packed_fn(ty: GgmlType) -> Option<super::packed::PackedFn> {
    if !has_avx2() {
        return None;
    }
    packed::packed_fn(ty)
}

/// The outputs of a [`TileFn`].
type Tile = [f32; TILE_ROWS * TILE_TOKENS];

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// The little-endian f32 at `p` (a Q8_K block's scale, say).
#[inline(always)]
pub(super) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller points `p` at four readable bytes.
    unsafe { f32::from_le_bytes([p.read(), p.add(1).read(), p.add(2).read(), p.add(3).read()]) }
}

/// An f16 at `p` as f32 (exactly, as `half` converts).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller points `p` at two readable bytes.
    let bits = unsafe { u16::from_le_bytes([p.read(), p.add(1).read()]) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Cached key or value rows ahead of the current position that attention asks the cache for.
const PREFETCH_ROWS: usize = 48;

/// `acc[i] = fma(p, v[i], acc[i])` for f32 values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fma_f32_row_avx2(acc: &mut [f32], p: f32, v: &[f32]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            let x = _mm256_loadu_ps(v.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, x, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] = p.mul_add(v[j], acc[j]);
    }
}

/// `acc[i] = fma(p, v[i], acc[i])`, values as f16 bits.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fma_f16_row_avx2(acc: &mut [f32], p: f32, v: &[u16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, vv, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] = p.mul_add(half::f16::from_bits(v[j]).to_f32(), acc[j]);
    }
}

/// Rounds every value to f16 and back (nearest, ties to even).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_to_f16_avx2(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: the chunk holds exactly 8 floats.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for v in chunks.into_remainder() {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// f32 to f16 bits, rounding to nearest even.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_to_f16_avx2(x: &[f32], out: &mut [u16]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the load and the store inside the slices.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), h);
        }
        i += 8;
    }
    for j in i..n {
        out[j] = half::f16::from_f32(x[j]).to_bits();
    }
}

/// Eight lanes of `kernels::exp`, or `None` when a lane needs a scale outside f32's normal
/// exponents (the caller then takes the scalar path, which handles those exactly).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> Option<__m256> {
    let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
    let shift = c(EXP_SHIFT);
    let z = _mm256_fmadd_ps(x, c(EXP_LOG2E), shift);
    let n = _mm256_sub_ps(z, shift);
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    // NaN compares false here and goes to the scalar path too.
    let in_range = _mm256_cmp_ps::<_CMP_LE_OQ>(abs_n, _mm256_set1_ps(126.0));
    if _mm256_movemask_ps(in_range) != 0xFF {
        return None;
    }
    let neg_n = _mm256_sub_ps(_mm256_setzero_ps(), n);
    let b = _mm256_fmadd_ps(
        neg_n,
        c(EXP_LN2_LO),
        _mm256_fmadd_ps(neg_n, c(EXP_LN2_HI), x),
    );
    let u = _mm256_mul_ps(b, b);
    let p = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(EXP_C5), b, c(EXP_C4)),
            u,
            _mm256_fmadd_ps(c(EXP_C3), b, c(EXP_C2)),
        ),
        u,
        _mm256_fmadd_ps(c(EXP_C1), b, _mm256_set1_ps(1.0)),
    );
    // 2^n exactly, from the exponent bits; one rounding of p·2^n, as the scalar path has.
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    Some(_mm256_mul_ps(p, pow2))
}

/// Q8_0 (`with_sum == false`, 34-byte blocks) or Q8_1 (36-byte blocks) quantization of whole
/// blocks of 32 values, as `kernels::quantize_q8` computes it: scale `127 / max|x|`, products
/// rounded to nearest even (the rounding `vroundps` does), the block's integer sum for Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_avx2(x: &[f32], out: &mut [u8], with_sum: bool) {
    let (block, head) = if with_sum {
        (Q8_1_BYTES, 4)
    } else {
        (Q8_0_BYTES, 2)
    };
    let sign = _mm256_set1_ps(-0.0);
    // packs interleaves 128-bit lanes; this puts the 4-byte groups back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(block)) {
        // SAFETY: `xb` holds 32 floats and `ob` a whole block, of which the 32 quants start
        // at `head`.
        unsafe {
            let p = xb.as_ptr();
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            let m = _mm256_max_ps(
                _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
            );
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let q = v.map(|v| {
                _mm256_cvtps_epi32(_mm256_round_ps::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(_mm256_mul_ps(v, id)))
            });
            let bytes = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(
                    _mm256_packs_epi32(q[0], q[1]),
                    _mm256_packs_epi32(q[2], q[3]),
                ),
                order,
            );
            _mm256_storeu_si256(ob.as_mut_ptr().add(head).cast(), bytes);
            ob[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
            if with_sum {
                let sum = hsum_i32(_mm256_add_epi32(
                    _mm256_add_epi32(q[0], q[1]),
                    _mm256_add_epi32(q[2], q[3]),
                ));
                let s = half::f16::from_f32(d * sum as f32).to_bits();
                ob[2..4].copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}

/// `x[i] = exp(x[i])`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn exp_in_place_avx2(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for ch in &mut chunks {
        // SAFETY: the chunk holds exactly 8 floats.
        let v = unsafe { _mm256_loadu_ps(ch.as_ptr()) };
        match exp8(v) {
            // SAFETY: as above.
            Some(e) => unsafe { _mm256_storeu_ps(ch.as_mut_ptr(), e) },
            None => ch.iter_mut().for_each(|v| *v = super::exp(*v)),
        }
    }
    for v in chunks.into_remainder() {
        *v = super::exp(*v);
    }
}

/// `gate[i] = gate[i] / (1 + exp(0 − gate[i])) · up[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn swiglu_avx2(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let neg = _mm256_sub_ps(_mm256_setzero_ps(), g);
            match exp8(neg) {
                Some(e) => {
                    let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                    let out = _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i)));
                    _mm256_storeu_ps(gate.as_mut_ptr().add(i), out);
                }
                None => {
                    for j in i..i + 8 {
                        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
                    }
                }
            }
        }
        i += 8;
    }
    for j in i..n {
        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
    }
}
