//! The non-linear 4-bit formats (IQ4_NL by Q8_0, IQ4_XS by Q8_K): the 4-bit indexes become
//! their levels through one table lookup (`tbl`) of the 16-entry table, then a signed byte dot
//! product (with or without `sdot`); each block's integer sum is exact, and the float
//! expression and summation order are the scalar reference's, so the results equal it bit
//! for bit.

use std::arch::aarch64::*;

use super::super::DotFn;
use super::{isum32_dotprod, isum32_neon, load32};
use crate::quant::{GgmlType, IQ4_LEVELS, Q8_0_BYTES, Q8_K_BYTES, QK, QK_K};

/// Bytes of an IQ4_NL block (32 values) and an IQ4_XS super-block (256).
const IQ4_NL_BYTES: usize = 18;
const IQ4_XS_BYTES: usize = 136;

/// The sum of one group's 32 level-by-activation products, in four lanes: levels from the 16
/// index bytes at `w`, activations the 32 bytes at `a`.
type IsumGroup = unsafe fn(*const u8, *const u8) -> int32x4_t;

/// 16 bytes of indexes as the 32 levels they name: low nibbles (values 0..16), then high.
///
/// # Safety
/// `p` points at 16 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn levels(p: *const u8) -> [int8x16_t; 2] {
    // SAFETY: the table holds 16 levels; the caller's promise for `p`.
    let (table, bytes) = unsafe { (vld1q_s8(IQ4_LEVELS.as_ptr()), vld1q_u8(p)) };
    let lo = vandq_u8(bytes, vdupq_n_u8(0x0F));
    let hi = vshrq_n_u8::<4>(bytes);
    [vqtbl1q_s8(table, lo), vqtbl1q_s8(table, hi)]
}

/// The group sum without `sdot`.
///
/// # Safety
/// 16 readable bytes at `w`, 32 at `a`.
#[target_feature(enable = "neon")]
unsafe fn isum_group_neon(w: *const u8, a: *const u8) -> int32x4_t {
    // SAFETY: the caller's promise.
    unsafe { isum32_neon(levels(w), load32(a)) }
}

/// The group sum with `sdot`.
///
/// # Safety
/// 16 readable bytes at `w`, 32 at `a`; the CPU has `dotprod`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn isum_group_dotprod(w: *const u8, a: *const u8) -> int32x4_t {
    // SAFETY: the caller's promise.
    unsafe { isum32_dotprod(levels(w), load32(a)) }
}

fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// IQ4_NL by Q8_0 over whole rows (the wrapper checked their sizes).
#[target_feature(enable = "neon")]
fn dot_iq4_nl_neon(w: &[u8], a: &[u8], isum: IsumGroup) -> f32 {
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(IQ4_NL_BYTES).zip(a.chunks_exact(Q8_0_BYTES)) {
        // SAFETY: `isum` is the `dotprod` sum only where the CPU has it; indexes at 2 (16
        // bytes, within 18), activations at 2 (32 bytes, within 34).
        let s = vaddvq_s32(unsafe { isum(wb.as_ptr().add(2), ab.as_ptr().add(2)) });
        total += s as f32 * (f16_at(wb) * f16_at(ab));
    }
    total
}

/// IQ4_XS by Q8_K over whole rows (the wrapper checked their sizes): each group's sum times
/// its 6-bit scale, added up in integers per super-block.
#[target_feature(enable = "neon")]
fn dot_iq4_xs_neon(w: &[u8], a: &[u8], isum: IsumGroup) -> f32 {
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(IQ4_XS_BYTES).zip(a.chunks_exact(Q8_K_BYTES)) {
        let high = u16::from_le_bytes([wb[2], wb[3]]);
        let mut acc = vdupq_n_s32(0);
        for ib in 0..QK_K / 32 {
            let low = (wb[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let scale = i32::from(low | (((high >> (2 * ib)) & 3) as u8) << 4) - 32;
            // SAFETY: as in `dot_iq4_nl_neon`; group `ib`'s indexes at 8 + 16ib (16 bytes,
            // within 136), its activations at 4 + 32ib (32 bytes, within 292).
            let s = unsafe { isum(wb.as_ptr().add(8 + 16 * ib), ab.as_ptr().add(4 + 32 * ib)) };
            acc = vmlaq_n_s32(acc, s, scale);
        }
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        total += vaddvq_s32(acc) as f32 * (f16_at(wb) * ad);
    }
    total
}

/// Whole blocks of `block_values` in `n`, after checking the weight row holds `wb` bytes per
/// block and the activation row `ab`.
fn check(w: &[u8], a: &[u8], n: usize, block_values: usize, wb: usize, ab: usize) {
    let nb = n / block_values;
    assert!(
        n.is_multiple_of(block_values) && w.len() == nb * wb && a.len() == nb * ab,
        "row sizes do not match n = {n}"
    );
}

/// The group sum to use: `sdot` only where `DOTPROD` says the CPU has it.
fn isum_group<const DOTPROD: bool>() -> IsumGroup {
    if DOTPROD {
        isum_group_dotprod
    } else {
        isum_group_neon
    }
}

fn dot_iq4_nl_k<const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    check(w, a, n, QK, IQ4_NL_BYTES, Q8_0_BYTES);
    // SAFETY: `dot_fn` hands this out only where the build has NEON.
    unsafe { dot_iq4_nl_neon(w, a, isum_group::<DOTPROD>()) }
}

fn dot_iq4_xs_k<const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    check(w, a, n, QK_K, IQ4_XS_BYTES, Q8_K_BYTES);
    // SAFETY: as in `dot_iq4_nl_k`.
    unsafe { dot_iq4_xs_neon(w, a, isum_group::<DOTPROD>()) }
}

/// The i-quant dot product for `ty`; `DOTPROD` only where the CPU has `dotprod`.
pub(super) fn dot_fn<const DOTPROD: bool>(ty: GgmlType) -> Option<DotFn> {
    Some(match ty {
        GgmlType::IQ4_NL => dot_iq4_nl_k::<DOTPROD>,
        GgmlType::IQ4_XS => dot_iq4_xs_k::<DOTPROD>,
        _ => return None,
    })
}
