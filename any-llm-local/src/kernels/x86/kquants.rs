//! The K-quants (Q4_K, Q5_K, Q6_K) by Q8_K activations with AVX2: each super-block's
//! integer sums in registers, its scales applied in the scalar reference's expression and
//! order, so the floats are the reference's.

use std::arch::x86_64::*;

use super::hsum_i32;
use crate::kernels::DotFn;
use crate::quant::{self, GgmlType, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, QK_K};

/// The dot product for `ty`; the CPU has AVX2.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    match ty {
        GgmlType::Q4_K => Some(dot_q4_k),
        GgmlType::Q5_K => Some(dot_q5_k),
        GgmlType::Q6_K => Some(dot_q6_k),
        _ => None,
    }
}

/// Super-blocks of `n` values, after checking both rows hold exactly that many.
fn check_k(w: &[u8], a: &[u8], n: usize, wb: usize) -> usize {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K) && w.len() == nb * wb && a.len() == nb * Q8_K_BYTES,
        "row sizes do not match n = {n}"
    );
    nb
}

/// The integer sums of one Q4_K or Q5_K super-block, given its eight sub-block scales.
type IsumK4 = unsafe fn(*const u8, *const u8, &[i16; 8]) -> i32;

/// Q4_K or Q5_K (`block` bytes per super-block) by Q8_K: the sub-block scales and the
/// minimums' term per super-block, `isum` the exact integer sums.
fn dot_k4(w: &[u8], a: &[u8], n: usize, block: usize, isum: IsumK4) -> f32 {
    let nb = check_k(w, a, n, block);
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(block).zip(a.chunks_exact(Q8_K_BYTES)) {
        let scales: &[u8; 12] = wb[4..16].try_into().expect("12 scale bytes");
        let (mut sc, mut mins) = ([0i16; 8], 0i32);
        for (j, s) in sc.iter_mut().enumerate() {
            let (scale, min) = quant::scale_min_k4(scales, j);
            *s = i16::from(scale);
            let bsum = |k: usize| i32::from(i16::from_le_bytes([ab[260 + 2 * k], ab[261 + 2 * k]]));
            mins += i32::from(min) * (bsum(2 * j) + bsum(2 * j + 1));
        }
        // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; the block
        // slices have the bytes of one super-block of each type, as the kernels read.
        let sum = unsafe { isum(wb.as_ptr(), ab.as_ptr(), &sc) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let dmin = half::f16::from_le_bytes([wb[2], wb[3]]).to_f32();
        // The scalar reference's expression and summation order, so results are identical.
        total += ad * d * sum as f32 - ad * dmin * mins as f32;
    }
    debug_assert_eq!(nb, w.len() / block);
    total
}

fn dot_q4_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    dot_k4(w, a, n, Q4_K_BYTES, isum_q4_k_avx2)
}

fn dot_q5_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    dot_k4(w, a, n, Q5_K_BYTES, isum_q5_k_avx2)
}

fn dot_q6_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check_k(w, a, n, Q6_K_BYTES);
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(Q6_K_BYTES).zip(a.chunks_exact(Q8_K_BYTES)) {
        // SAFETY: as in `dot_q4_k`; blocks of 210 and 292 bytes.
        let sum = unsafe { isum_q6_k_avx2(wb.as_ptr(), ab.as_ptr()) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[208], wb[209]]).to_f32();
        total += ad * d * sum as f32;
    }
    debug_assert_eq!(nb, w.len() / Q6_K_BYTES);
    total
}

/// `Σ_j sc[j] · Σ q·a` over the 8 sub-blocks of one Q4_K block (exact integers).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum_q4_k_avx2(w: *const u8, a: *const u8, sc: &[i16; 8]) -> i32 {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_si256();
    for j in 0..4 {
        // SAFETY: quants at 16 + 32j (32 bytes, within 144); activations at 4 + 64j (64
        // bytes, within 292).
        unsafe {
            let q = _mm256_loadu_si256(w.add(16 + 32 * j).cast());
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            let a_lo = _mm256_loadu_si256(a.add(4 + 64 * j).cast());
            let a_hi = _mm256_loadu_si256(a.add(36 + 64 * j).cast());
            let p_lo =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_set1_epi16(sc[2 * j]));
            let p_hi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, a_hi),
                _mm256_set1_epi16(sc[2 * j + 1]),
            );
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
        }
    }
    hsum_i32(acc)
}

/// `Σ_j sc[j] · Σ q·a` over the 8 sub-blocks of one Q5_K block (exact integers): the low
/// nibbles as in Q4_K, each sub-block's fifth bit (bit `j` of the 32 `qh` bytes) moved to bit 4.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum_q5_k_avx2(w: *const u8, a: *const u8, sc: &[i16; 8]) -> i32 {
    let mask = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    // SAFETY: `qh` is the 32 bytes at 16 (within 176).
    let qh = unsafe { _mm256_loadu_si256(w.add(16).cast()) };
    // Bit `j` of every byte of `qh`, as 16 (the fifth bit of a quant).
    let fifth = |j: i32| {
        let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), one);
        _mm256_slli_epi16(bit, 4)
    };
    let mut acc = _mm256_setzero_si256();
    for j in 0..4 {
        // SAFETY: quants at 48 + 32j (32 bytes, within 176); activations at 4 + 64j (64
        // bytes, within 292).
        unsafe {
            let q = _mm256_loadu_si256(w.add(48 + 32 * j).cast());
            let lo = _mm256_or_si256(_mm256_and_si256(q, mask), fifth(2 * j as i32));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(q, 4), mask),
                fifth(2 * j as i32 + 1),
            );
            let a_lo = _mm256_loadu_si256(a.add(4 + 64 * j).cast());
            let a_hi = _mm256_loadu_si256(a.add(36 + 64 * j).cast());
            let p_lo =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_set1_epi16(sc[2 * j]));
            let p_hi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, a_hi),
                _mm256_set1_epi16(sc[2 * j + 1]),
            );
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
        }
    }
    hsum_i32(acc)
}

/// `Σ_j scale[j] · Σ q·a` over the 16 sub-blocks of one Q6_K block (exact integers).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum_q6_k_avx2(w: *const u8, a: *const u8) -> i32 {
    let mask4 = _mm256_set1_epi8(0x0F);
    let mask2 = _mm256_set1_epi8(0x03);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = _mm256_setzero_si256();
    for h in 0..2 {
        for j in 0..4 {
            // SAFETY: ql at h·64 + (j % 2)·32 (32 bytes, within 128), qh at 128 + h·32
            // (within 192), scales at 192 + h·8 + 2j (2 bytes, within 208); activations at
            // 4 + h·128 + 32j (32 bytes, within 292).
            unsafe {
                let ql = _mm256_loadu_si256(w.add(h * 64 + (j % 2) * 32).cast());
                let qh = _mm256_loadu_si256(w.add(128 + h * 32).cast());
                let low = _mm256_and_si256(
                    if j / 2 == 1 {
                        _mm256_srli_epi16(ql, 4)
                    } else {
                        ql
                    },
                    mask4,
                );
                let high =
                    _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)), mask2);
                let q = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), m32);
                let y = _mm256_loadu_si256(a.add(4 + h * 128 + 32 * j).cast());
                // Signed by signed: move q's sign onto y, as `dot_i8` does.
                let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
                let s = w.add(192 + h * 8 + 2 * j).cast::<i8>();
                let (s0, s1) = (i16::from(s.read()), i16::from(s.add(1).read()));
                let scales = _mm256_setr_epi16(
                    s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                );
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales));
            }
        }
    }
    hsum_i32(acc)
}
