//! Attention over an f16 (or Q8_0) KV cache on CPUs with AVX2 but not AVX-512, which is most
//! desktop and laptop x86: the scores and the weighted value slots of
//! `kernels::attn_scores` and `kernels::attn_value_slots`. A 16-lane sum is two 8-lane
//! registers, and every addition is the one the AVX-512 kernels and the portable code make, in
//! the same order, so the numbers are the same bit for bit.

use std::arch::x86_64::*;

use super::super::PREFETCH_ROWS;
use crate::quant::{Q8_0_BYTES, QK};

/// Query heads per call of the value kernel: three heads' four accumulators, their
/// probabilities and a row chunk fill the sixteen registers.
pub(super) const MAX_H: usize = 3;

/// Values `8 * c..8 * c + 8` of a KV cache row at `row` as f32: f16 bits widened, or with `Q8`
/// a Q8_0 row's signed bytes times their block's scale (both exact, see `kernels::KvRows`).
///
/// # Safety
/// The row holds at least `8 * (c + 1)` values of its type.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kv8<const Q8: bool>(row: *const u8, c: usize) -> __m256 {
    // SAFETY: the caller keeps chunk `c` inside the row.
    unsafe {
        if Q8 {
            let block = row.add(c / 4 * Q8_0_BYTES);
            let d = _mm256_cvtph_ps(_mm_set1_epi16(block.cast::<i16>().read_unaligned()));
            let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(block.add(2 + 8 * (c % 4)).cast()));
            _mm256_mul_ps(_mm256_cvtepi32_ps(q), d)
        } else {
            _mm256_cvtph_ps(_mm_loadu_si128(row.add(16 * c).cast()))
        }
    }
}

/// Bytes of one KV cache row of `hd` values.
const fn row_bytes<const Q8: bool>(hd: usize) -> usize {
    if Q8 { hd / QK * Q8_0_BYTES } else { 2 * hd }
}

/// The last three halving steps of `attention::reduce16` (lanes `i` and `i + 4`, then
/// `i + 2`, then `i + 1`) for eight vectors at once; lane `p` of the result is the sum of
/// `v[p]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce8_x8(v: &[__m256; 8]) -> __m256 {
    // Lanes 0..4 + 4..8: two vectors per register, one per 128-bit half.
    let t: [__m256; 4] = std::array::from_fn(|j| {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // Lanes 0..2 + 2..4 within each half: four vectors per register.
    let u: [__m256; 2] = std::array::from_fn(|j| {
        let (a, b) = (t[2 * j], t[2 * j + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm256_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    });
    // Lane 0 + lane 1: the low half now holds vectors 0, 2, 4, 6 and the high half 1, 3, 5, 7.
    let f = _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(u[0], u[1]),
        _mm256_shuffle_ps::<0b11_01_11_01>(u[0], u[1]),
    );
    _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Attention scores of `H` query heads (`q`, `16 * CH` values each) sharing one key head, over
/// `len` positions, eight at a time. Per head and position, 16-value chunks go into one set of
/// 16 lanes (batch order) or four by chunk index mod 4, folded (0 + 2) + (1 + 3) (single-token
/// order), as `kernels::dot_f16_lanes` sums them; lanes `i` and `i + 8` are then added, and
/// the other halving steps done for eight positions at once.
///
/// # Safety
/// `k` holds `len` rows of `16 * CH` values of its type; `q` holds `H` heads; `out` holds `H`
/// rows of `out_stride >= len`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scores_heads<
    const H: usize,
    const CH: usize,
    const Q8: bool,
    const L64: bool,
>(
    k: *const u8,
    q: *const f32,
    len: usize,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
) {
    let rb = row_bytes::<Q8>(16 * CH);
    let scale = _mm256_set1_ps(scale);
    let mut halves = [[_mm256_setzero_ps(); 8]; H];
    let mut j0 = 0;
    while j0 < len {
        let live = (len - j0).min(8);
        for p in 0..live {
            let row = k.wrapping_add((j0 + p) * rb);
            let ahead = k.wrapping_add((j0 + p + PREFETCH_ROWS) * rb);
            _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
            // SAFETY: position `j0 + p < len` is inside the keys.
            let kr: [__m256; 16] = std::array::from_fn(|c| {
                if c < 2 * CH {
                    unsafe { kv8::<Q8>(row, c) }
                } else {
                    _mm256_setzero_ps()
                }
            });
            for (h, half) in halves.iter_mut().enumerate() {
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for c in 0..CH {
                    let g = if L64 { c % 4 } else { 0 };
                    // SAFETY: chunk `c` of head `h` is inside the queries.
                    unsafe {
                        let qp = q.add((h * CH + c) * 16);
                        acc[g][0] = _mm256_fmadd_ps(kr[2 * c], _mm256_loadu_ps(qp), acc[g][0]);
                        acc[g][1] =
                            _mm256_fmadd_ps(kr[2 * c + 1], _mm256_loadu_ps(qp.add(8)), acc[g][1]);
                    }
                }
                let [lo, hi] = if L64 {
                    let fold = |i: usize| {
                        _mm256_add_ps(
                            _mm256_add_ps(acc[0][i], acc[2][i]),
                            _mm256_add_ps(acc[1][i], acc[3][i]),
                        )
                    };
                    [fold(0), fold(1)]
                } else {
                    acc[0]
                };
                half[p] = _mm256_add_ps(lo, hi);
            }
        }
        for (h, half) in halves.iter().enumerate() {
            let r = _mm256_mul_ps(reduce8_x8(half), scale);
            // SAFETY: positions `j0..j0 + live` of head `h`'s output row are below `len`.
            unsafe {
                let o = out.add(h * out_stride + j0);
                if live == 8 {
                    _mm256_storeu_ps(o, r);
                } else {
                    let mut tmp = [0.0f32; 8];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), r);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, live);
                }
            }
        }
        j0 += 8;
    }
}

/// Partial sums of value rows for `H` heads sharing them: position `j`'s row, scaled by head
/// `h`'s `p[h * len + j]`, fused-multiply-added into slot `j mod period` in increasing `j`,
/// for the slots `s0..s1` only; slot `s` of head `h` is `acc[(h * (s1 - s0 + 1) + s - s0) *
/// hd..][..hd]`. Slot by slot and 32 values at a time, so that a slot's sums stay in
/// registers while it takes its positions `s, s + period, ...`, as the AVX-512 kernel does.
///
/// # Safety
/// `v` holds `len` rows of `hd` values of its type (`hd` a multiple of 32); `p` holds `H`
/// rows of `len`; `acc` holds `H * (s1 - s0 + 1) * hd` floats; `H <= MAX_H`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn slots_heads<const H: usize, const Q8: bool>(
    period: usize,
    p: *const f32,
    len: usize,
    v: *const u8,
    hd: usize,
    s0: usize,
    s1: usize,
    acc: *mut f32,
) {
    let rb = row_bytes::<Q8>(hd);
    let stride = s1 - s0 + 1;
    for s in s0..s1 {
        for c0 in (0..hd / 8).step_by(4) {
            let mut a = [[_mm256_setzero_ps(); 4]; H];
            let mut j = s;
            while j < len {
                let row = v.wrapping_add(j * rb);
                if c0 == 0 {
                    let ahead = v.wrapping_add((j + 2) * rb);
                    _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
                }
                // SAFETY: position `j < len` is inside the values and the probabilities.
                unsafe {
                    let x: [__m256; 4] = std::array::from_fn(|i| kv8::<Q8>(row, c0 + i));
                    for (h, ah) in a.iter_mut().enumerate() {
                        let pj = _mm256_set1_ps(*p.add(h * len + j));
                        for (ac, &xc) in ah.iter_mut().zip(&x) {
                            *ac = _mm256_fmadd_ps(pj, xc, *ac);
                        }
                    }
                }
                j += period;
            }
            for (h, ah) in a.iter().enumerate() {
                for (i, &ac) in ah.iter().enumerate() {
                    let at = (h * stride + s - s0) * hd + 8 * (c0 + i);
                    // SAFETY: slot `s` of head `h` is inside the scratch.
                    unsafe { _mm256_storeu_ps(acc.add(at), ac) };
                }
            }
        }
    }
}
