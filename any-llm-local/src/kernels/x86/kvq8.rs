//! A Q8_0 KV cache's decode-step attention on AVX-512: integer scores (`vpdpbusd`) against
//! queries quantized to Q8_0, and weighted value sums in one chain per value. The numbers are
//! those of `attention::q8_scores_portable` and `attention::q8_values_portable`, bit for bit.

use std::arch::x86_64::*;

use super::{PREFETCH_ROWS, has_avx2, has_avx512, has_vnni};
use crate::kernels::{Tier, q8_scores_fit, q8_values_fit};
use crate::quant::{Q8_0_BYTES, QK};

/// `kernels::attn_q8_scores` with AVX-512 VNNI (`Tier::Best` on a CPU that has it) or AVX2;
/// `false` where the CPU has neither or the shapes do not fit.
pub(in crate::kernels) fn attn_q8_scores(
    tier: Tier,
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    let vnni = tier == Tier::Best && has_vnni() && has_avx512();
    if !(vnni || has_avx2()) || !q8_scores_fit(qs, qd, keys, hd, 64, out) {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C, and with `vnni` AVX-512 F, BW, VL and VNNI
    // (checked just above).
    unsafe { q8_scores(vnni, qs, qd, keys, hd, scale, out) };
    true
}

/// `kernels::attn_q8_values` with AVX-512 (`Tier::Best` on a CPU that has it, head widths a
/// multiple of 64) or AVX2; `false` where the CPU has neither or the shapes do not fit.
pub(in crate::kernels) fn attn_q8_values(
    tier: Tier,
    p: &[f32],
    values: &[u8],
    hd: usize,
    heads: usize,
    acc: &mut [f32],
) -> bool {
    if !q8_values_fit(p, values, hd, heads, acc) {
        return false;
    }
    if tier == Tier::Best && has_avx512() && hd.is_multiple_of(64) {
        // SAFETY: the CPU has AVX-512F, AVX2, FMA and F16C (checked just above).
        unsafe { q8_values_avx512(p, values, hd, heads, acc) };
        return true;
    }
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        unsafe { q8_values_avx2(p, values, hd, heads, acc) };
        return true;
    }
    false
}

/// Bytes of 64 values of a Q8_0 row (two blocks).
const PAIR: usize = 2 * Q8_0_BYTES;

/// Query heads per call of the score and value kernels.
const MAX_H: usize = 4;

/// 64-value chunks of a row the kernels take (head widths up to 256).
const MAX_PAIRS: usize = 4;

/// Scores of `H` query heads over `len` Q8_0 key rows (`pairs` × 64 values each), 16
/// positions at a time. Per 64 values, the 16 rows' bytes (offset by 128, so unsigned) are
/// transposed in registers into groups of four positions per 128-bit lane, so that `vpdpbusd`
/// against each head's bytes sums every position in its own lanes; the 128 × Σq the offset
/// adds is taken off, and the integer block sums are scaled by the key's and the query's
/// block scales and summed block after block.
///
/// # Safety
/// `k` holds `len` rows of `pairs * PAIR` bytes; `qs` and `qd` hold `H` heads of `pairs * 64`
/// bytes and `pairs * 2` scales; `out` holds `H` rows of `out_stride >= len`; `H <= MAX_H`,
/// `pairs <= MAX_PAIRS`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn scores_heads<const H: usize>(
    k: *const u8,
    pairs: usize,
    len: usize,
    qs: *const i8,
    qd: *const f32,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
) {
    let rb = pairs * PAIR;
    let hd = pairs * 64;
    let scale = _mm512_set1_ps(scale);
    let zero = _mm512_setzero_si512();
    let offset = _mm512_set1_epi8(-128);
    // Per head and chunk: the query's 32-bit groups `4c + e` broadcast over 128-bit lane
    // `c` (vector `e`), and 128 × the sum of each block's bytes.
    let mut qv = [[[zero; 4]; H]; MAX_PAIRS];
    let mut corr = [[[0i32; 2]; H]; MAX_PAIRS];
    let lane_base = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
    for c in 0..pairs {
        for h in 0..H {
            // SAFETY: head `h`'s bytes `64c..64c + 64` are inside `qs`.
            let bytes = unsafe { std::slice::from_raw_parts(qs.add(h * hd + 64 * c), 64) };
            // SAFETY: `bytes` is 64 long.
            let q = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
            for (e, v) in qv[c][h].iter_mut().enumerate() {
                let idx = _mm512_add_epi32(lane_base, _mm512_set1_epi32(e as i32));
                *v = _mm512_permutexvar_epi32(idx, q);
            }
            for (b, half) in bytes.chunks_exact(32).enumerate() {
                corr[c][h][b] = 128 * half.iter().map(|&x| i32::from(x)).sum::<i32>();
            }
        }
    }
    let mut j0 = 0;
    while j0 < len {
        let live = (len - j0).min(16);
        let mut s = [_mm512_setzero_ps(); H];
        for c in 0..pairs {
            let mut r = [zero; 16];
            let (mut d0, mut d1) = ([0u16; 16], [0u16; 16]);
            for p in 0..live {
                let at = (j0 + p) * rb + c * PAIR;
                if c == 0 {
                    let ahead = k.wrapping_add((j0 + p + PREFETCH_ROWS) * rb);
                    _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
                }
                // SAFETY: row `j0 + p < len`, bytes `at..at + PAIR` are inside the keys.
                unsafe {
                    let row = k.add(at);
                    d0[p] = row.cast::<u16>().read_unaligned();
                    d1[p] = row.add(Q8_0_BYTES).cast::<u16>().read_unaligned();
                    let lo = _mm256_loadu_si256(row.add(2).cast());
                    let hi = _mm256_loadu_si256(row.add(Q8_0_BYTES + 2).cast());
                    let kv = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                    r[p] = _mm512_xor_si512(kv, offset);
                }
            }
            // Rows 2i and 2i + 1 interleaved by 32-bit group: per 128-bit lane `c`, groups
            // (c, 0) and (c, 1) of both (lo), groups (c, 2) and (c, 3) (hi).
            let t: [[__m512i; 2]; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[2 * i], r[2 * i + 1]);
                [_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b)]
            });
            // w[m][e]: per 128-bit lane `c`, group (c, e) of rows 4m..4m + 4.
            let w: [[__m512i; 4]; 4] = std::array::from_fn(|m| {
                let (a, b) = (t[2 * m], t[2 * m + 1]);
                [
                    _mm512_unpacklo_epi64(a[0], b[0]),
                    _mm512_unpackhi_epi64(a[0], b[0]),
                    _mm512_unpacklo_epi64(a[1], b[1]),
                    _mm512_unpackhi_epi64(a[1], b[1]),
                ]
            });
            // SAFETY: the arrays are 16 halves long.
            let dk0 = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(d0.as_ptr().cast()) });
            let dk1 = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(d1.as_ptr().cast()) });
            for (h, sh) in s.iter_mut().enumerate() {
                // Per 128-bit lane `c` of acc[m]: rows 4m..4m + 4 summed over groups (c, *).
                let acc: [__m512i; 4] = std::array::from_fn(|m| {
                    let mut a = zero;
                    for (&wv, &q) in w[m].iter().zip(&qv[c][h]) {
                        a = _mm512_dpbusd_epi32(a, wv, q);
                    }
                    a
                });
                // Lanes 0 + 1 (block 0) and 2 + 3 (block 1), then rows 0..16 in order.
                let y: [__m512i; 2] = std::array::from_fn(|i| {
                    let (a, b) = (acc[2 * i], acc[2 * i + 1]);
                    _mm512_add_epi32(
                        _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
                        _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
                    )
                });
                let b0 = _mm512_shuffle_i32x4::<0b10_00_10_00>(y[0], y[1]);
                let b1 = _mm512_shuffle_i32x4::<0b11_01_11_01>(y[0], y[1]);
                let b0 = _mm512_sub_epi32(b0, _mm512_set1_epi32(corr[c][h][0]));
                let b1 = _mm512_sub_epi32(b1, _mm512_set1_epi32(corr[c][h][1]));
                // SAFETY: head `h`'s scales `2c, 2c + 1` are inside `qd`.
                let (q0, q1) = unsafe {
                    let at = qd.add(h * 2 * pairs + 2 * c);
                    (_mm512_set1_ps(*at), _mm512_set1_ps(*at.add(1)))
                };
                *sh = _mm512_fmadd_ps(_mm512_mul_ps(dk0, q0), _mm512_cvtepi32_ps(b0), *sh);
                *sh = _mm512_fmadd_ps(_mm512_mul_ps(dk1, q1), _mm512_cvtepi32_ps(b1), *sh);
            }
        }
        let mask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
        for (h, &sh) in s.iter().enumerate() {
            // SAFETY: the mask stores only positions `< len` of head `h`'s row.
            unsafe {
                _mm512_mask_storeu_ps(out.add(h * out_stride + j0), mask, _mm512_mul_ps(sh, scale))
            };
        }
        j0 += 16;
    }
}

/// The shapes of a score kernel's call, checked: (64-value chunks per head, heads, rows).
///
/// # Panics
/// When the queries, scales, keys and scores do not match (the safe wrappers check first).
fn scores_shape(
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    out: &[f32],
) -> (usize, usize, usize) {
    let pairs = hd / 64;
    let heads = qs.len() / hd.max(1);
    let len = out.len() / heads.max(1);
    assert!(
        hd.is_multiple_of(64)
            && hd <= 64 * MAX_PAIRS
            && heads > 0
            && qs.len() == heads * hd
            && qd.len() == heads * hd / QK
            && out.len() == heads * len
            && keys.len() >= len * pairs * PAIR,
        "keys, queries and scores do not match"
    );
    (pairs, heads, len)
}

/// `out[h * len + j]` = the score of query head `h` (`qs`, `qd`: Q8_0 queries, `hd` each) at
/// key row `j` (`keys`, Q8_0 rows of `hd`), times `scale`: with `vnni` through
/// [`scores_heads`], else through [`scores_heads_avx2`].
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and with `vnni` also AVX-512 F, BW, VL and VNNI.
unsafe fn q8_scores(
    vnni: bool,
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (pairs, heads, len) = scores_shape(qs, qd, keys, hd, out);
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(MAX_H);
        // SAFETY (all arms): heads `h0..h0 + n` are inside `qs`, `qd` and `out`, and the
        // keys hold `len` rows, checked above.
        unsafe {
            let k = keys.as_ptr();
            let (q, d) = (qs.as_ptr().add(h0 * hd), qd.as_ptr().add(h0 * hd / QK));
            let o = out.as_mut_ptr().add(h0 * len);
            match (vnni, n) {
                (true, 1) => scores_heads::<1>(k, pairs, len, q, d, scale, o, len),
                (true, 2) => scores_heads::<2>(k, pairs, len, q, d, scale, o, len),
                (true, 3) => scores_heads::<3>(k, pairs, len, q, d, scale, o, len),
                (true, _) => scores_heads::<4>(k, pairs, len, q, d, scale, o, len),
                (false, 1) => scores_heads_avx2::<1>(k, pairs, len, q, d, scale, o, len),
                (false, 2) => scores_heads_avx2::<2>(k, pairs, len, q, d, scale, o, len),
                (false, 3) => scores_heads_avx2::<3>(k, pairs, len, q, d, scale, o, len),
                (false, _) => scores_heads_avx2::<4>(k, pairs, len, q, d, scale, o, len),
            }
        }
        h0 += n;
    }
}

/// Weighted value sums of `H` heads over `len` Q8_0 rows, 64 values at a time and 16
/// positions at a time: each head's probability times the block's scale (one product per
/// head, position and block, computed 16 positions at once), then `acc = fma(that, byte,
/// acc)` in increasing position, the sums in registers.
///
/// # Safety
/// `v` holds `len` rows of `pairs * PAIR` bytes; `p` holds `H` rows of `p_stride >= len`;
/// `acc` holds `H` rows of `pairs * 64`; `H <= MAX_H`.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn values_heads<const H: usize>(
    p: *const f32,
    p_stride: usize,
    v: *const u8,
    pairs: usize,
    len: usize,
    acc: *mut f32,
) {
    let rb = pairs * PAIR;
    let hd = pairs * 64;
    for c in 0..pairs {
        let mut a = [[_mm512_setzero_ps(); 4]; H];
        let mut j0 = 0;
        while j0 < len {
            let live = (len - j0).min(16);
            let mask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
            let (mut d0, mut d1) = ([0u16; 16], [0u16; 16]);
            for i in 0..live {
                // SAFETY: row `j0 + i < len`; its blocks `2c, 2c + 1` are inside the values.
                unsafe {
                    let row = v.add((j0 + i) * rb + c * PAIR);
                    d0[i] = row.cast::<u16>().read_unaligned();
                    d1[i] = row.add(Q8_0_BYTES).cast::<u16>().read_unaligned();
                }
            }
            // SAFETY: the arrays are 16 halves long.
            let dv0 = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(d0.as_ptr().cast()) });
            let dv1 = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(d1.as_ptr().cast()) });
            // wt[h][b][i]: head `h`'s probability at position `j0 + i` times block `b`'s scale.
            let mut wt = [[[0f32; 16]; 2]; H];
            for (h, wh) in wt.iter_mut().enumerate() {
                // SAFETY: positions `j0..j0 + live` of head `h` are inside `p` (masked load).
                let ph = unsafe { _mm512_maskz_loadu_ps(mask, p.add(h * p_stride + j0)) };
                // SAFETY: the rows are 16 floats long.
                unsafe {
                    _mm512_storeu_ps(wh[0].as_mut_ptr(), _mm512_mul_ps(ph, dv0));
                    _mm512_storeu_ps(wh[1].as_mut_ptr(), _mm512_mul_ps(ph, dv1));
                }
            }
            for i in 0..live {
                let j = j0 + i;
                if c == 0 {
                    let ahead = v.wrapping_add((j + PREFETCH_ROWS) * rb);
                    _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
                }
                // SAFETY: row `j < len`, bytes `c * PAIR..(c + 1) * PAIR` are inside the values.
                unsafe {
                    let row = v.add(j * rb + c * PAIR);
                    let x: [__m512; 4] = std::array::from_fn(|q| {
                        let bytes = row.add(q / 2 * Q8_0_BYTES + 2 + 16 * (q % 2));
                        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(bytes.cast())))
                    });
                    for (ah, wh) in a.iter_mut().zip(&wt) {
                        let (w0, w1) = (_mm512_set1_ps(wh[0][i]), _mm512_set1_ps(wh[1][i]));
                        ah[0] = _mm512_fmadd_ps(w0, x[0], ah[0]);
                        ah[1] = _mm512_fmadd_ps(w0, x[1], ah[1]);
                        ah[2] = _mm512_fmadd_ps(w1, x[2], ah[2]);
                        ah[3] = _mm512_fmadd_ps(w1, x[3], ah[3]);
                    }
                }
            }
            j0 += 16;
        }
        for (h, ah) in a.iter().enumerate() {
            for (i, &ac) in ah.iter().enumerate() {
                // SAFETY: values `64c + 16i..` of head `h` are inside `acc`.
                unsafe { _mm512_storeu_ps(acc.add(h * hd + 64 * c + 16 * i), ac) };
            }
        }
    }
}

/// `acc[h * hd + d] = Σ_j p[h * len + j] · value_j[d]` over the Q8_0 rows `values`, summed
/// in increasing `j` with one fused multiply-add each; see [`values_heads`].
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn q8_values_avx512(p: &[f32], values: &[u8], hd: usize, heads: usize, acc: &mut [f32]) {
    let pairs = hd / 64;
    let len = p.len() / heads.max(1);
    assert!(
        hd.is_multiple_of(64)
            && heads > 0
            && p.len() == heads * len
            && acc.len() == heads * hd
            && values.len() >= len * pairs * PAIR,
        "values, probabilities and sums do not match"
    );
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(MAX_H);
        // SAFETY (all arms): heads `h0..h0 + n` are inside `p` and `acc`, and the values
        // hold `len` rows, checked above.
        unsafe {
            let (pp, ap) = (p.as_ptr().add(h0 * len), acc.as_mut_ptr().add(h0 * hd));
            let v = values.as_ptr();
            match n {
                1 => values_heads::<1>(pp, len, v, pairs, len, ap),
                2 => values_heads::<2>(pp, len, v, pairs, len, ap),
                3 => values_heads::<3>(pp, len, v, pairs, len, ap),
                _ => values_heads::<4>(pp, len, v, pairs, len, ap),
            }
        }
        h0 += n;
    }
}

/// The AVX2 counterpart of [`scores_heads`], for CPUs without AVX-512 VNNI: one position at
/// a time, each key block's bytes multiplied with up to four heads' (`maddubs` on the block's
/// magnitudes and the query bytes with the block's signs, then `madd`), the eight integer sums
/// (four heads, two blocks) gathered with horizontal adds, then scaled by the key's and the
/// query's block scales and summed block after block, four heads in one register.
///
/// # Safety
/// As [`scores_heads`]; the CPU has AVX2, FMA and F16C.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_heads_avx2<const H: usize>(
    k: *const u8,
    pairs: usize,
    len: usize,
    qs: *const i8,
    qd: *const f32,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
) {
    let rb = pairs * PAIR;
    let hd = pairs * 64;
    let ones = _mm256_set1_epi16(1);
    // Per chunk: the queries' bytes of each head and block (zero for heads past `H`), and
    // their scales laid out as the sums are: lane `h` block 0, lane `4 + h` block 1.
    let mut qv = [[[_mm256_setzero_si256(); 2]; 4]; MAX_PAIRS];
    let mut dq = [_mm256_setzero_ps(); MAX_PAIRS];
    for c in 0..pairs {
        let mut scales = [0f32; 8];
        for h in 0..H {
            for b in 0..2 {
                // SAFETY: head `h`'s bytes and scales of chunk `c` are inside `qs` and `qd`.
                unsafe {
                    qv[c][h][b] = _mm256_loadu_si256(qs.add(h * hd + 64 * c + 32 * b).cast());
                    scales[4 * b + h] = *qd.add(h * 2 * pairs + 2 * c + b);
                }
            }
        }
        // SAFETY: `scales` is 8 long.
        dq[c] = unsafe { _mm256_loadu_ps(scales.as_ptr()) };
    }
    for j in 0..len {
        _mm_prefetch::<_MM_HINT_T1>(k.wrapping_add((j + PREFETCH_ROWS) * rb).cast());
        _mm_prefetch::<_MM_HINT_T1>(k.wrapping_add((j + PREFETCH_ROWS) * rb + rb - 1).cast());
        let mut s = _mm_setzero_ps();
        for c in 0..pairs {
            // SAFETY: row `j < len`, bytes `c * PAIR..(c + 1) * PAIR` are inside the keys.
            let (sums, dk) = unsafe {
                let row = k.add(j * rb + c * PAIR);
                let mut v = [_mm256_setzero_si256(); 8];
                for b in 0..2 {
                    let block = row.add(b * Q8_0_BYTES);
                    let kv = _mm256_loadu_si256(block.add(2).cast());
                    let mag = _mm256_abs_epi8(kv);
                    for h in 0..H {
                        let signed = _mm256_sign_epi8(qv[c][h][b], kv);
                        v[4 * b + h] = _mm256_madd_epi16(_mm256_maddubs_epi16(mag, signed), ones);
                    }
                }
                let d0 = block_scale(row);
                let d1 = block_scale(row.add(Q8_0_BYTES));
                (hsum8(&v), _mm256_set_m128(_mm_set1_ps(d1), _mm_set1_ps(d0)))
            };
            let prod = _mm256_mul_ps(dk, dq[c]);
            let sf = _mm256_cvtepi32_ps(sums);
            s = _mm_fmadd_ps(_mm256_castps256_ps128(prod), _mm256_castps256_ps128(sf), s);
            s = _mm_fmadd_ps(
                _mm256_extractf128_ps::<1>(prod),
                _mm256_extractf128_ps::<1>(sf),
                s,
            );
        }
        let mut r = [0f32; 4];
        // SAFETY: `r` is 4 long.
        unsafe { _mm_storeu_ps(r.as_mut_ptr(), _mm_mul_ps(s, _mm_set1_ps(scale))) };
        for (h, &x) in r.iter().enumerate().take(H) {
            // SAFETY: position `j < len` of head `h` is inside `out`.
            unsafe { *out.add(h * out_stride + j) = x };
        }
    }
}

/// A Q8_0 block's f16 scale at `block`, as f32.
///
/// # Safety
/// `block` points at two readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_scale(block: *const u8) -> f32 {
    // SAFETY: the caller's two bytes.
    let bits = unsafe { block.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// The sums of each of eight vectors' eight lanes, in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8(v: &[__m256i; 8]) -> __m256i {
    let a = _mm256_hadd_epi32(v[0], v[1]);
    let b = _mm256_hadd_epi32(v[2], v[3]);
    let c = _mm256_hadd_epi32(v[4], v[5]);
    let d = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit half: vectors 0..4 (e) and 4..8 (f), each half's four lanes summed.
    let e = _mm256_hadd_epi32(a, b);
    let f = _mm256_hadd_epi32(c, d);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(e, f),
        _mm256_permute2x128_si256::<0x31>(e, f),
    )
}

/// [`q8_values_avx512`] with AVX2: 16 values of every head at a time over all positions (the
/// block's rows stay in L1 across the passes), `acc = fma(p · d, byte, acc)` in increasing
/// position, as [`values_heads`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_values_avx2(p: &[f32], values: &[u8], hd: usize, heads: usize, acc: &mut [f32]) {
    let blocks = hd / QK;
    let rb = blocks * Q8_0_BYTES;
    let len = p.len() / heads.max(1);
    assert!(
        hd.is_multiple_of(QK)
            && heads > 0
            && p.len() == heads * len
            && acc.len() == heads * hd
            && values.len() >= len * rb,
        "values, probabilities and sums do not match"
    );
    let v = values.as_ptr();
    for h0 in (0..heads).step_by(MAX_H) {
        let n = (heads - h0).min(MAX_H);
        for quarter in 0..hd / 16 {
            let (b, half) = (quarter / 2, quarter % 2);
            let mut a = [[_mm256_setzero_ps(); 2]; 4];
            for j in 0..len {
                if quarter == 0 {
                    let ahead = v.wrapping_add((j + PREFETCH_ROWS) * rb);
                    _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
                }
                // SAFETY: row `j < len` and its block `b` are inside the values; position `j`
                // of heads `h0..h0 + n` is inside `p`.
                unsafe {
                    let block = v.add(j * rb + b * Q8_0_BYTES);
                    let d = block_scale(block);
                    let bytes = block.add(2 + 16 * half);
                    let x0 =
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(bytes.cast())));
                    let x1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        bytes.add(8).cast(),
                    )));
                    for (i, ai) in a.iter_mut().enumerate().take(n) {
                        let w = _mm256_set1_ps(*p.get_unchecked((h0 + i) * len + j) * d);
                        ai[0] = _mm256_fmadd_ps(w, x0, ai[0]);
                        ai[1] = _mm256_fmadd_ps(w, x1, ai[1]);
                    }
                }
            }
            for (i, ai) in a.iter().enumerate().take(n) {
                let at = (h0 + i) * hd + 16 * quarter;
                // SAFETY: values `at..at + 16` are inside `acc` (head `h0 + i < heads`).
                unsafe {
                    _mm256_storeu_ps(acc.as_mut_ptr().add(at), ai[0]);
                    _mm256_storeu_ps(acc.as_mut_ptr().add(at + 8), ai[1]);
                }
            }
        }
    }
}
