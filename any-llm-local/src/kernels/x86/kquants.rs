//! The K-quants (Q4_K, Q5_K, Q6_K) by Q8_K activations with AVX2: each super-block's
//! integer sums in registers, its scales applied in the scalar reference's expression and
//! order, so the floats are the reference's.

use std::arch::x86_64::*;

use super::{Tile, f16_at, f32_at, hsum_i32};
use crate::kernels::{DotFn, TILE_ROWS, TILE_TOKENS, TileFn};
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

/// The tiled dot product for `ty`; the CPU has AVX2.
pub(super) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    match ty {
        GgmlType::Q4_K => Some(tile_q4_k),
        GgmlType::Q5_K => Some(tile_q5_k),
        GgmlType::Q6_K => Some(tile_q6_k),
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
            let ad = f32_at(ab);
            let (d, dmin) = (f16_at(wb), f16_at(wb.add(2)));
            // The scalar reference's expression and summation order, so results are identical.
            total += ad * d * sum as f32 - ad * dmin * mins as f32;
        }
    }
    total
}

/// Super-blocks of `n` values in a tile's weight rows and activation rows (`wb` bytes per
/// weight super-block), after checking the slices hold exactly that many.
fn check_k_tile(w: &[u8], a: &[u8], n: usize, wb: usize) -> usize {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K)
            && w.len() == TILE_ROWS * nb * wb
            && a.len() == TILE_TOKENS * nb * Q8_K_BYTES,
        "tile sizes do not match n = {n}"
    );
    nb
}

/// [`dot_k4_avx2`] for a tile of rows by tokens: each super-block's scales and minimums are
/// decoded once per row and its quants unpacked once per row for all the tile's tokens; every
/// output's floats are [`dot_k4_avx2`]'s, in its order.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_k4_avx2<const FIVE: bool>(w: *const u8, a: *const u8, nb: usize, out: &mut Tile) {
    let block = if FIVE { Q5_K_BYTES } else { Q4_K_BYTES };
    let mut total = [-0.0f32; TILE_ROWS * TILE_TOKENS];
    for b in 0..nb {
        // SAFETY: super-block `b < nb` of each of the tile's rows (`nb` super-blocks each) is
        // in bounds (checked by the caller); offsets as in `dot_k4_avx2`.
        unsafe {
            let wbs: [*const u8; TILE_ROWS] = std::array::from_fn(|r| w.add((r * nb + b) * block));
            let abs: [*const u8; TILE_TOKENS] =
                std::array::from_fn(|t| a.add((t * nb + b) * Q8_K_BYTES));
            let mut sc = [[0i16; 8]; TILE_ROWS];
            let mut mins = [[0i32; TILE_TOKENS]; TILE_ROWS];
            for r in 0..TILE_ROWS {
                let (sc8, mn) = scales_mins_k4(std::slice::from_raw_parts(wbs[r].add(4), 12));
                sc[r] = sc8.map(i16::from);
                for t in 0..TILE_TOKENS {
                    mins[r][t] = mins_term(&mn, abs[t].add(260));
                }
            }
            let sums = isum_tile_k4::<FIVE>(wbs, abs, &sc);
            for r in 0..TILE_ROWS {
                let (d, dmin) = (f16_at(wbs[r]), f16_at(wbs[r].add(2)));
                for t in 0..TILE_TOKENS {
                    let ad = f32_at(abs[t]);
                    total[r * TILE_TOKENS + t] +=
                        ad * d * sums[r][t] as f32 - ad * dmin * mins[r][t] as f32;
                }
            }
        }
    }
    *out = total;
}

fn tile_k4<const FIVE: bool>(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let block = if FIVE { Q5_K_BYTES } else { Q4_K_BYTES };
    let nb = check_k_tile(w, a, n, block);
    // SAFETY: `tile_fn` hands this out only when AVX2/FMA/F16C are present; `check_k_tile`
    // proved the slices hold the tile's rows of `nb` whole super-blocks.
    unsafe { tile_k4_avx2::<FIVE>(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q4_k(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    tile_k4::<false>(w, a, n, out);
}

fn tile_q5_k(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    tile_k4::<true>(w, a, n, out);
}

fn tile_q6_k(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check_k_tile(w, a, n, Q6_K_BYTES);
    // SAFETY: as in `tile_k4`; blocks of 210 and 292 bytes.
    unsafe { tile_q6_k_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

/// [`dot_q6_k_avx2`] for a tile of rows by tokens.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q6_k_avx2(w: *const u8, a: *const u8, nb: usize, out: &mut Tile) {
    let mut total = [-0.0f32; TILE_ROWS * TILE_TOKENS];
    for b in 0..nb {
        // SAFETY: as in `tile_k4_avx2`; the f16 scale at 208.
        unsafe {
            let wbs: [*const u8; TILE_ROWS] =
                std::array::from_fn(|r| w.add((r * nb + b) * Q6_K_BYTES));
            let abs: [*const u8; TILE_TOKENS] =
                std::array::from_fn(|t| a.add((t * nb + b) * Q8_K_BYTES));
            let sums = isum_tile_q6_k(wbs, abs);
            for r in 0..TILE_ROWS {
                let d = f16_at(wbs[r].add(208));
                for t in 0..TILE_TOKENS {
                    let ad = f32_at(abs[t]);
                    total[r * TILE_TOKENS + t] += ad * d * sums[r][t] as f32;
                }
            }
        }
    }
    *out = total;
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
            let ad = f32_at(ab);
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

/// [`isum_q4_k_avx2`] (or, with `FIVE`, [`isum_q5_k_avx2`]) for every (row, token) of a tile:
/// each row's quants are unpacked once for all the tokens, each token's activations loaded
/// once for all the rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum_tile_k4<const FIVE: bool>(
    w: [*const u8; TILE_ROWS],
    a: [*const u8; TILE_TOKENS],
    sc: &[[i16; 8]; TILE_ROWS],
) -> [[i32; TILE_TOKENS]; TILE_ROWS] {
    let mask = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let quants = if FIVE { 48 } else { 16 };
    let mut acc = [[_mm256_setzero_si256(); TILE_TOKENS]; TILE_ROWS];
    for j in 0..4 {
        let mut lo = [_mm256_setzero_si256(); TILE_ROWS];
        let mut hi = [_mm256_setzero_si256(); TILE_ROWS];
        for r in 0..TILE_ROWS {
            // SAFETY: quants at 16 + 32j (Q4_K, within 144) or 48 + 32j (Q5_K, within 176),
            // 32 bytes; Q5_K's `qh` is the 32 bytes at 16.
            unsafe {
                let q = _mm256_loadu_si256(w[r].add(quants + 32 * j).cast());
                lo[r] = _mm256_and_si256(q, mask);
                hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                if FIVE {
                    let qh = _mm256_loadu_si256(w[r].add(16).cast());
                    let fifth = |bit: i32| {
                        let b = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(bit)), one);
                        _mm256_slli_epi16(b, 4)
                    };
                    lo[r] = _mm256_or_si256(lo[r], fifth(2 * j as i32));
                    hi[r] = _mm256_or_si256(hi[r], fifth(2 * j as i32 + 1));
                }
            }
        }
        for t in 0..TILE_TOKENS {
            // SAFETY: activations at 4 + 64j (64 bytes, within 292).
            let (a_lo, a_hi) = unsafe {
                (
                    _mm256_loadu_si256(a[t].add(4 + 64 * j).cast()),
                    _mm256_loadu_si256(a[t].add(36 + 64 * j).cast()),
                )
            };
            for r in 0..TILE_ROWS {
                let p_lo = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(lo[r], a_lo),
                    _mm256_set1_epi16(sc[r][2 * j]),
                );
                let p_hi = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi[r], a_hi),
                    _mm256_set1_epi16(sc[r][2 * j + 1]),
                );
                acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_add_epi32(p_lo, p_hi));
            }
        }
    }
    let mut sums = [[0; TILE_TOKENS]; TILE_ROWS];
    for (sr, ar) in sums.iter_mut().zip(&acc) {
        for (s, a) in sr.iter_mut().zip(ar) {
            *s = hsum_i32(*a);
        }
    }
    sums
}

/// [`isum_q6_k_avx2`] for every (row, token) of a tile: each row's quants and scales are
/// unpacked once for all the tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn isum_tile_q6_k(
    w: [*const u8; TILE_ROWS],
    a: [*const u8; TILE_TOKENS],
) -> [[i32; TILE_TOKENS]; TILE_ROWS] {
    let mask4 = _mm256_set1_epi8(0x0F);
    let mask2 = _mm256_set1_epi8(0x03);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = [[_mm256_setzero_si256(); TILE_TOKENS]; TILE_ROWS];
    for h in 0..2 {
        for j in 0..4 {
            let mut q = [_mm256_setzero_si256(); TILE_ROWS];
            let mut scales = [_mm256_setzero_si256(); TILE_ROWS];
            for r in 0..TILE_ROWS {
                // SAFETY: ql at h·64 + (j % 2)·32 (32 bytes, within 128), qh at 128 + h·32
                // (within 192), scales at 192 + h·8 + 2j (2 bytes, within 208).
                unsafe {
                    let ql = _mm256_loadu_si256(w[r].add(h * 64 + (j % 2) * 32).cast());
                    let qh = _mm256_loadu_si256(w[r].add(128 + h * 32).cast());
                    let low = _mm256_and_si256(
                        if j / 2 == 1 {
                            _mm256_srli_epi16(ql, 4)
                        } else {
                            ql
                        },
                        mask4,
                    );
                    let high = _mm256_and_si256(
                        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)),
                        mask2,
                    );
                    q[r] = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), m32);
                    let s = w[r].add(192 + h * 8 + 2 * j).cast::<i8>();
                    let (s0, s1) = (i16::from(s.read()), i16::from(s.add(1).read()));
                    scales[r] = _mm256_setr_epi16(
                        s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                    );
                }
            }
            for t in 0..TILE_TOKENS {
                // SAFETY: activations at 4 + h·128 + 32j (32 bytes, within 292).
                let y = unsafe { _mm256_loadu_si256(a[t].add(4 + h * 128 + 32 * j).cast()) };
                for r in 0..TILE_ROWS {
                    // Signed by signed: move q's sign onto y, as `dot_i8` does.
                    let pairs = _mm256_maddubs_epi16(
                        _mm256_sign_epi8(q[r], q[r]),
                        _mm256_sign_epi8(y, q[r]),
                    );
                    acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(pairs, scales[r]));
                }
            }
        }
    }
    let mut sums = [[0; TILE_TOKENS]; TILE_ROWS];
    for (sr, ar) in sums.iter_mut().zip(&acc) {
        for (s, a) in sr.iter_mut().zip(ar) {
            *s = hsum_i32(*a);
        }
    }
    sums
}

/// One Q8_K block of 256 activations: the value of largest magnitude (the first, on a tie)
/// sets the scale `-127 / max`, each value rounds to the nearest integer (ties to even) and
/// is capped at 127, and each 16 values' sum is kept: the scalar reference's operations, so
/// its bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_k_block(x: &[f32], out: &mut [u8]) {
    debug_assert!(x.len() == QK_K && out.len() == Q8_K_BYTES);
    let sign = _mm256_set1_ps(-0.0);
    // The largest magnitude; `max_ps(v, m)` keeps `m` when `v` is NaN, as the scalar `>` does.
    let mut amax = _mm256_setzero_ps();
    for i in (0..QK_K).step_by(8) {
        // SAFETY: `i + 8 <= 256` values.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v), amax);
    }
    let amax = {
        let m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)))
    };
    if amax == 0.0 {
        out.fill(0);
        return;
    }
    let max = x
        .iter()
        .copied()
        .find(|v| v.abs() == amax)
        .expect("the largest magnitude is one of the values");
    let iscale = -127.0 / max;
    let scale = _mm256_set1_ps(iscale);
    let cap = _mm256_set1_ps(127.0);
    let mut q = [0i32; QK_K];
    for i in (0..QK_K).step_by(8) {
        // SAFETY: `i + 8 <= 256` values and quants.
        unsafe {
            let v = _mm256_mul_ps(scale, _mm256_loadu_ps(x.as_ptr().add(i)));
            let r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            // `min_ps(r, cap)` gives `cap` for a NaN, as the scalar `f32::min` does.
            let r = _mm256_min_ps(r, cap);
            _mm256_storeu_si256(q.as_mut_ptr().add(i).cast(), _mm256_cvttps_epi32(r));
        }
    }
    out[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    for (o, &v) in out[4..4 + QK_K].iter_mut().zip(&q) {
        // As `f32 as i8` saturates (the rounded values are within -127..=127, or a cap).
        *o = v.clamp(-128, 127) as i8 as u8;
    }
    for (j, sum) in out[4 + QK_K..].chunks_exact_mut(2).enumerate() {
        let s: i32 = q[16 * j..16 * j + 16]
            .iter()
            .map(|&v| v.clamp(-128, 127))
            .sum();
        sum.copy_from_slice(&(s as i16).to_le_bytes());
    }
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
