//! The prefill tiles of the 32-value block families: [`TILE_ROWS`] weight rows by
//! [`TILE_TOKENS`] tokens per call, each output computed by the steps of the dot product of
//! its type (in [`super`]), so tiled and untiled results are the same bits.

use std::arch::x86_64::*;

use super::super::{Tile, hsum};
use super::{
    broadcast_at, broadcast16_at, check, f16x2_at, isum_i8i8_avx2, isum_u4i8_avx2, nibbles,
};
use crate::kernels::{TILE_ROWS, TILE_TOKENS};
use crate::quant::{Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, Q8_1_BYTES};

pub(super) fn tile_q8_0(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q8_0_BYTES * TILE_ROWS, Q8_0_BYTES * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q8_avx2::<Q8_0_BYTES, 0>(w.as_ptr(), a.as_ptr(), nb, out) }
}

pub(super) fn tile_q4_0(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q4_0_BYTES * TILE_ROWS, Q8_0_BYTES * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0`.
    unsafe { tile_q8_avx2::<Q4_0_BYTES, 4>(w.as_ptr(), a.as_ptr(), nb, out) }
}

pub(super) fn tile_q8_0_vnni(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q8_0_BYTES * TILE_ROWS, Q8_0_BYTES * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q8_vnni::<Q8_0_BYTES, 0>(w.as_ptr(), a.as_ptr(), nb, out) }
}

pub(super) fn tile_q4_0_vnni(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q4_0_BYTES * TILE_ROWS, Q8_0_BYTES * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0_vnni`.
    unsafe { tile_q8_vnni::<Q4_0_BYTES, 4>(w.as_ptr(), a.as_ptr(), nb, out) }
}

pub(super) fn tile_q4_1(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q4_1_BYTES * TILE_ROWS, Q8_1_BYTES * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0`.
    unsafe { tile_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

pub(super) fn tile_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, Q4_1_BYTES * TILE_ROWS, Q8_1_BYTES * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

/// Q4_1 weights by Q8_1 activations, tiled. Per output: the same products and sums,
/// in the same order, as the dot; the scale products of a row's four tokens are
/// formed in one multiplication, and each token's minimum term is summed in its own
/// lane.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::kernels::x86) unsafe fn tile_q4_1_avx2(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * Q4_1_BYTES, nb * Q8_1_BYTES);
    let mut acc = [_mm256_setzero_ps(); TILE_ROWS * TILE_TOKENS];
    // Lane 2t + 1 of row r's vector: the sum of m_w · s_a for token t.
    let mut mins = [_mm256_setzero_ps(); TILE_ROWS];
    // A row's products [d_w d_a, m_w s_a] of the four tokens, for `broadcast_at`.
    let mut prods = [0.0f32; 8];
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by
        // the wrapper).
        unsafe {
            let qa: [__m256i; TILE_TOKENS] = std::array::from_fn(|t| {
                _mm256_loadu_si256(a.add(t * arow + i * Q8_1_BYTES + 4).cast())
            });
            let head = |t: usize| {
                a.add(t * arow + i * Q8_1_BYTES)
                    .cast::<i32>()
                    .read_unaligned()
            };
            // d_a, s_a of the four tokens: [d0, s0, d1, s1, d2, s2, d3, s3].
            let ds = _mm256_cvtph_ps(_mm_setr_epi32(head(0), head(1), head(2), head(3)));
            for (r, mr) in mins.iter_mut().enumerate() {
                let wb = w.add(r * wrow + i * Q4_1_BYTES);
                // [d_w, m_w] four times.
                let dm = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(f16x2_at(wb))));
                let prod = _mm256_mul_ps(dm, ds);
                *mr = _mm256_add_ps(*mr, prod);
                _mm256_storeu_ps(prods.as_mut_ptr(), prod);
                let qw = nibbles(wb.add(4));
                for (t, &q) in qa.iter().enumerate() {
                    let k = r * TILE_TOKENS + t;
                    let d = broadcast_at(prods.as_ptr().add(2 * t));
                    let sums = isum_u4i8_avx2(qw, q);
                    acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[k]);
                }
            }
        }
    }
    for (r, mr) in mins.iter().enumerate() {
        let mut m = [0.0f32; 8];
        // SAFETY: `m` holds 8 floats.
        unsafe { _mm256_storeu_ps(m.as_mut_ptr(), *mr) };
        for t in 0..TILE_TOKENS {
            let k = r * TILE_TOKENS + t;
            out[k] = hsum(acc[k]) + m[2 * t + 1];
        }
    }
}

/// [`tile_q4_1_avx2`] with AVX-512 VNNI: each 16-lane register holds the tile's two rows side
/// by side for one token, so one `vpdpbusd`, conversion and multiply-add serve two outputs.
/// Lane for lane the integer sums, scale products (`d_w · d_a`, formed as the same single
/// product) and fused multiply-adds are those of the 8-lane kernel, so are the floats.
/// Measured on 12800 tiles of 18 blocks, best of 1000: 2.27 against 1.96 ms (the 8-lane
/// kernel with VNNI).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(in crate::kernels::x86) unsafe fn tile_q4_1_vnni(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_ROWS == 2 && TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * Q4_1_BYTES, nb * Q8_1_BYTES);
    // Token t's sums: lanes 0..8 of row 0, lanes 8..16 of row 1.
    let mut acc = [_mm512_setzero_ps(); TILE_TOKENS];
    // Lane 2t + 1 of row r's vector: the sum of m_w · s_a for token t.
    let mut mins = [_mm256_setzero_ps(); TILE_ROWS];
    // [d0, s0, d1, s1, d2, s2, d3, s3] of the block, for `broadcast16_at`.
    let mut scales = [0.0f32; 8];
    // Lane 0 of the first vector in lanes 0..8, lane 0 of the second in 8..16.
    let rows = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by the
        // wrapper).
        unsafe {
            let head = |t: usize| {
                a.add(t * arow + i * Q8_1_BYTES)
                    .cast::<i32>()
                    .read_unaligned()
            };
            let ds = _mm256_cvtph_ps(_mm_setr_epi32(head(0), head(1), head(2), head(3)));
            _mm256_storeu_ps(scales.as_mut_ptr(), ds);
            let (w0, w1) = (w.add(i * Q4_1_BYTES), w.add(wrow + i * Q4_1_BYTES));
            // [d_w, m_w] four times, per row.
            let dm0 = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(f16x2_at(w0))));
            let dm1 = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(f16x2_at(w1))));
            mins[0] = _mm256_add_ps(mins[0], _mm256_mul_ps(dm0, ds));
            mins[1] = _mm256_add_ps(mins[1], _mm256_mul_ps(dm1, ds));
            let dw = _mm512_permutex2var_ps(
                _mm512_castps256_ps512(dm0),
                rows,
                _mm512_castps256_ps512(dm1),
            );
            let qw = nibbles_x2(w0.add(4), w1.add(4));
            for (t, at) in acc.iter_mut().enumerate() {
                let qa = _mm256_loadu_si256(a.add(t * arow + i * Q8_1_BYTES + 4).cast());
                let d = _mm512_mul_ps(dw, broadcast16_at(scales.as_ptr().add(2 * t)));
                let sums =
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), qw, _mm512_broadcast_i64x4(qa));
                *at = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sums), *at);
            }
        }
    }
    for (r, m) in mins.iter().enumerate() {
        let mut mv = [0.0f32; 8];
        // SAFETY: `mv` holds 8 floats.
        unsafe { _mm256_storeu_ps(mv.as_mut_ptr(), *m) };
        for (t, &at) in acc.iter().enumerate() {
            let half = if r == 0 {
                _mm512_castps512_ps256(at)
            } else {
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(at)))
            };
            out[r * TILE_TOKENS + t] = hsum(half) + mv[2 * t + 1];
        }
    }
}

/// Two rows' 16 bytes of nibbles (at `p0` and `p1`) as [`nibbles`] unpacks each: row 0's low
/// then high nibbles in bytes 0..32, row 1's in bytes 32..64.
///
/// # Safety
/// `p0` and `p1` point at 16 readable bytes each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
unsafe fn nibbles_x2(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: the caller's promise.
    let (x0, x1) = unsafe {
        (
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p0.cast())),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p1.cast())),
        )
    };
    let x = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1);
    // The second copy of each row shifted down by a nibble, then the low nibbles kept.
    let shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    _mm512_and_si512(_mm512_srlv_epi64(x, shifts), _mm512_set1_epi8(0x0f))
}

/// Q8_0 (`WB == 34`) or Q4_0 (`WB == 18`, `NIB == 4`) weights by Q8_0 activations, tiled.
/// Per output: the same steps as `dot_q8_0_avx2` / `dot_q4_0_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::kernels::x86) unsafe fn tile_q8_avx2<const WB: usize, const NIB: usize>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * WB, nb * Q8_0_BYTES);
    let mut acc = [_mm256_setzero_ps(); TILE_ROWS * TILE_TOKENS];
    // A row's scale products d_w · d_a of the four tokens, for `broadcast_at`.
    let mut prods = [0.0f32; TILE_TOKENS];
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by the
        // wrapper).
        unsafe {
            let mut qa = [_mm256_setzero_si256(); TILE_TOKENS];
            for (t, q) in qa.iter_mut().enumerate() {
                *q = _mm256_loadu_si256(a.add(t * arow + i * Q8_0_BYTES + 2).cast());
            }
            // d_a of the four tokens.
            let head = |t: usize| {
                a.add(t * arow + i * Q8_0_BYTES)
                    .cast::<i16>()
                    .read_unaligned()
            };
            let heads = _mm_setr_epi16(head(0), head(1), head(2), head(3), 0, 0, 0, 0);
            let da = _mm_cvtph_ps(heads);
            for r in 0..TILE_ROWS {
                let wb = w.add(r * wrow + i * WB);
                let dw = f16x2_at(wb);
                let qw = if NIB > 0 {
                    _mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8))
                } else {
                    _mm256_loadu_si256(wb.add(2).cast())
                };
                _mm_storeu_ps(prods.as_mut_ptr(), _mm_mul_ps(_mm_broadcastss_ps(dw), da));
                for (t, &q) in qa.iter().enumerate() {
                    let d = broadcast_at(prods.as_ptr().add(t));
                    let k = r * TILE_TOKENS + t;
                    acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum_i8i8_avx2(qw, q)), acc[k]);
                }
            }
        }
    }
    for (o, v) in out.iter_mut().zip(acc) {
        *o = hsum(v);
    }
}

/// [`tile_q8_avx2`] with AVX-512 VNNI, two rows per 16-lane register as in
/// [`tile_q4_1_vnni`]: per token one sign fix-up, `vpdpbusd`, conversion, scale product and
/// multiply-add serve both rows. AVX-512 has no byte `vpsign`: the weights' magnitudes go
/// unsigned and the activations are negated where the weight is negative, the same integer
/// products as `isum_i8i8_avx2`'s (a zero weight's product is zero either way). The scale of
/// row `r` is `d_w · d_a`, the same single product as the 8-lane kernel's, so the floats are
/// too. Measured on 12800 Q4_0 tiles of 18 blocks, best of 1000: 1.86 against 1.70 ms (the
/// 8-lane kernel with VNNI).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(in crate::kernels::x86) unsafe fn tile_q8_vnni<const WB: usize, const NIB: usize>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_ROWS == 2 && TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * WB, nb * Q8_0_BYTES);
    // Token t's sums: lanes 0..8 of row 0, lanes 8..16 of row 1.
    let mut acc = [_mm512_setzero_ps(); TILE_TOKENS];
    // d_a of the block's four tokens, for `broadcast16_at`.
    let mut scales = [0.0f32; TILE_TOKENS];
    // Lane 0 of the first vector in lanes 0..8, lane 0 of the second in 8..16.
    let rows = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by the
        // wrapper).
        unsafe {
            let head = |t: usize| {
                a.add(t * arow + i * Q8_0_BYTES)
                    .cast::<i16>()
                    .read_unaligned()
            };
            let heads = _mm_setr_epi16(head(0), head(1), head(2), head(3), 0, 0, 0, 0);
            _mm_storeu_ps(scales.as_mut_ptr(), _mm_cvtph_ps(heads));
            let (w0, w1) = (w.add(i * WB), w.add(wrow + i * WB));
            // d_w of row 0 in lanes 0..8, of row 1 in lanes 8..16.
            let dw = _mm512_permutex2var_ps(
                _mm512_castps128_ps512(f16x2_at(w0)),
                rows,
                _mm512_castps128_ps512(f16x2_at(w1)),
            );
            let x = if NIB > 0 {
                _mm512_sub_epi8(nibbles_x2(w0.add(2), w1.add(2)), _mm512_set1_epi8(8))
            } else {
                let x0 = _mm256_loadu_si256(w0.add(2).cast());
                let x1 = _mm256_loadu_si256(w1.add(2).cast());
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1)
            };
            let (ax, negative) = (_mm512_abs_epi8(x), _mm512_movepi8_mask(x));
            for (t, at) in acc.iter_mut().enumerate() {
                let qa = _mm256_loadu_si256(a.add(t * arow + i * Q8_0_BYTES + 2).cast());
                let qa = _mm512_broadcast_i64x4(qa);
                let sy = _mm512_mask_sub_epi8(qa, negative, _mm512_setzero_si512(), qa);
                let d = _mm512_mul_ps(dw, broadcast16_at(scales.as_ptr().add(t)));
                let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy);
                *at = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sums), *at);
            }
        }
    }
    for (t, &at) in acc.iter().enumerate() {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(at)));
        out[t] = hsum(_mm512_castps512_ps256(at));
        out[TILE_TOKENS + t] = hsum(hi);
    }
}
