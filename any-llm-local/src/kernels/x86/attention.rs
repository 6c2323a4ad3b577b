//! Attention over an f16 (or Q8_0) KV cache with AVX-512, and the AVX2 kernels for CPUs
//! without it in [`avx2`]: the scores and the weighted value slots of `kernels::attn_scores`
//! and `kernels::attn_value_slots`, and the lane-ordered dot products behind them. Every
//! addition is the one the portable code makes, in the same order.

use std::arch::x86_64::*;

use super::{PREFETCH_ROWS, has_avx2, has_avx512, hsum};
use crate::kernels::{KvRows, Tier};
use crate::quant::Q8_0_BYTES;

mod avx2;

/// `kernels::dot_f16_lanes` with AVX2; `None` where the CPU has no AVX2 or the lengths are
/// not equal multiples of 16.
pub(in crate::kernels) fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> Option<f32> {
    if has_avx2() && k.len().is_multiple_of(16) && k.len() == q.len() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); lengths are equal
        // multiples of 16.
        return Some(unsafe { dot_f16_lanes_avx2(lanes64, k, q) });
    }
    None
}

/// `kernels::dot_f32_lanes` with AVX2; `None` where the CPU has no AVX2 or the lengths are
/// not equal multiples of 16.
pub(in crate::kernels) fn dot_f32_lanes(lanes64: bool, k: &[f32], q: &[f32]) -> Option<f32> {
    if has_avx2() && k.len().is_multiple_of(16) && k.len() == q.len() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above); lengths are equal
        // multiples of 16.
        return Some(unsafe { dot_f32_lanes_avx2(lanes64, k, q) });
    }
    None
}

/// `kernels::attn_scores` with AVX-512 (`Tier::Best` on a CPU that has it) or AVX2; `false`
/// where the CPU has neither or the shapes do not fit.
pub(in crate::kernels) fn attn_scores(
    tier: Tier,
    lanes64: bool,
    keys: KvRows<'_>,
    q: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    let avx512 = tier == Tier::Best && has_avx512();
    if !(avx512 || has_avx2()) || !scores_fit(keys, q, hd, out) {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C, and with `avx512` AVX-512F (checked just
    // above).
    unsafe { scores(avx512, lanes64, keys, q, hd, scale, out) };
    true
}

/// `kernels::attn_value_slots` with AVX-512 (`Tier::Best` on a CPU that has it) or AVX2;
/// `false` where the CPU has neither or the shapes do not fit.
#[allow(clippy::too_many_arguments)]
pub(in crate::kernels) fn attn_value_slots(
    tier: Tier,
    lanes64: bool,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) -> bool {
    let avx512 = tier == Tier::Best && has_avx512();
    if !(avx512 || has_avx2()) || !value_slots_fit(lanes64, p, values, hd, heads, &slots, acc) {
        return false;
    }
    // SAFETY: the CPU has AVX2, FMA and F16C, and with `avx512` AVX-512F (checked just
    // above).
    unsafe { value_slots(avx512, lanes64, p, values, hd, heads, slots, acc) };
    true
}

/// `kernels::fold_slots` with AVX-512; `false` where the CPU has none or `out` is not a
/// multiple of 16 long.
pub(in crate::kernels) fn fold_slots(rows: usize, acc: &mut [f32], out: &mut [f32]) -> bool {
    if has_avx512() && out.len().is_multiple_of(16) {
        // SAFETY: the CPU has AVX-512F, AVX2, FMA and F16C (checked just above).
        unsafe { fold_slots_avx512(rows, acc, out) };
        return true;
    }
    false
}

/// Whether the score kernels take these shapes: head width 64 or 128, whole heads of
/// queries, and keys for every score.
fn scores_fit(keys: KvRows<'_>, q: &[f32], hd: usize, out: &[f32]) -> bool {
    let heads = q.len() / hd.max(1);
    (hd == 64 || hd == 128)
        && heads > 0
        && q.len() == heads * hd
        && out.len().is_multiple_of(heads)
        && keys.rows(hd) >= out.len() / heads
}

/// Whether the value-slot kernels take these shapes: head width 64 or 128, a probability per
/// head and row, slots within the order's period, and room for every head's slots.
fn value_slots_fit(
    lanes64: bool,
    p: &[f32],
    values: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: &std::ops::Range<usize>,
    acc: &[f32],
) -> bool {
    (hd == 64 || hd == 128)
        && heads > 0
        && p.len().is_multiple_of(heads)
        && values.rows(hd) >= p.len() / heads
        && slots.start <= slots.end
        && slots.end <= if lanes64 { 64 } else { 16 }
        && acc.len() >= heads * (slots.len() + 1) * hd
}

/// The 16-lane (or 4 × 16-lane) f16 dot product; see `kernels::dot_f16_lanes`. Lengths are
/// equal multiples of 16.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_lanes_avx2(lanes64: bool, k: &[u16], q: &[f32]) -> f32 {
    let n = k.len().min(q.len());
    // Each group of 16 lanes is two 8-lane registers (lanes 0..8 and 8..16).
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 16 <= n {
        let g = if lanes64 { (i / 16) % 4 } else { 0 };
        // SAFETY: `i + 16 <= n` keeps both 16-wide loads inside the slices.
        unsafe {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i).cast()));
            let k1 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8).cast()));
            acc[2 * g] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q.as_ptr().add(i)), acc[2 * g]);
            acc[2 * g + 1] =
                _mm256_fmadd_ps(k1, _mm256_loadu_ps(q.as_ptr().add(i + 8)), acc[2 * g + 1]);
        }
        i += 16;
    }
    fold_lanes(lanes64, &acc)
}

/// The sum of [`dot_f16_lanes_avx2`]'s accumulators (four groups of 16 lanes, two registers each;
/// only group 0 without `lanes64`): groups 0+2 and 1+3, then 0+1, then the 16 lanes halved.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fold_lanes(lanes64: bool, acc: &[__m256; 8]) -> f32 {
    let (mut lo, mut hi) = (acc[0], acc[1]);
    if lanes64 {
        lo = _mm256_add_ps(_mm256_add_ps(lo, acc[4]), _mm256_add_ps(acc[2], acc[6]));
        hi = _mm256_add_ps(_mm256_add_ps(hi, acc[5]), _mm256_add_ps(acc[3], acc[7]));
    }
    // Halving: lanes i and i+8, then the 128-bit halves, then pairs, then the last two.
    hsum(_mm256_add_ps(lo, hi))
}

/// [`dot_f16_lanes_avx2`] for f32 keys (a Q8_0 cache's rows, widened exactly): the same order.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32_lanes_avx2(lanes64: bool, k: &[f32], q: &[f32]) -> f32 {
    let n = k.len().min(q.len());
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 16 <= n {
        let g = if lanes64 { (i / 16) % 4 } else { 0 };
        // SAFETY: `i + 16 <= n` keeps both 16-wide loads inside the slices.
        unsafe {
            let k0 = _mm256_loadu_ps(k.as_ptr().add(i));
            let k1 = _mm256_loadu_ps(k.as_ptr().add(i + 8));
            acc[2 * g] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q.as_ptr().add(i)), acc[2 * g]);
            acc[2 * g + 1] =
                _mm256_fmadd_ps(k1, _mm256_loadu_ps(q.as_ptr().add(i + 8)), acc[2 * g + 1]);
        }
        i += 16;
    }
    fold_lanes(lanes64, &acc)
}

/// The halving sum of each of 16 vectors (lanes `i` and `i + 8`, then `i` and `i + 4`, ...,
/// exactly the additions of `attention::reduce16`), all at once: each step adds the upper
/// halves of two vectors' live lanes to their lower halves with one addition. Lane `p` of the
/// result is the sum of `v[p]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn reduce16_x16(v: &[__m512; 16]) -> __m512 {
    // Step 1: [a0..8 + a8..16, b0..8 + b8..16].
    let s: [__m512; 8] = std::array::from_fn(|j| {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    });
    // Step 2: four vectors' lanes 0..4 + 4..8, a 128-bit block each.
    let t: [__m512; 4] = std::array::from_fn(|j| {
        let (a, b) = (s[2 * j], s[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    });
    // Step 3: lanes 0..2 + 2..4 within each block, two vectors per block.
    let u: [__m512; 2] = std::array::from_fn(|j| {
        let (a, b) = (t[2 * j], t[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    });
    // Step 4: lane 0 + lane 1; lane 4k + j now holds vector k + 4j.
    let f = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(u[0], u[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(u[0], u[1]),
    );
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, f)
}

/// Values `16 * c..16 * c + 16` of a KV cache row at `row`: f16 bits widened, or with `Q8`
/// a Q8_0 row's signed bytes times their block's scale (both exact, see `kernels::KvRows`).
///
/// # Safety
/// The row holds at least `16 * (c + 1)` values of its type.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn kv_chunk<const Q8: bool>(row: *const u8, c: usize) -> __m512 {
    // SAFETY: the caller keeps chunk `c` inside the row.
    unsafe {
        if Q8 {
            let block = row.add(c / 2 * Q8_0_BYTES);
            let d = _mm512_cvtph_ps(_mm256_set1_epi16(block.cast::<i16>().read_unaligned()));
            let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(block.add(2 + 16 * (c % 2)).cast()));
            _mm512_mul_ps(_mm512_cvtepi32_ps(q), d)
        } else {
            _mm512_cvtph_ps(_mm256_loadu_si256(row.add(32 * c).cast()))
        }
    }
}

/// Bytes of one KV cache row of `16 * ch` values.
const fn kv_row_bytes<const Q8: bool>(ch: usize) -> usize {
    if Q8 { ch / 2 * Q8_0_BYTES } else { 32 * ch }
}

/// A KV head's rows as a pointer, and whether they are Q8_0.
fn kv_ptr(rows: KvRows<'_>) -> (*const u8, bool) {
    match rows {
        KvRows::F16(b) => (b.as_ptr().cast(), false),
        KvRows::Q8_0(b) => (b.as_ptr(), true),
    }
}

/// Attention scores of `H` query heads (`q`, `hd` apart) that share one key head, over `len`
/// positions: each key row is converted once for all `H`. Per head and position, the dot
/// product is summed as `kernels::dot_f16_lanes` sums it: 16-value chunks into one
/// accumulator (batch order) or into four by chunk index mod 4, folded (0 + 2) + (1 + 3)
/// (single-token order); then 16 positions' lanes are halved at once.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn scores_heads<const H: usize, const CH: usize, const Q8: bool, const L64: bool>(
    k: *const u8,
    q: *const f32,
    len: usize,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
) {
    let rb = kv_row_bytes::<Q8>(CH);
    let scale = _mm512_set1_ps(scale);
    let mut lanes = [[_mm512_setzero_ps(); 16]; H];
    let mut j0 = 0;
    while j0 < len {
        let live = (len - j0).min(16);
        for p in 0..16 {
            if p >= live {
                for l in &mut lanes {
                    l[p] = _mm512_setzero_ps();
                }
                continue;
            }
            let mut acc = [[_mm512_setzero_ps(); 4]; H];
            let ahead = k.wrapping_add((j0 + p + PREFETCH_ROWS) * rb);
            _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
            for c in 0..CH {
                // SAFETY: position `j0 + p < len` and chunk `c < hd / 16` are inside the keys
                // and the queries the wrapper checked.
                unsafe {
                    let kv = kv_chunk::<Q8>(k.add((j0 + p) * rb), c);
                    let g = if L64 { c % 4 } else { 0 };
                    for (h, a) in acc.iter_mut().enumerate() {
                        let qv = _mm512_loadu_ps(q.add((h * CH + c) * 16));
                        a[g] = _mm512_fmadd_ps(kv, qv, a[g]);
                    }
                }
            }
            for (l, a) in lanes.iter_mut().zip(&acc) {
                l[p] = if L64 {
                    _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]))
                } else {
                    a[0]
                };
            }
        }
        let mask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
        for (h, l) in lanes.iter().enumerate() {
            let r = _mm512_mul_ps(reduce16_x16(l), scale);
            // SAFETY: the mask stores only positions `< len` of head `h`'s output row.
            unsafe { _mm512_mask_storeu_ps(out.add(h * out_stride + j0), mask, r) };
        }
        j0 += 16;
    }
}

/// `out[h * len + j] = dot(k_j, q_h) * scale` for the query heads in `q` (`hd` values each)
/// sharing the keys `k` (`len` rows of `hd`): with `avx512` through [`scores_heads`], else
/// through [`avx2::scores_heads`] (the same numbers).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and with `avx512` also AVX-512F.
unsafe fn scores(
    avx512: bool,
    lanes64: bool,
    k: KvRows<'_>,
    q: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    let heads = q.len() / hd;
    let len = out.len() / heads;
    assert!(
        (hd == 64 || hd == 128)
            && q.len() == heads * hd
            && out.len() == heads * len
            && k.rows(hd) >= len,
        "keys, queries and scores do not match"
    );
    let (k, q8) = kv_ptr(k);
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(4);
        // SAFETY (all arms): heads `h0..h0 + n` are inside `q` and `out`, checked above; the
        // caller vouches for the instruction sets.
        unsafe {
            let (qp, op) = (q.as_ptr().add(h0 * hd), out.as_mut_ptr().add(h0 * len));
            macro_rules! go {
                ($h:literal, $ch:literal, $q8:literal, $l64:literal) => {
                    if avx512 {
                        scores_heads::<$h, $ch, $q8, $l64>(k, qp, len, scale, op, len)
                    } else {
                        avx2::scores_heads::<$h, $ch, $q8, $l64>(k, qp, len, scale, op, len)
                    }
                };
                ($h:literal, $ch:literal) => {
                    match (q8, lanes64) {
                        (true, true) => go!($h, $ch, true, true),
                        (true, false) => go!($h, $ch, true, false),
                        (false, true) => go!($h, $ch, false, true),
                        (false, false) => go!($h, $ch, false, false),
                    }
                };
            }
            match (n, hd) {
                (1, 64) => go!(1, 4),
                (2, 64) => go!(2, 4),
                (3, 64) => go!(3, 4),
                (_, 64) => go!(4, 4),
                (1, _) => go!(1, 8),
                (2, _) => go!(2, 8),
                (3, _) => go!(3, 8),
                (_, _) => go!(4, 8),
            }
        }
        h0 += n;
    }
}

/// Partial sums of value rows for `H` heads sharing them: position `j`'s row (converted once
/// for all heads), scaled by head `h`'s `p[h * len + j]`, fused-multiply-added into slot
/// `j mod period` in increasing `j`, for the slots `s0..s1` only. Slot `s` of head `h` is
/// `acc[(h * (s1 - s0 + 1) + s - s0) * hd..][..hd]` (one spare slot per head, so the heads'
/// slots do not sit a multiple of 4 KiB apart: loads and stores would falsely alias).
///
/// Slot by slot: a slot's sums stay in registers while it takes its positions `s, s + period,
/// ...` in increasing order (the same additions as going position by position), and are
/// stored once. Going position by position instead loads and stores every slot at every
/// position; slot by slot measured 7-14% faster decode at depth 2048. One head's rows (a few
/// hundred KiB at depth 2048) stay in L2 across the passes.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn slots_heads<const H: usize, const CH: usize, const Q8: bool>(
    period: usize,
    p: *const f32,
    len: usize,
    v: *const u8,
    s0: usize,
    s1: usize,
    acc: *mut f32,
) {
    let (hd, rb) = (16 * CH, kv_row_bytes::<Q8>(CH));
    let stride = s1 - s0 + 1;
    for s in s0..s1 {
        let mut a = [[_mm512_setzero_ps(); CH]; H];
        let mut j = s;
        while j < len {
            // SAFETY: position `j < len` is inside the values and the probabilities; a
            // prefetch never faults.
            unsafe {
                let ahead = v.wrapping_add((j + 2) * rb);
                _mm_prefetch::<_MM_HINT_T1>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(rb - 1).cast());
                let x: [__m512; CH] = std::array::from_fn(|c| kv_chunk::<Q8>(v.add(j * rb), c));
                for (h, ah) in a.iter_mut().enumerate() {
                    let pj = _mm512_set1_ps(*p.add(h * len + j));
                    for (ac, &xc) in ah.iter_mut().zip(&x) {
                        *ac = _mm512_fmadd_ps(pj, xc, *ac);
                    }
                }
            }
            j += period;
        }
        for (h, ah) in a.iter().enumerate() {
            for (c, &ac) in ah.iter().enumerate() {
                // SAFETY: slot `s` of head `h` is inside the scratch (checked by the wrapper).
                unsafe { _mm512_storeu_ps(acc.add((h * stride + s - s0) * hd + 16 * c), ac) };
            }
        }
    }
}

/// Partial sums of value rows into slots `slots` (see [`slots_heads`]) for the heads whose
/// probabilities are in `p` (`len` each); head `h`'s slot `s` goes to
/// `acc[(h * (slots.len() + 1) + s - slots.start) * hd..]`. With `avx512` through
/// [`slots_heads`], else through [`avx2::slots_heads`] (the same numbers).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and with `avx512` also AVX-512F.
#[allow(clippy::too_many_arguments)]
unsafe fn value_slots(
    avx512: bool,
    lanes64: bool,
    p: &[f32],
    v: KvRows<'_>,
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let period = if lanes64 { 64 } else { 16 };
    let len = p.len() / heads.max(1);
    assert!(
        (hd == 64 || hd == 128)
            && heads > 0
            && p.len() == heads * len
            && v.rows(hd) >= len
            && slots.start <= slots.end
            && slots.end <= period
            && acc.len() >= heads * (slots.len() + 1) * hd,
        "values, probabilities and slots do not match"
    );
    let stride = slots.len() + 1;
    let (vp, q8) = kv_ptr(v);
    let most = if avx512 { 4 } else { avx2::MAX_H };
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(most);
        // SAFETY (all arms): heads `h0..h0 + n` are inside `p` and `acc`, checked above; the
        // caller vouches for the instruction sets.
        unsafe {
            let pp = p.as_ptr().add(h0 * len);
            let ap = acc.as_mut_ptr().add(h0 * stride * hd);
            let (s0, s1) = (slots.start, slots.end);
            // The AVX2 kernel takes the head width at run time: one instance per head count.
            macro_rules! avx2 {
                ($h:literal) => {
                    if q8 {
                        avx2::slots_heads::<$h, true>(period, pp, len, vp, hd, s0, s1, ap)
                    } else {
                        avx2::slots_heads::<$h, false>(period, pp, len, vp, hd, s0, s1, ap)
                    }
                };
            }
            macro_rules! go {
                ($h:literal, $ch:literal) => {
                    if q8 {
                        slots_heads::<$h, $ch, true>(period, pp, len, vp, s0, s1, ap)
                    } else {
                        slots_heads::<$h, $ch, false>(period, pp, len, vp, s0, s1, ap)
                    }
                };
            }
            const { assert!(avx2::MAX_H == 3) };
            match (avx512, n, hd) {
                (false, 1, _) => avx2!(1),
                (false, 2, _) => avx2!(2),
                (false, _, _) => avx2!(3),
                (true, 1, 64) => go!(1, 4),
                (true, 2, 64) => go!(2, 4),
                (true, 3, 64) => go!(3, 4),
                (true, _, 64) => go!(4, 4),
                (true, 1, _) => go!(1, 8),
                (true, 2, _) => go!(2, 8),
                (true, 3, _) => go!(3, 8),
                (true, _, _) => go!(4, 8),
            }
        }
        h0 += n;
    }
}

/// Folds `rows` slots (`acc`, `out.len()` floats each) into `out` by halving: slots
/// `0..rows / 2` += the next `rows / 2`, and so on down to one, as
/// `attention::SumOrder::fold` folds them.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn fold_slots_avx512(rows: usize, acc: &mut [f32], out: &mut [f32]) {
    let hd = out.len();
    assert!(
        hd.is_multiple_of(16) && rows.is_power_of_two() && acc.len() >= rows * hd,
        "slots do not match"
    );
    let ap = acc.as_mut_ptr();
    let mut m = rows / 2;
    while m >= 1 {
        for r in 0..m {
            for c in (0..hd).step_by(16) {
                // SAFETY: slots `r` and `r + m` are below `rows`, inside `acc`.
                unsafe {
                    let d = ap.add(r * hd + c);
                    let x = _mm512_loadu_ps(ap.add((r + m) * hd + c));
                    _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), x));
                }
            }
        }
        m /= 2;
    }
    out.copy_from_slice(&acc[..hd]);
}
