//! Packed Q4_K, Q5_K and Q6_K (eight interleaved rows, see `kernels::packed`) by Q8_K
//! activations: each 32-bit lane is one row, so a super-block's integer sums, scales,
//! minimums and floats are 8-lane vectors and nothing is summed across lanes.
//!
//! With AVX-512 VNNI one `vpdpbusd` adds four quant-by-activation products per row; with AVX2
//! `vpmaddubsw` adds pairs into 16-bit lanes, which hold as many chunks' sums as cannot
//! overflow (a Q4_K sub-block's eight: 8 · 2 · 15 · 127 = 30480), and one `vpmaddwd` applies
//! the scale. Either way the integers are exact, so they are the scalar reference's, and the
//! float epilogue is its expression in its order.

use std::arch::x86_64::*;

use super::{f32_at, has_vnni, hsum};
use crate::kernels::packed::{
    PACK_ROWS, PACK_TOKENS, PackedFn, Q4_0_X8_BYTES, Q4_K_X8_BYTES, Q4_K_X8_D, Q4_K_X8_DMIN,
    Q4_K_X8_MINS, Q4_K_X8_QUANTS, Q4_K_X8_SCALES, Q5_K_X8_BYTES, Q5_K_X8_HIGH, Q6_K_X8_BYTES,
    Q6_K_X8_D, Q6_K_X8_HIGH, Q6_K_X8_LOW, Q6_K_X8_SCALES, Q8_0_X8_BYTES,
};
use crate::quant::{GgmlType, Q8_0_BYTES, Q8_K_BYTES, QK, QK_K};

/// The packed kernel for `ty`; the CPU has AVX2.
pub(super) fn packed_fn(ty: GgmlType) -> Option<PackedFn> {
    match ty {
        GgmlType::Q8_0 if has_vnni() => Some(q8_0_x8_vnni),
        GgmlType::Q4_0 if has_vnni() => Some(q4_0_x8_vnni),
        GgmlType::Q4_K if has_vnni() => Some(q4_k_x8_vnni),
        GgmlType::Q4_K => Some(q4_k_x8_avx2),
        GgmlType::Q5_K if has_vnni() => Some(q5_k_x8_vnni),
        GgmlType::Q5_K => Some(q5_k_x8_avx2),
        GgmlType::Q6_K if has_vnni() => Some(q6_k_x8_vnni),
        GgmlType::Q6_K => Some(q6_k_x8_avx2),
        _ => None,
    }
}

type Out = [f32; PACK_ROWS * PACK_TOKENS];

/// Blocks of `qk` values per row, after checking the group (`group` bytes per block) and the
/// `nt` activation rows (`act` bytes per block) hold exactly `n` values each.
fn check(
    w: &[u8],
    a: &[u8],
    n: usize,
    nt: usize,
    (qk, group, act): (usize, usize, usize),
) -> usize {
    let nb = n / qk;
    assert!(
        n.is_multiple_of(qk)
            && (1..=PACK_TOKENS).contains(&nt)
            && w.len() == nb * group
            && a.len() == nt * nb * act,
        "packed sizes do not match n = {n}, {nt} tokens"
    );
    nb
}

/// One packed kernel's four entry points: with VNNI or AVX2, each for 1 to 4 tokens.
macro_rules! entry_points {
    ($vnni:ident, $avx2:ident, $vnni_n:ident, $avx2_n:ident, $body:ident, $group:expr) => {
        fn $vnni(w: &[u8], a: &[u8], n: usize, nt: usize, out: &mut Out) {
            let nb = check(w, a, n, nt, (QK_K, $group, Q8_K_BYTES));
            let (w, a) = (w.as_ptr(), a.as_ptr());
            // SAFETY: `packed_fn` hands this out only when the CPU has AVX-512 VNNI (with
            // AVX2); `check` proved the slices hold the group's and the tokens' super-blocks.
            unsafe {
                match nt {
                    1 => $vnni_n::<1>(w, a, nb, out),
                    2 => $vnni_n::<2>(w, a, nb, out),
                    3 => $vnni_n::<3>(w, a, nb, out),
                    _ => $vnni_n::<4>(w, a, nb, out),
                }
            }
        }

        fn $avx2(w: &[u8], a: &[u8], n: usize, nt: usize, out: &mut Out) {
            let nb = check(w, a, n, nt, (QK_K, $group, Q8_K_BYTES));
            let (w, a) = (w.as_ptr(), a.as_ptr());
            // SAFETY: `packed_fn` hands this out only when the CPU has AVX2, FMA and F16C;
            // `check` proved the slices hold the group's and the tokens' super-blocks.
            unsafe {
                match nt {
                    1 => $avx2_n::<1>(w, a, nb, out),
                    2 => $avx2_n::<2>(w, a, nb, out),
                    3 => $avx2_n::<3>(w, a, nb, out),
                    _ => $avx2_n::<4>(w, a, nb, out),
                }
            }
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
        unsafe fn $vnni_n<const NT: usize>(w: *const u8, a: *const u8, nb: usize, out: &mut Out) {
            // SAFETY: the caller's promise; the body's intrinsics need exactly these features.
            unsafe { $body::<NT, true>(w, a, nb, out) }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $avx2_n<const NT: usize>(w: *const u8, a: *const u8, nb: usize, out: &mut Out) {
            // SAFETY: the caller's promise; with `VNNI` false the body needs only these.
            unsafe { $body::<NT, false>(w, a, nb, out) }
        }
    };
}

entry_points!(
    q4_k_x8_vnni,
    q4_k_x8_avx2,
    q4_k_x8_vnni_n,
    q4_k_x8_avx2_n,
    q4_k_x8,
    Q4_K_X8_BYTES
);
entry_points!(
    q5_k_x8_vnni,
    q5_k_x8_avx2,
    q5_k_x8_vnni_n,
    q5_k_x8_avx2_n,
    q5_k_x8,
    Q5_K_X8_BYTES
);
entry_points!(
    q6_k_x8_vnni,
    q6_k_x8_avx2,
    q6_k_x8_vnni_n,
    q6_k_x8_avx2_n,
    q6_k_x8,
    Q6_K_X8_BYTES
);

/// The four activation bytes at `p`, in every 32-bit lane.
#[inline(always)]
unsafe fn broadcast4(p: *const u8) -> __m256i {
    // SAFETY: the caller points `p` at four readable bytes; AVX is enabled by every caller.
    unsafe { _mm256_set1_epi32(p.cast::<i32>().read_unaligned()) }
}

/// `NT` tokens by a packed Q4_K group's eight rows over `nb` super-blocks.
///
/// # Safety
/// As [`k4_x8`].
#[inline(always)]
unsafe fn q4_k_x8<const NT: usize, const VNNI: bool>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Out,
) {
    // SAFETY: the caller's promise.
    unsafe { k4_x8::<NT, VNNI, false>(w, a, nb, out) }
}

/// `NT` tokens by a packed Q5_K group's eight rows over `nb` super-blocks.
///
/// # Safety
/// As [`k4_x8`].
#[inline(always)]
unsafe fn q5_k_x8<const NT: usize, const VNNI: bool>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Out,
) {
    // SAFETY: the caller's promise.
    unsafe { k4_x8::<NT, VNNI, true>(w, a, nb, out) }
}

/// `NT` tokens by a packed Q4_K (with `FIVE`, Q5_K) group's eight rows over `nb`
/// super-blocks. Inlined into a caller with AVX2, FMA and F16C, and with `VNNI` also AVX-512
/// VNNI, VL and BW.
///
/// # Safety
/// `w` points at `nb` packed groups, `a` at `NT` rows of `nb` Q8_K blocks; the CPU has the
/// features above.
#[inline(always)]
unsafe fn k4_x8<const NT: usize, const VNNI: bool, const FIVE: bool>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Out,
) {
    let row = nb * Q8_K_BYTES;
    let group = if FIVE { Q5_K_X8_BYTES } else { Q4_K_X8_BYTES };
    // Chunks whose 16-bit pair sums fit before the scale is applied (AVX2): a sub-block's
    // eight with four-bit quants (8 · 2 · 15 · 127), four with five-bit ones.
    let fold_every = if FIVE { 4 } else { 8 };
    // SAFETY: every pointer below stays inside the group's `nb` blocks of `group` bytes and
    // the `NT` activation rows of `nb` blocks of `Q8_K_BYTES`, at the offsets the layouts
    // define (quant chunks at 160 + 32c, scales at 32 + 8j, minimums at 96 + 16p, Q5_K's
    // fifth bits at 1184 + 32k; the activations' quants at 4.., partial sums at 260..292).
    unsafe {
        let mask = _mm256_set1_epi8(0x0F);
        let bit4 = _mm256_set1_epi8(0x10);
        let mut total = [_mm256_set1_ps(-0.0); NT];
        for b in 0..nb {
            let g = w.add(b * group);
            let at: [*const u8; NT] = std::array::from_fn(|t| a.add(t * row + b * Q8_K_BYTES));
            // Row r's Σ_j scale_j · Σ q·a in lane r, per token.
            let mut sum = [_mm256_setzero_si256(); NT];
            for i in 0..4 {
                // Sub-blocks 2i (low nibbles) and 2i + 1 (high nibbles).
                let scales = g.add(Q4_K_X8_SCALES + 16 * i);
                // With AVX2, each row's scale in both 16-bit halves of its lane.
                let dup = |p: *const u8| {
                    let s = _mm_loadl_epi64(p.cast());
                    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s))
                };
                let (dl, dh) = if VNNI {
                    (_mm256_setzero_si256(), _mm256_setzero_si256())
                } else {
                    (dup(scales), dup(scales.add(8)))
                };
                let mut lo = [_mm256_setzero_si256(); NT];
                let mut hi = [_mm256_setzero_si256(); NT];
                for k in 0..8 {
                    let q = _mm256_loadu_si256(g.add(Q4_K_X8_QUANTS + 32 * (8 * i + k)).cast());
                    let mut ql = _mm256_and_si256(q, mask);
                    let mut qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                    if FIVE {
                        // Bits 2i and 2i + 1 of the fifth-bit chunk, moved to bit 4.
                        let hb = _mm256_loadu_si256(g.add(Q5_K_X8_HIGH + 32 * k).cast());
                        let (l, h) = match i {
                            0 => (_mm256_slli_epi16(hb, 4), _mm256_slli_epi16(hb, 3)),
                            1 => (_mm256_slli_epi16(hb, 2), _mm256_slli_epi16(hb, 1)),
                            2 => (hb, _mm256_srli_epi16(hb, 1)),
                            _ => (_mm256_srli_epi16(hb, 2), _mm256_srli_epi16(hb, 3)),
                        };
                        ql = _mm256_or_si256(ql, _mm256_and_si256(l, bit4));
                        qh = _mm256_or_si256(qh, _mm256_and_si256(h, bit4));
                    }
                    for t in 0..NT {
                        let al = broadcast4(at[t].add(4 + 64 * i + 4 * k));
                        let ah = broadcast4(at[t].add(36 + 64 * i + 4 * k));
                        if VNNI {
                            lo[t] = _mm256_dpbusd_epi32(lo[t], ql, al);
                            hi[t] = _mm256_dpbusd_epi32(hi[t], qh, ah);
                        } else {
                            lo[t] = _mm256_add_epi16(lo[t], _mm256_maddubs_epi16(ql, al));
                            hi[t] = _mm256_add_epi16(hi[t], _mm256_maddubs_epi16(qh, ah));
                        }
                    }
                    if !VNNI && (k + 1) % fold_every == 0 {
                        for t in 0..NT {
                            let s = _mm256_add_epi32(
                                _mm256_madd_epi16(lo[t], dl),
                                _mm256_madd_epi16(hi[t], dh),
                            );
                            sum[t] = _mm256_add_epi32(sum[t], s);
                            lo[t] = _mm256_setzero_si256();
                            hi[t] = _mm256_setzero_si256();
                        }
                    }
                }
                if VNNI {
                    let sl = _mm256_cvtepu8_epi32(_mm_loadl_epi64(scales.cast()));
                    let sh = _mm256_cvtepu8_epi32(_mm_loadl_epi64(scales.add(8).cast()));
                    for t in 0..NT {
                        let s = _mm256_add_epi32(
                            _mm256_mullo_epi32(lo[t], sl),
                            _mm256_mullo_epi32(hi[t], sh),
                        );
                        sum[t] = _mm256_add_epi32(sum[t], s);
                    }
                }
            }
            // Row r's minimums 2p and 2p + 1 in the 16-bit halves of lane r.
            let mins: [__m256i; 4] = std::array::from_fn(|p| {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(g.add(Q4_K_X8_MINS + 16 * p).cast()))
            });
            let d = _mm256_cvtph_ps(_mm_loadu_si128(g.add(Q4_K_X8_D).cast()));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(g.add(Q4_K_X8_DMIN).cast()));
            for t in 0..NT {
                // The activations' sums of sub-blocks: [s0 + s1, s2 + s3, ..] of the 16 sums
                // of 16 values, pairs of sub-blocks in 32-bit lanes.
                let bs = at[t].add(4 + QK_K);
                let pairs = _mm_hadd_epi16(
                    _mm_loadu_si128(bs.cast()),
                    _mm_loadu_si128(bs.add(16).cast()),
                );
                let mut pw = [0i32; 4];
                _mm_storeu_si128(pw.as_mut_ptr().cast(), pairs);
                let mut m = _mm256_setzero_si256();
                for (p, mp) in mins.iter().enumerate() {
                    m = _mm256_add_epi32(m, _mm256_madd_epi16(*mp, _mm256_set1_epi32(pw[p])));
                }
                let ad = _mm256_set1_ps(f32_at(at[t]));
                // The scalar reference's `ad * d * sum as f32 - ad * dmin * mins as f32`.
                let x = _mm256_mul_ps(_mm256_mul_ps(ad, d), _mm256_cvtepi32_ps(sum[t]));
                let y = _mm256_mul_ps(_mm256_mul_ps(ad, dmin), _mm256_cvtepi32_ps(m));
                total[t] = _mm256_add_ps(total[t], _mm256_sub_ps(x, y));
            }
        }
        for (t, v) in total.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), *v);
        }
    }
}

/// `NT` tokens by a packed Q6_K group's eight rows over `nb` super-blocks: the 6-bit quants
/// `u = q + 32` (0..64) by the activations with unsigned-by-signed products, then
/// `Σ_j scale_j · Σ q·a = Σ_j scale_j · Σ u·a − 32 · Σ_j scale_j · Σ a`, whose last sums are
/// the activations' 16 partial sums. Exact integers, so the scalar reference's.
///
/// # Safety
/// As [`q4_k_x8`], with packed Q6_K groups.
#[inline(always)]
unsafe fn q6_k_x8<const NT: usize, const VNNI: bool>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Out,
) {
    let row = nb * Q8_K_BYTES;
    // SAFETY: every pointer below stays inside the group's `nb` blocks of `Q6_K_X8_BYTES`
    // and the `NT` activation rows of `nb` blocks of `Q8_K_BYTES`, at the offsets the layouts
    // define (low quant chunks at 144 + 32c, high-bit chunks at 1168 + 32e, scales at
    // 16 + 8j; the activations' quants at 4.., partial sums at 260..292).
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let m30 = _mm256_set1_epi8(0x30);
        let mut total = [_mm256_set1_ps(-0.0); NT];
        for b in 0..nb {
            let g = w.add(b * Q6_K_X8_BYTES);
            let at: [*const u8; NT] = std::array::from_fn(|t| a.add(t * row + b * Q8_K_BYTES));
            let mut sum = [_mm256_setzero_si256(); NT];
            for i in 0..4 {
                // Sub-blocks 4i + s for s in 0..4: chunks k < 4 hold sub-blocks 4i (low
                // nibbles) and 4i + 2 (high), chunks k >= 4 sub-blocks 4i + 1 and 4i + 3.
                let mut acc = [[_mm256_setzero_si256(); NT]; 4];
                for m in 0..4 {
                    let hb = _mm256_loadu_si256(g.add(Q6_K_X8_HIGH + 32 * (4 * i + m)).cast());
                    // The top bits of the four quant registers this chunk serves, at bits 4-5.
                    let tops = [
                        _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30),
                        _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30),
                        _mm256_and_si256(hb, m30),
                        _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30),
                    ];
                    for kk in 0..2 {
                        let k = 2 * m + kk;
                        let q = _mm256_loadu_si256(g.add(Q6_K_X8_LOW + 32 * (8 * i + k)).cast());
                        let ul = _mm256_or_si256(_mm256_and_si256(q, m4), tops[2 * kk]);
                        let uh = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                            tops[2 * kk + 1],
                        );
                        let (sl, sh) = (k / 4, 2 + k / 4);
                        for t in 0..NT {
                            let al = broadcast4(at[t].add(4 + 64 * i + 4 * k));
                            let ah = broadcast4(at[t].add(36 + 64 * i + 4 * k));
                            if VNNI {
                                acc[sl][t] = _mm256_dpbusd_epi32(acc[sl][t], ul, al);
                                acc[sh][t] = _mm256_dpbusd_epi32(acc[sh][t], uh, ah);
                            } else {
                                // Two products per 16-bit lane, at most 2 · 63 · 127: two
                                // chunks' sums fit, so they are scaled after every second.
                                acc[sl][t] =
                                    _mm256_add_epi16(acc[sl][t], _mm256_maddubs_epi16(ul, al));
                                acc[sh][t] =
                                    _mm256_add_epi16(acc[sh][t], _mm256_maddubs_epi16(uh, ah));
                            }
                        }
                    }
                    // Sub-blocks 4i + m / 2 and 4i + 2 + m / 2 have had chunks 2m and 2m + 1.
                    let (sl, sh) = (m / 2, 2 + m / 2);
                    if !VNNI {
                        for s in [sl, sh] {
                            let sc = g.add(Q6_K_X8_SCALES + 8 * (4 * i + s));
                            let v = _mm_loadl_epi64(sc.cast());
                            let dup = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(v, v));
                            for t in 0..NT {
                                sum[t] =
                                    _mm256_add_epi32(sum[t], _mm256_madd_epi16(acc[s][t], dup));
                                acc[s][t] = _mm256_setzero_si256();
                            }
                        }
                    } else if m % 2 == 1 {
                        for s in [sl, sh] {
                            let sc = g.add(Q6_K_X8_SCALES + 8 * (4 * i + s));
                            let v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc.cast()));
                            for t in 0..NT {
                                sum[t] = _mm256_add_epi32(sum[t], _mm256_mullo_epi32(acc[s][t], v));
                            }
                        }
                    }
                }
            }
            // Row r's scales 2p and 2p + 1 in the 16-bit halves of lane r.
            let pairs: [__m256i; 8] = std::array::from_fn(|p| {
                let s0 = _mm_loadl_epi64(g.add(Q6_K_X8_SCALES + 16 * p).cast());
                let s1 = _mm_loadl_epi64(g.add(Q6_K_X8_SCALES + 16 * p + 8).cast());
                _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(s0, s1))
            });
            let d = _mm256_cvtph_ps(_mm_loadu_si128(g.add(Q6_K_X8_D).cast()));
            for t in 0..NT {
                // The activations' partial sums 2p and 2p + 1 are the 32-bit word p at 260.
                let mut bias = _mm256_setzero_si256();
                for (p, sp) in pairs.iter().enumerate() {
                    let bs = broadcast4(at[t].add(4 + QK_K + 4 * p));
                    bias = _mm256_add_epi32(bias, _mm256_madd_epi16(*sp, bs));
                }
                let s = _mm256_sub_epi32(sum[t], _mm256_slli_epi32(bias, 5));
                let ad = _mm256_set1_ps(f32_at(at[t]));
                // The scalar reference's `ad * d * sum as f32`.
                let x = _mm256_mul_ps(_mm256_mul_ps(ad, d), _mm256_cvtepi32_ps(s));
                total[t] = _mm256_add_ps(total[t], x);
            }
        }
        for (t, v) in total.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), *v);
        }
    }
}

/// Packed Q8_0 by Q8_0 activations, for `nt` tokens, with AVX-512 VNNI. (Without it the
/// weights are not packed: `vpmaddubsw` would saturate on unsigned quants up to 255.)
fn q8_0_x8_vnni(w: &[u8], a: &[u8], n: usize, nt: usize, out: &mut Out) {
    let nb = check(w, a, n, nt, (QK, Q8_0_X8_BYTES, Q8_0_BYTES));
    let (w, a) = (w.as_ptr(), a.as_ptr());
    // SAFETY: `packed_fn` hands this out only when the CPU has AVX-512 VNNI (with AVX2);
    // `check` proved the slices hold the group's and the tokens' `nb` blocks.
    unsafe {
        match nt {
            1 => q8_0_x8_vnni_n::<1>(w, a, nb, out),
            2 => q8_0_x8_vnni_n::<2>(w, a, nb, out),
            3 => q8_0_x8_vnni_n::<3>(w, a, nb, out),
            _ => q8_0_x8_vnni_n::<4>(w, a, nb, out),
        }
    }
}

/// `NT` tokens by a packed Q8_0 group's eight rows over `nb` blocks, each output by the steps
/// of the row-at-a-time kernel (`dot_q8_0_vnni`): per block the same eight lane sums of four
/// products (here `Σ (w + 128)·a − 128 · Σ a`, the same integers), converted, multiplied by
/// the same `d_w · d_a` and added lane by lane, then the same horizontal sum; so bit for bit
/// its result. One token (decode): the eight rows' 8-lane sums in eight registers. More:
/// two rows per 16-lane register (adjacent in the packed block, so one load), as the
/// unpacked tile does.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn q8_0_x8_vnni_n<const NT: usize>(w: *const u8, a: *const u8, nb: usize, out: &mut Out) {
    if NT > 1 {
        // SAFETY: the caller's promise.
        unsafe { pairs_32::<NT, false>(w, a, nb, out) };
        return;
    }
    let plus128 = _mm256_set1_epi8(-128);
    let mut acc = [_mm256_setzero_ps(); PACK_ROWS];
    for b in 0..nb {
        // SAFETY: block `b < nb` of the group (272 bytes: scales at 0, row r's quants at
        // 16 + 32r) and of the activation row (34 bytes: scale at 0, quants at 2) is in
        // bounds (checked by the wrapper).
        unsafe {
            let g = w.add(b * Q8_0_X8_BYTES);
            let ab = a.add(b * Q8_0_BYTES);
            let qa = _mm256_loadu_si256(ab.add(2).cast());
            let bias = _mm256_dpbusd_epi32(_mm256_setzero_si256(), plus128, qa);
            let da = _mm256_cvtph_ps(_mm_set1_epi16(ab.cast::<i16>().read_unaligned()));
            // Lane r: d_w of row r times d_a, the one product the row kernel forms.
            let d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(g.cast())), da);
            for (r, acc) in acc.iter_mut().enumerate() {
                let qw = _mm256_loadu_si256(g.add(16 + 32 * r).cast());
                let sum =
                    _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), qw, qa), bias);
                let dr = _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(r as i32));
                *acc = _mm256_fmadd_ps(dr, _mm256_cvtepi32_ps(sum), *acc);
            }
        }
    }
    for (r, v) in acc.iter().enumerate() {
        out[r] = hsum(*v);
    }
}

/// Packed Q4_0 by Q8_0 activations, for `nt` tokens, with AVX-512 VNNI.
fn q4_0_x8_vnni(w: &[u8], a: &[u8], n: usize, nt: usize, out: &mut Out) {
    let nb = check(w, a, n, nt, (QK, Q4_0_X8_BYTES, Q8_0_BYTES));
    let (w, a) = (w.as_ptr(), a.as_ptr());
    // SAFETY: `packed_fn` hands this out only when the CPU has AVX-512 VNNI (with AVX2);
    // `check` proved the slices hold the group's and the tokens' `nb` blocks.
    unsafe {
        match nt {
            1 => pairs_32::<1, true>(w, a, nb, out),
            2 => pairs_32::<2, true>(w, a, nb, out),
            3 => pairs_32::<3, true>(w, a, nb, out),
            _ => pairs_32::<4, true>(w, a, nb, out),
        }
    }
}

/// `NT` tokens by a packed Q8_0 group (with `NIB`, Q4_0) over `nb` blocks, rows `2p` and
/// `2p + 1` in lanes 0..8 and 8..16 of one register per token, each half the row kernel's
/// eight lanes: per block `Σ u·a − c · Σ a` over each lane's four bytes with `u` the unsigned
/// quant (Q8_0's plus `c` = 128; Q4_0's nibble, whose value is `u − c` with `c` = 8), the same
/// integers as the row kernel's signed products, then its conversion, scale product
/// `d_w · d_a` and multiply-add, and at the end its horizontal sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
unsafe fn pairs_32<const NT: usize, const NIB: bool>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Out,
) {
    let row = nb * Q8_0_BYTES;
    let group = if NIB { Q4_0_X8_BYTES } else { Q8_0_X8_BYTES };
    let plus128 = _mm512_set1_epi8(if NIB { 8 } else { -128 });
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm512_setzero_ps(); NT]; PACK_ROWS / 2];
    // Row 2p's scale in lanes 0..8, row 2p + 1's in lanes 8..16.
    let pick: [__m512i; PACK_ROWS / 2] = std::array::from_fn(|p| {
        let (r0, r1) = (2 * p as i32, 2 * p as i32 + 1);
        _mm512_setr_epi32(
            r0, r0, r0, r0, r0, r0, r0, r0, r1, r1, r1, r1, r1, r1, r1, r1,
        )
    });
    let mut da = [0.0f32; NT];
    for b in 0..nb {
        // SAFETY: block `b < nb` of the group (`group` bytes: scales at 0, quants at 16) and
        // of each of the `NT` activation rows (34 bytes: scale at 0, quants at 2) is in
        // bounds (checked by the wrapper).
        unsafe {
            let g = w.add(b * group);
            let dw = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128(g.cast())));
            let mut qa = [_mm512_setzero_si512(); NT];
            let mut bias = [_mm512_setzero_si512(); NT];
            for t in 0..NT {
                let ab = a.add(t * row + b * Q8_0_BYTES);
                qa[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256(ab.add(2).cast()));
                bias[t] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), plus128, qa[t]);
                da[t] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                    ab.cast::<i16>().read_unaligned(),
                ))));
            }
            for (p, accp) in acc.iter_mut().enumerate() {
                let x = if NIB {
                    // Rows 2p and 2p + 1's 16 bytes each: low nibbles are values 0..16, high
                    // ones 16..32; put each row's in its 32 bytes, in value order.
                    let q = _mm256_loadu_si256(g.add(16 + 32 * p).cast());
                    let lo = _mm256_and_si256(q, mask);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
                    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                    _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
                } else {
                    _mm512_loadu_si512(g.add(16 + 64 * p).cast())
                };
                let dp = _mm512_permutexvar_ps(pick[p], dw);
                for t in 0..NT {
                    let sum = _mm512_sub_epi32(
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, qa[t]),
                        bias[t],
                    );
                    let d = _mm512_mul_ps(dp, _mm512_set1_ps(da[t]));
                    accp[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sum), accp[t]);
                }
            }
        }
    }
    for (p, accp) in acc.iter().enumerate() {
        for (t, v) in accp.iter().enumerate() {
            let lo = _mm512_castps512_ps256(*v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*v)));
            out[t * PACK_ROWS + 2 * p] = hsum(lo);
            out[t * PACK_ROWS + 2 * p + 1] = hsum(hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::packed::pack_layout;
    use crate::quant::{self, Q4_K_BYTES, Q6_K_BYTES};

    fn xorshift(s: &mut u32) -> u32 {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        *s
    }

    /// `rows` random rows of `ty` (Q4_K, Q5_K, Q6_K, Q8_0 or Q4_0) of `nb` blocks with sane scales,
    /// and `nt` rows of its activation type quantized from random floats.
    fn data(ty: GgmlType, rows: usize, nt: usize, nb: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        let block = ty.type_size();
        let mut w: Vec<u8> = (0..rows * nb * block)
            .map(|_| (xorshift(&mut s) >> 24) as u8)
            .collect();
        for (i, b) in w.chunks_exact_mut(block).enumerate() {
            let d = half::f16::from_f32(0.001 + 0.0007 * (i % 11) as f32).to_bits();
            let dmin = half::f16::from_f32(0.0005 + 0.0003 * (i % 7) as f32).to_bits();
            if matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0) {
                b[..2].copy_from_slice(&d.to_le_bytes());
            } else if ty == GgmlType::Q6_K {
                b[208..210].copy_from_slice(&d.to_le_bytes());
            } else {
                b[..2].copy_from_slice(&d.to_le_bytes());
                b[2..4].copy_from_slice(&dmin.to_le_bytes());
            }
        }
        let act = ty.vec_dot_type().expect("a weight type");
        let x: Vec<f32> = (0..nt * nb * act.block_size())
            .map(|_| (xorshift(&mut s) as f32 / u32::MAX as f32 - 0.5) * 4.0)
            .collect();
        let mut a = vec![0u8; nt * nb * act.type_size()];
        crate::kernels::quantize_row(act, &x, &mut a).expect("whole blocks");
        (w, a)
    }

    #[test]
    fn packed_kernels_equal_the_row_kernels_bit_for_bit() {
        if !super::super::has_avx2() {
            eprintln!("this CPU has no AVX2: no packed kernel runs here");
            return;
        }
        let mut kernels: Vec<(GgmlType, &str, PackedFn)> = vec![
            (GgmlType::Q4_K, "avx2", q4_k_x8_avx2),
            (GgmlType::Q5_K, "avx2", q5_k_x8_avx2),
            (GgmlType::Q6_K, "avx2", q6_k_x8_avx2),
        ];
        if has_vnni() {
            kernels.push((GgmlType::Q8_0, "vnni", q8_0_x8_vnni));
            kernels.push((GgmlType::Q4_0, "vnni", q4_0_x8_vnni));
            kernels.push((GgmlType::Q4_K, "vnni", q4_k_x8_vnni));
            kernels.push((GgmlType::Q5_K, "vnni", q5_k_x8_vnni));
            kernels.push((GgmlType::Q6_K, "vnni", q6_k_x8_vnni));
        }
        assert_eq!(Q4_K_BYTES, GgmlType::Q4_K.type_size());
        assert_eq!(Q6_K_BYTES, GgmlType::Q6_K.type_size());
        for (ty, name, f) in &kernels {
            for (seed, nb) in [(1, 1), (2, 3), (3, 8), (4, 11)] {
                let n = nb * ty.block_size();
                let (w, a) = data(*ty, PACK_ROWS, PACK_TOKENS, nb, seed);
                let p = pack_layout(*ty, &w, PACK_ROWS, n).expect("packs");
                let act = ty.vec_dot_type().expect("a weight type");
                let (wb, ab) = (nb * ty.type_size(), nb * act.type_size());
                // The row-at-a-time kernel, itself checked against the scalar reference.
                let row_kernel = crate::kernels::dot_fn(*ty);
                for nt in 1..=PACK_TOKENS {
                    let mut out = [f32::NAN; PACK_ROWS * PACK_TOKENS];
                    f(&p, &a[..nt * ab], n, nt, &mut out);
                    for t in 0..nt {
                        for r in 0..PACK_ROWS {
                            let (wr, ar) = (&w[r * wb..][..wb], &a[t * ab..][..ab]);
                            let want = row_kernel(wr, ar, n);
                            if ty.block_size() == QK_K {
                                let scalar = quant::vec_dot(*ty, wr, ar, n).expect("row sizes");
                                assert_eq!(want.to_bits(), scalar.to_bits(), "{ty} row kernel");
                            }
                            let got = out[t * PACK_ROWS + r];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{ty} {name}, {nt} tokens, row {r} token {t}, {nb} super-blocks: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
