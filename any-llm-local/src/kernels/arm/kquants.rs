//! The K-quant formats Q4_K, Q5_K and Q6_K by Q8_K activations: each super-block's integer
//! sums in NEON (with or without `sdot`), then exactly the float expression and summation
//! order of the scalar reference, so the results equal it bit for bit.

use std::arch::aarch64::*;

use super::super::DotFn;
use super::{isum16_dotprod, isum16_neon, isum32_dotprod, isum32_neon, load32};
use crate::quant::{self, GgmlType, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_K_BYTES, QK_K};

/// Super-blocks of `n` values, after checking both rows hold exactly that many.
fn check_k(w: &[u8], a: &[u8], n: usize, wb: usize) -> usize {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K) && w.len() == nb * wb && a.len() == nb * Q8_K_BYTES,
        "row sizes do not match n = {n}"
    );
    nb
}

/// The integer sums of one Q4_K or Q5_K super-block given its eight sub-block scales, or of
/// one Q6_K super-block (which carries its own scales; the argument is then unused).
type IsumK = unsafe fn(*const u8, *const u8, &[i32; 8]) -> i32;

/// The low (`high == false`) or high nibbles of 32 bytes.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles32(q: [uint8x16_t; 2], high: bool) -> [uint8x16_t; 2] {
    if high {
        q.map(|q| vshrq_n_u8::<4>(q))
    } else {
        q.map(|q| vandq_u8(q, vdupq_n_u8(0x0F)))
    }
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p` points at 32 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load32_u8(p: *const u8) -> [uint8x16_t; 2] {
    // SAFETY: the caller's promise.
    unsafe { [vld1q_u8(p), vld1q_u8(p.add(16))] }
}

#[inline]
#[target_feature(enable = "neon")]
fn as_signed(q: [uint8x16_t; 2]) -> [int8x16_t; 2] {
    q.map(|q| vreinterpretq_s8_u8(q))
}

/// The integer sums of the K-quants for one way of summing bytes (`$isum32` over 32 bytes
/// and `$isum16` over 16, both in four lanes).
macro_rules! isums {
    ($(#[$feature:meta])* $isum32:ident, $isum16:ident, $q4k:ident, $q5k:ident, $q6k:ident) => {
        /// `Σ_j sc[j] · Σ q·a` over the 8 sub-blocks of one Q4_K block (144 bytes at `w`,
        /// the Q8_K block at `a`).
        ///
        /// # Safety
        /// Whole blocks at `w` and `a`; the CPU has the function's target features.
        $(#[$feature])*
        unsafe fn $q4k(w: *const u8, a: *const u8, sc: &[i32; 8]) -> i32 {
            let mut acc = vdupq_n_s32(0);
            for c in 0..4 {
                // SAFETY: quants at 16 + 32c (32 bytes, within 144); activations at 4 + 64c
                // (64 bytes, within 292).
                unsafe {
                    let q = load32_u8(w.add(16 + 32 * c));
                    for (k, high) in [(0, false), (1, true)] {
                        let j = 2 * c + k;
                        let s = $isum32(as_signed(nibbles32(q, high)), load32(a.add(4 + 32 * j)));
                        acc = vmlaq_n_s32(acc, s, sc[j]);
                    }
                }
            }
            vaddvq_s32(acc)
        }

        /// As the Q4_K sum, for one Q5_K block (176 bytes): sub-block `j`'s fifth bits are
        /// bit `j` of the 32 `qh` bytes.
        ///
        /// # Safety
        /// Whole blocks at `w` and `a`; the CPU has the function's target features.
        $(#[$feature])*
        unsafe fn $q5k(w: *const u8, a: *const u8, sc: &[i32; 8]) -> i32 {
            let mut acc = vdupq_n_s32(0);
            // SAFETY: `qh` is the 32 bytes at 16 (within 176).
            let qh = unsafe { load32_u8(w.add(16)) };
            for c in 0..4 {
                // SAFETY: quants at 48 + 32c (32 bytes, within 176); activations at 4 + 64c
                // (64 bytes, within 292).
                unsafe {
                    let q = load32_u8(w.add(48 + 32 * c));
                    for (k, high) in [(0, false), (1, true)] {
                        let j = 2 * c + k;
                        let bit = vdupq_n_u8(1 << j);
                        let low = nibbles32(q, high);
                        let five = [0, 1].map(|h| {
                            let fifth = vandq_u8(vtstq_u8(qh[h], bit), vdupq_n_u8(16));
                            vorrq_u8(low[h], fifth)
                        });
                        let s = $isum32(as_signed(five), load32(a.add(4 + 32 * j)));
                        acc = vmlaq_n_s32(acc, s, sc[j]);
                    }
                }
            }
            vaddvq_s32(acc)
        }

        /// `Σ_j scale[j] · Σ q·a` over the 16 sub-blocks of one Q6_K block (210 bytes).
        ///
        /// # Safety
        /// Whole blocks at `w` and `a`; the CPU has the function's target features.
        $(#[$feature])*
        unsafe fn $q6k(w: *const u8, a: *const u8, _: &[i32; 8]) -> i32 {
            let mut acc = vdupq_n_s32(0);
            for h in 0..2 {
                // SAFETY: qh at 128 + 32h (32 bytes, within 192).
                let qh = unsafe { load32_u8(w.add(128 + 32 * h)) };
                for j in 0..4 {
                    // SAFETY: ql at 64h + 32(j % 2) (32 bytes, within 128); activations at
                    // 4 + 128h + 32j (32 bytes, within 292); scales at 192 + 8h + 2j (2
                    // bytes, within 208).
                    unsafe {
                        let low = nibbles32(load32_u8(w.add(64 * h + 32 * (j % 2))), j >= 2);
                        let y = load32(a.add(4 + 128 * h + 32 * j));
                        let shift = vdupq_n_s8(-2 * j as i8);
                        for half in 0..2 {
                            let high = vandq_u8(vshlq_u8(qh[half], shift), vdupq_n_u8(3));
                            let q = vorrq_u8(low[half], vshlq_n_u8::<4>(high));
                            let q = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
                            let scale = *w.add(192 + 8 * h + 2 * j + half).cast::<i8>();
                            acc = vmlaq_n_s32(acc, $isum16(q, y[half]), i32::from(scale));
                        }
                    }
                }
            }
            vaddvq_s32(acc)
        }
    };
}

isums!(
    #[target_feature(enable = "neon")]
    isum32_neon,
    isum16_neon,
    isum_q4_k_neon,
    isum_q5_k_neon,
    isum_q6_k_neon
);
isums!(
    #[target_feature(enable = "neon,dotprod")]
    isum32_dotprod,
    isum16_dotprod,
    isum_q4_k_dotprod,
    isum_q5_k_dotprod,
    isum_q6_k_dotprod
);

/// Q4_K or Q5_K (`block` bytes per super-block) by Q8_K: the sub-block scales and the
/// minimums' term per super-block, `isum` the exact integer sums; then the scalar
/// reference's expression and summation order.
fn dot_k4(w: &[u8], a: &[u8], n: usize, block: usize, isum: IsumK) -> f32 {
    check_k(w, a, n, block);
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(block).zip(a.chunks_exact(Q8_K_BYTES)) {
        let scales: &[u8; 12] = wb[4..16].try_into().expect("12 scale bytes");
        let bsum = |k: usize| i32::from(i16::from_le_bytes([ab[260 + 2 * k], ab[261 + 2 * k]]));
        let (mut sc, mut mins) = ([0i32; 8], 0i32);
        for (j, s) in sc.iter_mut().enumerate() {
            let (scale, min) = quant::scale_min_k4(scales, j);
            *s = i32::from(scale);
            mins += i32::from(min) * (bsum(2 * j) + bsum(2 * j + 1));
        }
        // SAFETY: `dot_fn` hands these out only where the build has NEON, the `dotprod` sums
        // where the CPU has it; the block slices hold one super-block of each type, as the
        // sums read.
        let sum = unsafe { isum(wb.as_ptr(), ab.as_ptr(), &sc) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let dmin = half::f16::from_le_bytes([wb[2], wb[3]]).to_f32();
        total += ad * d * sum as f32 - ad * dmin * mins as f32;
    }
    total
}

fn dot_q4_k<const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    let isum = if DOTPROD {
        isum_q4_k_dotprod
    } else {
        isum_q4_k_neon
    };
    dot_k4(w, a, n, Q4_K_BYTES, isum)
}

fn dot_q5_k<const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    let isum = if DOTPROD {
        isum_q5_k_dotprod
    } else {
        isum_q5_k_neon
    };
    dot_k4(w, a, n, Q5_K_BYTES, isum)
}

fn dot_q6_k<const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    check_k(w, a, n, Q6_K_BYTES);
    let isum: IsumK = if DOTPROD {
        isum_q6_k_dotprod
    } else {
        isum_q6_k_neon
    };
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(Q6_K_BYTES).zip(a.chunks_exact(Q8_K_BYTES)) {
        // SAFETY: as in `dot_k4`; blocks of 210 and 292 bytes.
        let sum = unsafe { isum(wb.as_ptr(), ab.as_ptr(), &[0; 8]) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[208], wb[209]]).to_f32();
        total += ad * d * sum as f32;
    }
    total
}

/// The K-quant dot product for `ty`; `DOTPROD` only where the CPU has `dotprod`.
pub(super) fn dot_fn<const DOTPROD: bool>(ty: GgmlType) -> Option<DotFn> {
    Some(match ty {
        GgmlType::Q4_K => dot_q4_k::<DOTPROD>,
        GgmlType::Q5_K => dot_q5_k::<DOTPROD>,
        GgmlType::Q6_K => dot_q6_k::<DOTPROD>,
        _ => return None,
    })
}
