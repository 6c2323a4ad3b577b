//! The K-quants (Q4_K, Q5_K, Q6_K) by Q8_K activations with AVX2: each super-block's
//! integer sums in registers, its scales applied in the scalar reference's expression and
//! order, so the floats are the reference's.

use std::arch::x86_64::*;

use super::hsum_i32;
use crate::kernels::DotFn;
use crate::quant::{GgmlType, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, QK_K};

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

/// A Q4_K or Q5_K super-block's eight 6-bit sub-block scales and eight minimums, from its 12
/// packed bytes (what `quant::scale_min_k4` gives one at a time), in four word operations per
/// half: bytes 0–3 hold the low six bits of scales 0–3, bytes 4–7 those of minimums 0–3, and
/// bytes 8–11 the low four bits of scales and minimums 4–7, whose top two bits are the top
/// two bits of bytes 0–7.
#[inline(always)]
fn scales_mins_k4(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (a, b, c) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let scales_hi = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    let mins_hi = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| {
        let (lo, hi) = (lo.to_le_bytes(), hi.to_le_bytes());
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    };
    (join(a & LOW6, scales_hi), join(b & LOW6, mins_hi))
}

/// `Σ_j mins[j] · (bsums[2j] + bsums[2j+1])`: the minimums' term of one super-block, exact,
/// from the activations' 16 partial sums at `bsums`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mins_term(mins: &[u8; 8], bsums: *const u8) -> i32 {
    // SAFETY: `mins` is 8 bytes; the caller points `bsums` at the 32 bytes of 16 i16 sums.
    let (m, b) = unsafe {
        (
            _mm_loadl_epi64(mins.as_ptr().cast()),
            _mm256_loadu_si256(bsums.cast()),
        )
    };
    // Each minimum twice, as 16 i16 lanes beside the 16 sums.
    let m = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    hsum_i32(_mm256_madd_epi16(m, b))
}

/// An f16 at `p` as f32 (exactly, as `half` converts).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller points `p` at two readable bytes.
    let bits = unsafe { u16::from_le_bytes([p.read(), p.add(1).read()]) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Q4_K, or with `FIVE` Q5_K, by Q8_K over `nb` super-blocks: per super-block the exact
/// integer sums and minimums' term, then the scalar reference's float expression, in its
/// order, so the result is the reference's bit for bit.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_k4_avx2<const FIVE: bool>(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let block = if FIVE { Q5_K_BYTES } else { Q4_K_BYTES };
    let mut total = -0.0f32;
    for i in 0..nb {
        // SAFETY: super-block `i < nb` of each row is in bounds (checked by the caller): the
        // weights' d, dmin and 12 scale bytes at 0..16, the activations' f32 scale at 0 and
        // partial sums at 260..292.
        unsafe {
            let (wb, ab) = (w.add(i * block), a.add(i * Q8_K_BYTES));
            let (sc8, mins) = scales_mins_k4(std::slice::from_raw_parts(wb.add(4), 12));
            let sc = sc8.map(i16::from);
            let mins = mins_term(&mins, ab.add(260));
            let sum = if FIVE {
                isum_q5_k_avx2(wb, ab, &sc)
            } else {
                isum_q4_k_avx2(wb, ab, &sc)
            };
            let ad = f32::from_le_bytes([
                ab.read(),
                ab.add(1).read(),
                ab.add(2).read(),
                ab.add(3).read(),
            ]);
            let (d, dmin) = (f16_at(wb), f16_at(wb.add(2)));
            // The scalar reference's expression and summation order, so results are identical.
            total += ad * d * sum as f32 - ad * dmin * mins as f32;
        }
    }
    total
}

fn dot_q4_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check_k(w, a, n, Q4_K_BYTES);
    // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; `check_k` proved
    // both rows hold `nb` whole super-blocks.
    unsafe { dot_k4_avx2::<false>(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q5_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check_k(w, a, n, Q5_K_BYTES);
    // SAFETY: as in `dot_q4_k`.
    unsafe { dot_k4_avx2::<true>(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q6_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check_k(w, a, n, Q6_K_BYTES);
    // SAFETY: as in `dot_q4_k`; blocks of 210 and 292 bytes.
    unsafe { dot_q6_k_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

/// Q6_K by Q8_K over `nb` super-blocks, the scalar reference's float expression and order.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut total = -0.0f32;
    for i in 0..nb {
        // SAFETY: super-block `i < nb` of each row is in bounds (checked by the caller); the
        // weights' f16 scale at 208, the activations' f32 scale at 0.
        unsafe {
            let (wb, ab) = (w.add(i * Q6_K_BYTES), a.add(i * Q8_K_BYTES));
            let sum = isum_q6_k_avx2(wb, ab);
            let ad = f32::from_le_bytes([
                ab.read(),
                ab.add(1).read(),
                ab.add(2).read(),
                ab.add(3).read(),
            ]);
            total += ad * f16_at(wb.add(208)) * sum as f32;
        }
    }
    total
}

/// `Σ_j sc[j] · Σ q·a` over the 8 sub-blocks of one Q4_K block (exact integers).
#[inline]
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
#[inline]
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
#[inline]
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

#[cfg(test)]
mod tests {
    #[test]
    fn packed_scales_and_minimums_decode_as_the_reference_does() {
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            let q: [u8; 12] = std::array::from_fn(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            });
            let (scales, mins) = super::scales_mins_k4(&q);
            for j in 0..8 {
                assert_eq!(
                    (scales[j], mins[j]),
                    crate::quant::scale_min_k4(&q, j),
                    "{q:?} {j}"
                );
            }
        }
    }
}
