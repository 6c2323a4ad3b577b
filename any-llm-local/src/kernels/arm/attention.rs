//! The f16 dot products and weighted sums of attention, in the summation orders of the
//! portable code (`attention::dot` and `attention::value_slots_portable`), bit for bit: a
//! 16-lane order is four `float32x4_t` registers.

use std::arch::aarch64::*;

use super::f16x4_to_f32;

/// 16 lanes as four registers: lanes `4c..4c + 4` in register `c`.
type Lanes16 = [float32x4_t; 4];

/// `attention::reduce16` of the 16 lanes: lanes `i` and `i + 8`, then `i + 4`, `i + 2`, `i + 1`.
#[inline]
#[target_feature(enable = "neon")]
fn reduce16(v: Lanes16) -> f32 {
    let x = vaddq_f32(vaddq_f32(v[0], v[2]), vaddq_f32(v[1], v[3]));
    let y = vadd_f32(vget_low_f32(x), vget_high_f32(x));
    vget_lane_f32::<0>(y) + vget_lane_f32::<1>(y)
}

/// The dot product of `hd` keys with `hd` queries at `q` in the order of
/// `kernels::dot_f16_lanes`: 16-value chunks into one set of 16 lanes, or (`lanes64`) into
/// four by chunk index mod 4, folded (0 + 2) + (1 + 3); then halved. `key(i)` gives the keys
/// `i..i + 4` as f32.
///
/// # Safety
/// `q` points at `hd` readable `f32`; `hd` is a multiple of 16.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_lanes(
    lanes64: bool,
    key: impl Fn(usize) -> float32x4_t,
    q: *const f32,
    hd: usize,
) -> f32 {
    let mut acc = [[vdupq_n_f32(0.0); 4]; 4];
    for c in 0..hd / 16 {
        let g = if lanes64 { c % 4 } else { 0 };
        for (r, a) in acc[g].iter_mut().enumerate() {
            let at = 16 * c + 4 * r;
            // SAFETY: `at + 4 <= hd` (the caller's promise).
            *a = vfmaq_f32(*a, key(at), unsafe { vld1q_f32(q.add(at)) });
        }
    }
    if lanes64 {
        let fold = |x: Lanes16, y: Lanes16| std::array::from_fn(|c| vaddq_f32(x[c], y[c]));
        reduce16(fold(fold(acc[0], acc[2]), fold(acc[1], acc[3])))
    } else {
        reduce16(acc[0])
    }
}

/// The 16-lane (or 4 × 16-lane) f16 dot product; see `kernels::dot_f16_lanes`. `None` unless
/// the lengths are equal multiples of 16.
#[target_feature(enable = "neon")]
pub(in crate::kernels) fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> Option<f32> {
    if k.len() != q.len() || !k.len().is_multiple_of(16) {
        return None;
    }
    // SAFETY: the slice holds four values.
    let key = |i: usize| f16x4_to_f32(unsafe { vld1_u16(k[i..i + 4].as_ptr()) });
    // SAFETY: `q` holds `k.len()` values, a multiple of 16.
    Some(unsafe { dot_lanes(lanes64, key, q.as_ptr(), k.len()) })
}

/// Whether the attention kernels take head width `hd`.
fn takes(hd: usize) -> bool {
    hd > 0 && hd.is_multiple_of(16) && hd <= 256
}

/// `out[h * len + j] = dot(k_j, q_h) * scale` for the query heads in `q` (`hd` values each)
/// sharing the keys `k` (`len` rows of `hd`), each dot product in the order of
/// [`dot_f16_lanes`]; each key row is converted once for all heads. `false` (nothing written)
/// where the sizes do not fit these kernels.
#[target_feature(enable = "neon")]
pub(in crate::kernels) fn attn_scores(
    lanes64: bool,
    k: &[u16],
    q: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) -> bool {
    if !takes(hd) || !q.len().is_multiple_of(hd) || q.is_empty() {
        return false;
    }
    let heads = q.len() / hd;
    let len = out.len() / heads;
    if out.len() != heads * len || k.len() < len * hd {
        return false;
    }
    let mut row = [0.0f32; 256];
    for (j, kr) in k.chunks_exact(hd).take(len).enumerate() {
        for (c, x) in row[..hd].chunks_exact_mut(4).enumerate() {
            // SAFETY: `4c + 4 <= hd` values of the key row and of `row`.
            unsafe {
                vst1q_f32(
                    x.as_mut_ptr(),
                    f16x4_to_f32(vld1_u16(kr.as_ptr().add(4 * c))),
                )
            };
        }
        for (h, qh) in q.chunks_exact(hd).enumerate() {
            // SAFETY: the slice holds four values.
            let key = |i: usize| unsafe { vld1q_f32(row[i..i + 4].as_ptr()) };
            // SAFETY: the query head holds `hd` values.
            let dot = unsafe { dot_lanes(lanes64, key, qh.as_ptr(), hd) };
            out[h * len + j] = dot * scale;
        }
    }
    true
}

/// Partial sums of value rows into slots `slots` for the heads whose probabilities are in
/// `p` (`len` each): position `j`'s row (converted once for all heads), scaled by head `h`'s
/// `p[h * len + j]`, fused-multiply-added into slot `j mod period` in increasing `j`. Head
/// `h`'s slot `s` is `acc[(h * (slots.len() + 1) + s - slots.start) * hd..][..hd]`; the whole
/// scratch of the heads is zeroed first, as the portable code does. `false` (nothing written)
/// where the sizes do not fit these kernels.
#[target_feature(enable = "neon")]
pub(in crate::kernels) fn attn_value_slots(
    lanes64: bool,
    p: &[f32],
    v: &[u16],
    hd: usize,
    heads: usize,
    slots: std::ops::Range<usize>,
    acc: &mut [f32],
) -> bool {
    let period = if lanes64 { 64 } else { 16 };
    if !takes(hd)
        || heads == 0
        || !p.len().is_multiple_of(heads)
        || slots.start > slots.end
        || slots.end > period
    {
        return false;
    }
    let len = p.len() / heads;
    let stride = slots.len() + 1;
    if v.len() < len * hd || acc.len() < heads * stride * hd {
        return false;
    }
    acc[..heads * stride * hd].fill(0.0);
    let mut row = [0.0f32; 256];
    for (j, vr) in v.chunks_exact(hd).take(len).enumerate() {
        let s = j % period;
        if !slots.contains(&s) {
            continue;
        }
        for (c, x) in row[..hd].chunks_exact_mut(4).enumerate() {
            // SAFETY: `4c + 4 <= hd` values of the value row and of `row`.
            unsafe {
                vst1q_f32(
                    x.as_mut_ptr(),
                    f16x4_to_f32(vld1_u16(vr.as_ptr().add(4 * c))),
                )
            };
        }
        for h in 0..heads {
            let pj = vdupq_n_f32(p[h * len + j]);
            let at = (h * stride + s - slots.start) * hd;
            for (a, x) in acc[at..at + hd]
                .chunks_exact_mut(4)
                .zip(row.chunks_exact(4))
            {
                // SAFETY: both chunks hold four floats.
                unsafe {
                    let x = vld1q_f32(x.as_ptr());
                    vst1q_f32(a.as_mut_ptr(), vfmaq_f32(vld1q_f32(a.as_ptr()), pj, x));
                }
            }
        }
    }
    true
}
