//! A Q8_0 KV cache's decode-step attention on NEON: integer scores (`sdot` where the CPU has
//! it, widened products otherwise) against queries quantized to Q8_0, four positions at a
//! time, and the weighted value sums in registers. The numbers are those of
//! `attention::q8_scores_portable` and `attention::q8_values_portable`, bit for bit: every
//! block's integer sum is exact whichever way it is added, and the float steps are the same
//! operations in the same order.

use std::arch::aarch64::*;

use super::{f16x4_to_f32, isum32_dotprod, isum32_neon, load32};
use crate::quant::{Q8_0_BYTES, QK};

/// Q8_0 blocks a row may have (head widths up to 256).
const MAX_BLOCKS: usize = 8;

/// Query heads per pass of the value kernel: four heads' sums of 16 values, a row chunk and
/// its widenings fit the 32 registers.
const MAX_H: usize = 4;

/// The scores kernel for one way of summing a block's byte products.
macro_rules! scores_kernel {
    ($(#[$attr:meta])* $name:ident, $isum:ident) => {
        /// `out[h * len + j]` = query head `h` (`qs`, `qd`) dotted with key row `j` (`nb`
        /// Q8_0 blocks), times `scale`, for four positions at once: each block's four
        /// integer sums are gathered into one register (`addp`), then `s = fma(dk · dq, sum,
        /// s)` block after block, one position per lane.
        ///
        /// # Safety
        /// `k` holds `len` rows of `nb` blocks (`nb <= MAX_BLOCKS`); `qs` and `qd` hold
        /// `heads` heads of `32 * nb` bytes and `nb` scales; `out` holds `heads * len`
        /// floats.
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            k: *const u8,
            nb: usize,
            len: usize,
            qs: *const i8,
            qd: *const f32,
            heads: usize,
            scale: f32,
            out: *mut f32,
        ) {
            let rb = nb * Q8_0_BYTES;
            let scale = vdupq_n_f32(scale);
            let mut j0 = 0;
            while j0 < len {
                let live = (len - j0).min(4);
                // Past the last position, lanes repeat it; their results are not stored.
                let rows: [*const u8; 4] =
                    std::array::from_fn(|p| k.wrapping_add((j0 + p.min(live - 1)) * rb));
                let mut dk = [vdupq_n_f32(0.0); MAX_BLOCKS];
                for (b, d) in dk.iter_mut().enumerate().take(nb) {
                    // SAFETY: block `b < nb` of the four rows is inside the keys.
                    let bits: [u16; 4] = std::array::from_fn(|p| unsafe {
                        rows[p].add(b * Q8_0_BYTES).cast::<u16>().read_unaligned()
                    });
                    // SAFETY: `bits` holds four values.
                    *d = f16x4_to_f32(unsafe { vld1_u16(bits.as_ptr()) });
                }
                for h in 0..heads {
                    let mut s = vdupq_n_f32(0.0);
                    for (b, &d) in dk.iter().enumerate().take(nb) {
                        // SAFETY: block `b` of head `h` and of the four rows are inside the
                        // queries and the keys.
                        unsafe {
                            let q = load32(qs.add((h * nb + b) * 32).cast());
                            let sums: [int32x4_t; 4] = std::array::from_fn(|p| {
                                $isum(load32(rows[p].add(b * Q8_0_BYTES + 2)), q)
                            });
                            let isum = vpaddq_s32(
                                vpaddq_s32(sums[0], sums[1]),
                                vpaddq_s32(sums[2], sums[3]),
                            );
                            let dkq = vmulq_n_f32(d, *qd.add(h * nb + b));
                            s = vfmaq_f32(s, dkq, vcvtq_f32_s32(isum));
                        }
                    }
                    let r = vmulq_f32(s, scale);
                    let mut lanes = [0.0f32; 4];
                    // SAFETY: `lanes` holds four floats; positions `j0..j0 + live` of head
                    // `h` are inside `out`.
                    unsafe {
                        vst1q_f32(lanes.as_mut_ptr(), r);
                        std::ptr::copy_nonoverlapping(
                            lanes.as_ptr(),
                            out.add(h * len + j0),
                            live,
                        );
                    }
                }
                j0 += 4;
            }
        }
    };
}

scores_kernel!(
    #[target_feature(enable = "neon")]
    scores_neon,
    isum32_neon
);
scores_kernel!(
    #[target_feature(enable = "neon,dotprod")]
    scores_dotprod,
    isum32_dotprod
);

/// `out[h * len + j]` = the score of query head `h` (`qs`, `qd`: Q8_0 queries, `hd` each) at
/// key row `j` (Q8_0 rows of `hd`), times `scale`, with `sdot` where `dotprod`.
///
/// # Safety
/// The build has NEON, and with `dotprod` the CPU has the extension; the shapes passed
/// `kernels::q8_scores_fit` for a unit of 32.
pub(in crate::kernels) unsafe fn attn_q8_scores(
    dotprod: bool,
    qs: &[i8],
    qd: &[f32],
    keys: &[u8],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (nb, heads) = (hd / QK, qs.len() / hd);
    assert!(
        nb <= MAX_BLOCKS && qs.len() == heads * hd && qd.len() == heads * nb,
        "queries and head width do not match"
    );
    let len = out.len() / heads;
    assert!(
        keys.len() >= len * nb * Q8_0_BYTES,
        "keys and scores do not match"
    );
    let (k, q, d, o) = (keys.as_ptr(), qs.as_ptr(), qd.as_ptr(), out.as_mut_ptr());
    // SAFETY: the shapes were checked just above; the caller vouches for the CPU.
    unsafe {
        if dotprod {
            scores_dotprod(k, nb, len, q, d, heads, scale, o);
        } else {
            scores_neon(k, nb, len, q, d, heads, scale, o);
        }
    }
}

/// Weighted value sums of `H` heads over `len` Q8_0 rows, 16 values at a time: per position,
/// the 16 bytes widened to f32 once for all heads, then `acc = fma(p · d, byte, acc)` in
/// increasing position, the sums in registers.
///
/// # Safety
/// `v` holds `len` rows of `nb` blocks; `p` holds `H` rows of `len`; `acc` holds `H` rows of
/// `32 * nb` floats.
#[target_feature(enable = "neon")]
unsafe fn values_heads<const H: usize>(
    p: *const f32,
    v: *const u8,
    nb: usize,
    len: usize,
    acc: *mut f32,
) {
    let (rb, hd) = (nb * Q8_0_BYTES, QK * nb);
    for c in 0..2 * nb {
        let mut a = [[vdupq_n_f32(0.0); 4]; H];
        for j in 0..len {
            // SAFETY: row `j < len` and its block `c / 2` are inside the values; head `h`'s
            // probability of position `j` is inside `p`.
            unsafe {
                let block = v.add(j * rb + c / 2 * Q8_0_BYTES);
                let d = half::f16::from_bits(block.cast::<u16>().read_unaligned()).to_f32();
                let x8 = vld1q_s8(block.add(2 + 16 * (c % 2)).cast());
                let (lo, hi) = (vmovl_s8(vget_low_s8(x8)), vmovl_high_s8(x8));
                let x = [
                    vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
                    vcvtq_f32_s32(vmovl_high_s16(lo)),
                    vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
                    vcvtq_f32_s32(vmovl_high_s16(hi)),
                ];
                for (h, ah) in a.iter_mut().enumerate() {
                    let w = *p.add(h * len + j) * d;
                    for (ai, &xi) in ah.iter_mut().zip(&x) {
                        *ai = vfmaq_n_f32(*ai, xi, w);
                    }
                }
            }
        }
        for (h, ah) in a.iter().enumerate() {
            for (i, &ai) in ah.iter().enumerate() {
                // SAFETY: values `16 * c + 4 * i..` of head `h` are inside `acc`.
                unsafe { vst1q_f32(acc.add(h * hd + 16 * c + 4 * i), ai) };
            }
        }
    }
}

/// `acc[h * hd + d] = Σ_j p[h * len + j] · value_j[d]` over the Q8_0 rows `values`, summed in
/// increasing `j` as `acc = fma(p · d, byte, acc)`.
///
/// # Safety
/// The build has NEON; the shapes passed `kernels::q8_values_fit`.
#[target_feature(enable = "neon")]
pub(in crate::kernels) unsafe fn attn_q8_values(
    p: &[f32],
    values: &[u8],
    hd: usize,
    heads: usize,
    acc: &mut [f32],
) {
    let (nb, len) = (hd / QK, p.len() / heads);
    assert!(
        acc.len() == heads * hd && values.len() >= len * nb * Q8_0_BYTES,
        "values, probabilities and sums do not match"
    );
    let mut h0 = 0;
    while h0 < heads {
        let n = (heads - h0).min(MAX_H);
        // SAFETY (all arms): heads `h0..h0 + n` are inside `p` and `acc`, and the values hold
        // `len` rows of `nb` blocks, checked above.
        unsafe {
            let (pp, v) = (p.as_ptr().add(h0 * len), values.as_ptr());
            let a = acc.as_mut_ptr().add(h0 * hd);
            match n {
                1 => values_heads::<1>(pp, v, nb, len, a),
                2 => values_heads::<2>(pp, v, nb, len, a),
                3 => values_heads::<3>(pp, v, nb, len, a),
                _ => values_heads::<4>(pp, v, nb, len, a),
            }
        }
        h0 += n;
    }
}
