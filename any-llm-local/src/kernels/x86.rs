//! x86-64 kernels: AVX2 + FMA + F16C, and AVX-512 (VNNI for the integer dots) where present.
//!
//! Every function marked `#[target_feature]` is only reached after [`has_avx2`] said yes.
//! Pointer arithmetic stays inside slices whose lengths the safe wrappers check first.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{
    DotFn, EXP_C1, EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_SHIFT,
    KvRows, Q8_0_BLOCK, ROWS, RowsFn, TILE_ROWS, TILE_TOKENS, TileFn,
};
use crate::quant::{self, GgmlType};

mod attn_avx2;
mod kvq8;
pub(super) use kvq8::{attn_q8_scores, attn_q8_values, attn_q8_values_avx2};

/// Whether this CPU runs the AVX2 kernels (AVX2, FMA and F16C together).
pub(super) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether this CPU has AVX-512 Foundation (with AVX2, FMA and F16C): the attention kernels
/// use its 16-lane registers and in-register shuffles.
pub(super) fn has_avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && std::env::var_os("ANY_NO_AVX512").is_none()
            && is_x86_feature_detected!("avx512f")
    })
}

/// Whether this CPU also has AVX-512 VNNI (with VL and BW), whose `vpdpbusd` sums byte
/// products in one instruction.
pub(super) fn has_vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        has_avx2()
            && std::env::var_os("ANY_NO_VNNI").is_none()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// The fastest x86 dot product for `ty`, where there is one.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    if !has_avx2() {
        return None;
    }
    if has_vnni() {
        match ty {
            GgmlType::Q4_1 => return Some(dot_q4_1_vnni_checked),
            GgmlType::Q8_0 => return Some(dot_q8_0_vnni_checked),
            _ => {}
        }
    }
    match ty {
        GgmlType::Q8_0 => Some(dot_q8_0),
        GgmlType::Q4_0 => Some(dot_q4_0),
        GgmlType::Q4_1 => Some(dot_q4_1),
        GgmlType::Q5_0 => Some(dot_q5_0),
        GgmlType::Q5_1 => Some(dot_q5_1),
        GgmlType::Q4_K => Some(dot_q4_k),
        GgmlType::Q5_K => Some(dot_q5_k),
        GgmlType::Q6_K => Some(dot_q6_k),
        _ => None,
    }
}

/// The fastest x86 tiled dot product for `ty`, where there is one.
pub(super) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    if !has_avx2() {
        return None;
    }
    if has_vnni() {
        return match ty {
            GgmlType::Q8_0 => Some(tile_q8_0_vnni),
            GgmlType::Q4_0 => Some(tile_q4_0_vnni),
            GgmlType::Q4_1 => Some(tile_q4_1_vnni_checked),
            _ => None,
        };
    }
    match ty {
        GgmlType::Q8_0 => Some(tile_q8_0),
        GgmlType::Q4_0 => Some(tile_q4_0),
        GgmlType::Q4_1 => Some(tile_q4_1),
        _ => None,
    }
}

type Tile = [f32; TILE_ROWS * TILE_TOKENS];

/// The fastest x86 several-rows-by-one-token kernel for `ty`, where there is one.
pub(super) fn rows_fn(ty: GgmlType) -> Option<RowsFn> {
    match ty {
        GgmlType::Q4_1 if has_vnni() => Some(rows_q4_1_vnni_checked),
        GgmlType::Q4_1 if has_avx2() => Some(rows_q4_1),
        GgmlType::Q8_0 if has_vnni() => Some(rows_q8_0_vnni_checked),
        GgmlType::Q8_0 if has_avx2() => Some(rows_q8_0),
        _ => None,
    }
}

fn tile_q8_0(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 34 * TILE_ROWS, 34 * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q8_avx2::<34, 0>(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q4_0(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 18 * TILE_ROWS, 34 * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0`.
    unsafe { tile_q8_avx2::<18, 4>(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q8_0_vnni(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 34 * TILE_ROWS, 34 * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q8_vnni::<34, 0>(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q4_0_vnni(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 18 * TILE_ROWS, 34 * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0_vnni`.
    unsafe { tile_q8_vnni::<18, 4>(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q4_1(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 20 * TILE_ROWS, 36 * TILE_TOKENS);
    // SAFETY: as in `tile_q8_0`.
    unsafe { tile_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q4_1(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, 20 * ROWS, 36);
    // SAFETY: `rows_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, 20 * ROWS, 36);
    // SAFETY: as in `tile_q4_1_vnni_checked`.
    unsafe { rows_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn tile_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(w, a, n, 20 * TILE_ROWS, 36 * TILE_TOKENS);
    // SAFETY: `tile_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb` whole blocks.
    unsafe { tile_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q8_0(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, 34 * ROWS, 34);
    // SAFETY: `rows_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q8_0_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q8_0_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, 34 * ROWS, 34);
    // SAFETY: `rows_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q8_0_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn dot_q8_0_vnni_checked(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 34, 34);
    // SAFETY: `dot_fn` hands this out only when `has_vnni()` said yes; `check` proved both
    // slices hold `nb` whole blocks.
    unsafe { dot_q8_0_vnni(w.as_ptr(), a.as_ptr(), nb) }
}

fn check(w: &[u8], a: &[u8], n: usize, wb: usize, ab: usize) -> usize {
    let nb = n / 32;
    assert!(
        n.is_multiple_of(32) && w.len() == nb * wb && a.len() == nb * ab,
        "row sizes do not match n = {n}"
    );
    nb
}

fn dot_q8_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 34, 34);
    // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // both slices hold `nb` whole blocks.
    unsafe { dot_q8_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 18, 34);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 20, 36);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q5_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 22, 34);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q5_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q5_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 24, 36);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q5_1_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 20, 36);
    // SAFETY: `dot_fn` hands this out only when `has_vnni()` said yes; `check` proved both
    // slices hold `nb` whole blocks.
    unsafe { dot_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb) }
}

/// Super-blocks of `n` values, after checking both rows hold exactly that many.
fn check_k(w: &[u8], a: &[u8], n: usize, wb: usize) -> usize {
    let nb = n / 256;
    assert!(
        n.is_multiple_of(256) && w.len() == nb * wb && a.len() == nb * Q8K_BYTES,
        "row sizes do not match n = {n}"
    );
    nb
}

/// A Q8_K block: `d` (f32), 256 quants, 16 sums of 16 quants (i16).
const Q8K_BYTES: usize = 4 + 256 + 32;

/// The integer sums of one Q4_K or Q5_K super-block, given its eight sub-block scales.
type IsumK4 = unsafe fn(*const u8, *const u8, &[i16; 8]) -> i32;

/// Q4_K or Q5_K (`block` bytes per super-block) by Q8_K: the sub-block scales and the
/// minimums' term per super-block, `isum` the exact integer sums.
fn dot_k4(w: &[u8], a: &[u8], n: usize, block: usize, isum: IsumK4) -> f32 {
    let nb = check_k(w, a, n, block);
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(block).zip(a.chunks_exact(Q8K_BYTES)) {
        let scales: &[u8; 12] = wb[4..16].try_into().expect("12 scale bytes");
        let (mut sc, mut mins) = ([0i16; 8], 0i32);
        for (j, s) in sc.iter_mut().enumerate() {
            let (scale, min) = quant::scale_min_k4(scales, j);
            *s = i16::from(scale);
            let bsum = |k: usize| i32::from(i16::from_le_bytes([ab[260 + 2 * k], ab[261 + 2 * k]]));
            mins += i32::from(min) * (bsum(2 * j) + bsum(2 * j + 1));
        }
        // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; the block
        // slices have the bytes of one super-block of each type, as the kernels read.
        let sum = unsafe { isum(wb.as_ptr(), ab.as_ptr(), &sc) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let dmin = half::f16::from_le_bytes([wb[2], wb[3]]).to_f32();
        // The scalar reference's expression and summation order, so results are identical.
        total += ad * d * sum as f32 - ad * dmin * mins as f32;
    }
    debug_assert_eq!(nb, w.len() / block);
    total
}

fn dot_q4_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    dot_k4(w, a, n, 144, isum_q4_k_avx2)
}

fn dot_q5_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    dot_k4(w, a, n, 176, isum_q5_k_avx2)
}

fn dot_q6_k(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check_k(w, a, n, 210);
    let mut total = -0.0f32;
    for (wb, ab) in w.chunks_exact(210).zip(a.chunks_exact(Q8K_BYTES)) {
        // SAFETY: as in `dot_q4_k`; blocks of 210 and 292 bytes.
        let sum = unsafe { isum_q6_k_avx2(wb.as_ptr(), ab.as_ptr()) };
        let ad = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
        let d = half::f16::from_le_bytes([wb[208], wb[209]]).to_f32();
        total += ad * d * sum as f32;
    }
    debug_assert_eq!(nb, w.len() / 210);
    total
}

/// `Σ_j sc[j] · Σ q·a` over the 8 sub-blocks of one Q4_K block (exact integers).
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

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The two f16 values at `p` as f32 in lanes 0 and 1 (lanes 2 and 3 are zero).
///
/// The load is a `vmovd` in assembly, which zero-extends into a fresh register. Written with
/// intrinsics, LLVM sees when only lane 0 is used and makes it a 16-bit insert into whatever
/// register is at hand, often the loop's accumulator, which chains every block's scale onto
/// the previous block's sum (a 3x slowdown of the Q8_0 dot). The conversion is exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x2_at(p: *const u8) -> __m128 {
    let bits: __m128i;
    // SAFETY: the caller points `p` at four readable bytes; the instruction only reads them.
    unsafe {
        std::arch::asm!(
            "vmovd {bits}, dword ptr [{p}]",
            p = in(reg) p,
            bits = out(xmm_reg) bits,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    _mm_cvtph_ps(bits)
}

/// A function loading the f32 at `p` into every lane of a `$ty` register (`vbroadcastss`
/// from memory): one instruction of inline assembly, so that it stays a load.
macro_rules! broadcast_load {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $reg:ident, $features:literal) => {
        $(#[$doc])*
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name(p: *const f32) -> $ty {
            let out: $ty;
            // SAFETY: the caller's promise; the instruction reads four bytes at `p` and
            // writes `out`.
            unsafe {
                std::arch::asm!(
                    "vbroadcastss {out}, dword ptr [{p}]",
                    p = in(reg) p,
                    out = lateout($reg) out,
                    options(pure, readonly, nostack, preserves_flags),
                );
            }
            out
        }
    };
}

broadcast_load!(
    /// The f32 at `p` in all eight lanes, as a load (`vbroadcastss` from memory), which takes no
    /// shuffle port.
    ///
    /// The tile kernels store their scale products and broadcast each token's from memory:
    /// written with intrinsics, LLVM sees through the store and makes every broadcast a register
    /// shuffle again (`vpermps`, `vbroadcastss` from a register), and those queue on the one
    /// port that also runs the integer sums. Measured on 12800 tiles of 18 blocks, best of 1000:
    /// Q4_1 (VNNI) 1.89 against 1.66 ms, Q4_0 (AVX2) 2.49 against 2.21 ms.
    ///
    /// # Safety
    /// `p` points at a readable f32.
    broadcast_at,
    __m256,
    ymm_reg,
    "avx2,fma,f16c"
);

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Sum of products of 32 signed bytes by 32 signed bytes, as 8 lanes of i32 turned f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256 {
    // maddubs multiplies unsigned by signed: move x's sign onto y.
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let pairs = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// 16 bytes of nibbles as 32 bytes: low nibbles (values 0..16) then high nibbles (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller points `p` at 16 readable bytes.
    let bytes = unsafe { _mm_loadu_si128(p.cast()) };
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(bytes, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    _mm256_set_m128i(hi, lo)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 18), a.add(i * 34));
            let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2_at(wb), f16x2_at(ab)));
            let qw = _mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8));
            let qa = _mm256_loadu_si256(ab.add(2).cast());
            acc = _mm256_fmadd_ps(d, dot_i8(qw, qa), acc);
        }
    }
    hsum(acc)
}

/// The 32 fifth bits of a Q5_0/Q5_1 block (`qh`, bit `i` for value `i`) as bytes: 16 where
/// the bit is set, 0 where not.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bits(qh: u32) -> __m256i {
    // Byte i takes the byte of `qh` holding bit i, then keeps bit i % 8 of it.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(16))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 22), a.add(i * 34));
            let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2_at(wb), f16x2_at(ab)));
            let qh = wb.add(2).cast::<u32>().read_unaligned();
            let q = _mm256_or_si256(nibbles(wb.add(6)), fifth_bits(qh));
            let qw = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
            let qa = _mm256_loadu_si256(ab.add(2).cast());
            acc = _mm256_fmadd_ps(d, dot_i8(qw, qa), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_1_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 24), a.add(i * 36));
            // Lane 0: d_w · d_a; lane 1: m_w · s_a, summed in lane 1 of `mins`.
            let prod = _mm_mul_ps(f16x2_at(wb), f16x2_at(ab));
            let d = _mm256_broadcastss_ps(prod);
            mins = _mm_add_ps(mins, prod);
            let qh = wb.add(4).cast::<u32>().read_unaligned();
            let qw = _mm256_or_si256(nibbles(wb.add(8)), fifth_bits(qh));
            let qa = _mm256_loadu_si256(ab.add(4).cast());
            // Unsigned quants up to 31: no pair of products saturates (2 · 31 · 127 < 2^15).
            let sums = isum_u4i8_avx2(qw, qa);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc);
        }
    }
    hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(mins))
}

/// Sums of products of 32 unsigned bytes (at most 15) by 32 signed bytes, as 8 lanes of i32:
/// `maddubs` then `madd` (no pair can saturate: 2 · 15 · 127 < 2^15).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum_u4i8_avx2(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// [`isum_u4i8_avx2`] in one instruction (`vpdpbusd`), with the same integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
fn isum_u4i8_vnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

/// Bytes ahead of the current block that the several-rows kernels ask the cache for (a
/// prefetch never faults, so it may point past the matrix: `wrapping_add`). Prefetches go to
/// L2 (`T1`), which measured faster than L1 (`T0`) here (decode 136 against 124 tok/s at depth
/// 0, 83 against 74 at depth 2048, medians) and leaves L1 to the data in use.
///
/// Measured on the 2-core machine of the book's Performance chapter (`any bench`, default
/// model, 2 threads, decode tok/s, medians of interleaved runs): 1 KiB 112, 2 KiB 120, 4 KiB
/// 144, 8 KiB 149; a second set 4 KiB 126, 8 KiB 137, 16 KiB 127, 32 KiB 125. A decode
/// step's matrices are many short rows, so a distance of a few rows is too short to hide the
/// memory's latency.
const PREFETCH: usize = 8192;

/// Cached key or value rows ahead of the current position that attention asks the cache for.
const PREFETCH_ROWS: usize = 48;

/// The Q4_1 × Q8_1 dot product and its tile, for one instruction set: `$isum` sums a block's
/// integer products into 8 lanes. Both variants give the same integers, so the same floats.
macro_rules! q4_1_kernels {
    ($features:literal, $dot:ident, $rows:ident, $isum:ident) => {
        /// Four Q4_1 weight rows by one Q8_1 activation row. Per output: the same products
        /// and sums, in the same order, as the dot; the four rows' scale products are formed
        /// in one multiplication, each row's minimum term summed in its own lane.
        #[target_feature(enable = $features)]
        unsafe fn $rows(w: *const u8, a: *const u8, nb: usize, out: &mut [f32; ROWS]) {
            const { assert!(ROWS == 4) };
            let wrow = nb * 20;
            let mut acc = [_mm256_setzero_ps(); ROWS];
            // Lane 2r + 1: the sum of m_w · s_a for row r.
            let mut mins = _mm256_setzero_ps();
            // The block's products [d_w0 d_a, m_w0 s_a, d_w1 d_a, ...], for `broadcast_at`.
            let mut prods = [0.0f32; 8];
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let ab = a.add(i * 36);
                    if i.is_multiple_of(3) {
                        for r in 0..ROWS {
                            _mm_prefetch::<_MM_HINT_T1>(
                                w.wrapping_add(r * wrow + i * 20 + PREFETCH).cast(),
                            );
                        }
                    }
                    // [d_a, s_a] four times.
                    let ds = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(f16x2_at(ab))));
                    let qa = _mm256_loadu_si256(ab.add(4).cast());
                    let mut heads = [0i32; ROWS];
                    for (r, h) in heads.iter_mut().enumerate() {
                        *h = w.add(r * wrow + i * 20).cast::<i32>().read_unaligned();
                    }
                    // [d_w0 d_a, m_w0 s_a, d_w1 d_a, ...].
                    let prod =
                        _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(heads.as_ptr().cast())), ds);
                    mins = _mm256_add_ps(mins, prod);
                    _mm256_storeu_ps(prods.as_mut_ptr(), prod);
                    for r in 0..ROWS {
                        let qw = nibbles(w.add(r * wrow + i * 20 + 4));
                        let d = broadcast_at(prods.as_ptr().add(2 * r));
                        let sums = $isum(qw, qa);
                        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[r]);
                    }
                }
            }
            let mut m = [0.0f32; 8];
            // SAFETY: `m` holds 8 floats.
            unsafe { _mm256_storeu_ps(m.as_mut_ptr(), mins) };
            for r in 0..ROWS {
                out[r] = hsum(acc[r]) + m[2 * r + 1];
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn $dot(w: *const u8, a: *const u8, nb: usize) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut mins = _mm_setzero_ps();
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let (wb, ab) = (w.add(i * 20), a.add(i * 36));
                    // Lane 0: d_w · d_a; lane 1: m_w · s_a, summed in lane 1 of `mins`.
                    let prod = _mm_mul_ps(f16x2_at(wb), f16x2_at(ab));
                    let d = _mm256_broadcastss_ps(prod);
                    mins = _mm_add_ps(mins, prod);
                    let qw = nibbles(wb.add(4));
                    let qa = _mm256_loadu_si256(ab.add(4).cast());
                    let sums = $isum(qw, qa);
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc);
                }
            }
            hsum(acc) + _mm_cvtss_f32(_mm_movehdup_ps(mins))
        }
    };
}

q4_1_kernels!(
    "avx2,fma,f16c",
    dot_q4_1_avx2,
    rows_q4_1_avx2,
    isum_u4i8_avx2
);
q4_1_kernels!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni",
    dot_q4_1_vnni,
    rows_q4_1_vnni,
    isum_u4i8_vnni
);

/// Q4_1 weights by Q8_1 activations, tiled. Per output: the same products and sums,
/// in the same order, as the dot; the scale products of a row's four tokens are
/// formed in one multiplication, and each token's minimum term is summed in its own
/// lane.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q4_1_avx2(w: *const u8, a: *const u8, nb: usize, out: &mut Tile) {
    const { assert!(TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * 20, nb * 36);
    let mut acc = [_mm256_setzero_ps(); TILE_ROWS * TILE_TOKENS];
    // Lane 2t + 1 of row r's vector: the sum of m_w · s_a for token t.
    let mut mins = [_mm256_setzero_ps(); TILE_ROWS];
    // A row's products [d_w d_a, m_w s_a] of the four tokens, for `broadcast_at`.
    let mut prods = [0.0f32; 8];
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by
        // the wrapper).
        unsafe {
            let qa: [__m256i; TILE_TOKENS] =
                std::array::from_fn(|t| _mm256_loadu_si256(a.add(t * arow + i * 36 + 4).cast()));
            let head = |t: usize| a.add(t * arow + i * 36).cast::<i32>().read_unaligned();
            // d_a, s_a of the four tokens: [d0, s0, d1, s1, d2, s2, d3, s3].
            let ds = _mm256_cvtph_ps(_mm_setr_epi32(head(0), head(1), head(2), head(3)));
            for (r, mr) in mins.iter_mut().enumerate() {
                let wb = w.add(r * wrow + i * 20);
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
unsafe fn tile_q4_1_vnni(w: *const u8, a: *const u8, nb: usize, out: &mut Tile) {
    const { assert!(TILE_ROWS == 2 && TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * 20, nb * 36);
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
            let head = |t: usize| a.add(t * arow + i * 36).cast::<i32>().read_unaligned();
            let ds = _mm256_cvtph_ps(_mm_setr_epi32(head(0), head(1), head(2), head(3)));
            _mm256_storeu_ps(scales.as_mut_ptr(), ds);
            let (w0, w1) = (w.add(i * 20), w.add(wrow + i * 20));
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
                let qa = _mm256_loadu_si256(a.add(t * arow + i * 36 + 4).cast());
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

broadcast_load!(
    /// [`broadcast_at`] into all sixteen lanes.
    ///
    /// # Safety
    /// `p` points at a readable f32.
    broadcast16_at,
    __m512,
    zmm_reg,
    "avx2,fma,f16c,avx512f"
);

/// Sums of products of 32 signed bytes by 32 signed bytes, as 8 lanes of i32 (four adjacent
/// products each): `x`'s sign moved onto `y`, then `maddubs` and `madd`. No pair saturates:
/// activations stay within -127..=127, so a pair is at most 2 · 128 · 127 < 2^15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn isum_i8i8_avx2(x: __m256i, y: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
}

/// [`isum_i8i8_avx2`] with `vpdpbusd` for the products: the same integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
fn isum_i8i8_vnni(x: __m256i, y: __m256i) -> __m256i {
    let (ax, sy) = (_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy)
}

/// The Q8_0 × Q8_0 dot product and its four-rows kernel for one instruction set, each output
/// computed by the steps of `dot_q8_0_avx2`.
macro_rules! q8_0_kernels {
    ($features:literal, $dot:ident, $rows:ident, $isum:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $dot(w: *const u8, a: *const u8, nb: usize) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let (wb, ab) = (w.add(i * 34), a.add(i * 34));
                    let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2_at(wb), f16x2_at(ab)));
                    let qw = _mm256_loadu_si256(wb.add(2).cast());
                    let qa = _mm256_loadu_si256(ab.add(2).cast());
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps($isum(qw, qa)), acc);
                }
            }
            hsum(acc)
        }

        /// Four Q8_0 weight rows by one Q8_0 activation row, sharing the activation loads.
        #[target_feature(enable = $features)]
        unsafe fn $rows(w: *const u8, a: *const u8, nb: usize, out: &mut [f32; ROWS]) {
            let wrow = nb * 34;
            let mut acc = [_mm256_setzero_ps(); ROWS];
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let ab = a.add(i * 34);
                    if i.is_multiple_of(2) {
                        for r in 0..ROWS {
                            _mm_prefetch::<_MM_HINT_T1>(
                                w.wrapping_add(r * wrow + i * 34 + PREFETCH).cast(),
                            );
                        }
                    }
                    let da = f16x2_at(ab);
                    let qa = _mm256_loadu_si256(ab.add(2).cast());
                    for r in 0..ROWS {
                        let wb = w.add(r * wrow + i * 34);
                        let d = _mm256_broadcastss_ps(_mm_mul_ss(f16x2_at(wb), da));
                        let qw = _mm256_loadu_si256(wb.add(2).cast());
                        acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps($isum(qw, qa)), acc[r]);
                    }
                }
            }
            for r in 0..ROWS {
                out[r] = hsum(acc[r]);
            }
        }
    };
}

q8_0_kernels!(
    "avx2,fma,f16c",
    dot_q8_0_avx2,
    rows_q8_0_avx2,
    isum_i8i8_avx2
);
q8_0_kernels!(
    "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni",
    dot_q8_0_vnni,
    rows_q8_0_vnni,
    isum_i8i8_vnni
);

/// Q8_0 (`WB == 34`) or Q4_0 (`WB == 18`, `NIB == 4`) weights by Q8_0 activations, tiled.
/// Per output: the same steps as `dot_q8_0_avx2` / `dot_q4_0_avx2`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q8_avx2<const WB: usize, const NIB: usize>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * WB, nb * 34);
    let mut acc = [_mm256_setzero_ps(); TILE_ROWS * TILE_TOKENS];
    // A row's scale products d_w · d_a of the four tokens, for `broadcast_at`.
    let mut prods = [0.0f32; TILE_TOKENS];
    for i in 0..nb {
        // SAFETY: block `i < nb` of each of the tile's rows is in bounds (checked by the
        // wrapper).
        unsafe {
            let mut qa = [_mm256_setzero_si256(); TILE_TOKENS];
            for (t, q) in qa.iter_mut().enumerate() {
                *q = _mm256_loadu_si256(a.add(t * arow + i * 34 + 2).cast());
            }
            // d_a of the four tokens.
            let head = |t: usize| a.add(t * arow + i * 34).cast::<i16>().read_unaligned();
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
unsafe fn tile_q8_vnni<const WB: usize, const NIB: usize>(
    w: *const u8,
    a: *const u8,
    nb: usize,
    out: &mut Tile,
) {
    const { assert!(TILE_ROWS == 2 && TILE_TOKENS == 4) };
    let (wrow, arow) = (nb * WB, nb * 34);
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
            let head = |t: usize| a.add(t * arow + i * 34).cast::<i16>().read_unaligned();
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
                let qa = _mm256_loadu_si256(a.add(t * arow + i * 34 + 2).cast());
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

/// The 16-lane (or 4 × 16-lane) f16 dot product; see `kernels::dot_f16_lanes`. Lengths are
/// equal multiples of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> f32 {
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

/// The sum of [`dot_f16_lanes`]'s accumulators (four groups of 16 lanes, two registers each;
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

/// [`dot_f16_lanes`] for f32 keys (a Q8_0 cache's rows, widened exactly): the same order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f32_lanes(lanes64: bool, k: &[f32], q: &[f32]) -> f32 {
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

/// `acc[i] = fma(p, v[i], acc[i])` for f32 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fma_f32_row(acc: &mut [f32], p: f32, v: &[f32]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            let x = _mm256_loadu_ps(v.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, x, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] = p.mul_add(v[j], acc[j]);
    }
}

/// `acc[i] = fma(p, v[i], acc[i])`, values as f16 bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fma_f16_row(acc: &mut [f32], p: f32, v: &[u16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, vv, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] = p.mul_add(half::f16::from_bits(v[j]).to_f32(), acc[j]);
    }
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
            let block = row.add(c / 2 * Q8_0_BLOCK);
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
    if Q8 { ch / 2 * Q8_0_BLOCK } else { 32 * ch }
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
/// through [`attn_avx2::scores_heads`] (the same numbers).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and with `avx512` also AVX-512F.
pub(super) unsafe fn attn_scores(
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
                        attn_avx2::scores_heads::<$h, $ch, $q8, $l64>(k, qp, len, scale, op, len)
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
/// [`slots_heads`], else through [`attn_avx2::slots_heads`] (the same numbers).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C, and with `avx512` also AVX-512F.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attn_value_slots(
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
    let most = if avx512 { 4 } else { attn_avx2::MAX_H };
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
                        attn_avx2::slots_heads::<$h, true>(period, pp, len, vp, hd, s0, s1, ap)
                    } else {
                        attn_avx2::slots_heads::<$h, false>(period, pp, len, vp, hd, s0, s1, ap)
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
            const { assert!(attn_avx2::MAX_H == 3) };
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
pub(super) unsafe fn fold_slots(rows: usize, acc: &mut [f32], out: &mut [f32]) {
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

/// Rounds every value to f16 and back (nearest, ties to even).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn round_to_f16(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: the chunk holds exactly 8 floats.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for v in chunks.into_remainder() {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// f32 to f16 bits, rounding to nearest even.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f32_to_f16(x: &[f32], out: &mut [u16]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the load and the store inside the slices.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), h);
        }
        i += 8;
    }
    for j in i..n {
        out[j] = half::f16::from_f32(x[j]).to_bits();
    }
}

/// Eight lanes of `kernels::exp`, or `None` when a lane needs a scale outside f32's normal
/// exponents (the caller then takes the scalar path, which handles those exactly).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> Option<__m256> {
    let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
    let shift = c(EXP_SHIFT);
    let z = _mm256_fmadd_ps(x, c(EXP_LOG2E), shift);
    let n = _mm256_sub_ps(z, shift);
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    // NaN compares false here and goes to the scalar path too.
    let in_range = _mm256_cmp_ps::<_CMP_LE_OQ>(abs_n, _mm256_set1_ps(126.0));
    if _mm256_movemask_ps(in_range) != 0xFF {
        return None;
    }
    let neg_n = _mm256_sub_ps(_mm256_setzero_ps(), n);
    let b = _mm256_fmadd_ps(
        neg_n,
        c(EXP_LN2_LO),
        _mm256_fmadd_ps(neg_n, c(EXP_LN2_HI), x),
    );
    let u = _mm256_mul_ps(b, b);
    let p = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(EXP_C5), b, c(EXP_C4)),
            u,
            _mm256_fmadd_ps(c(EXP_C3), b, c(EXP_C2)),
        ),
        u,
        _mm256_fmadd_ps(c(EXP_C1), b, _mm256_set1_ps(1.0)),
    );
    // 2^n exactly, from the exponent bits; one rounding of p·2^n, as the scalar path has.
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    Some(_mm256_mul_ps(p, pow2))
}

/// Q8_0 (`with_sum == false`, 34-byte blocks) or Q8_1 (36-byte blocks) quantization of whole
/// blocks of 32 values, as `kernels::quantize_q8` computes it: scale `127 / max|x|`, products
/// rounded to nearest even (the rounding `vroundps` does), the block's integer sum for Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8(x: &[f32], out: &mut [u8], with_sum: bool) {
    let (block, head) = if with_sum { (36, 4) } else { (34, 2) };
    let sign = _mm256_set1_ps(-0.0);
    // packs interleaves 128-bit lanes; this puts the 4-byte groups back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(block)) {
        // SAFETY: `xb` holds 32 floats and `ob` a whole block, of which the 32 quants start
        // at `head`.
        unsafe {
            let p = xb.as_ptr();
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            let m = _mm256_max_ps(
                _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
            );
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let q = v.map(|v| {
                _mm256_cvtps_epi32(_mm256_round_ps::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(_mm256_mul_ps(v, id)))
            });
            let bytes = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(
                    _mm256_packs_epi32(q[0], q[1]),
                    _mm256_packs_epi32(q[2], q[3]),
                ),
                order,
            );
            _mm256_storeu_si256(ob.as_mut_ptr().add(head).cast(), bytes);
            ob[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
            if with_sum {
                let sum = hsum_i32(_mm256_add_epi32(
                    _mm256_add_epi32(q[0], q[1]),
                    _mm256_add_epi32(q[2], q[3]),
                ));
                let s = half::f16::from_f32(d * sum as f32).to_bits();
                ob[2..4].copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}

/// `x[i] = exp(x[i])`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn exp_in_place(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for ch in &mut chunks {
        // SAFETY: the chunk holds exactly 8 floats.
        let v = unsafe { _mm256_loadu_ps(ch.as_ptr()) };
        match exp8(v) {
            // SAFETY: as above.
            Some(e) => unsafe { _mm256_storeu_ps(ch.as_mut_ptr(), e) },
            None => ch.iter_mut().for_each(|v| *v = super::exp(*v)),
        }
    }
    for v in chunks.into_remainder() {
        *v = super::exp(*v);
    }
}

/// `gate[i] = gate[i] / (1 + exp(0 − gate[i])) · up[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let neg = _mm256_sub_ps(_mm256_setzero_ps(), g);
            match exp8(neg) {
                Some(e) => {
                    let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                    let out = _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i)));
                    _mm256_storeu_ps(gate.as_mut_ptr().add(i), out);
                }
                None => {
                    for j in i..i + 8 {
                        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
                    }
                }
            }
        }
        i += 8;
    }
    for j in i..n {
        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes, and Q8_1 activation blocks with sane scales.
    fn blocks(nb: usize, block: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        let mut out: Vec<u8> = (0..nb * block)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect();
        for (i, b) in out.chunks_exact_mut(block).enumerate() {
            let scale = half::f16::from_f32(0.01 + 0.003 * (i % 5) as f32).to_bits();
            let min = half::f16::from_f32(-0.2 + 0.01 * (i % 7) as f32).to_bits();
            b[..2].copy_from_slice(&scale.to_le_bytes());
            b[2..4].copy_from_slice(&min.to_le_bytes());
            if block == 36 {
                // Activations are symmetric 8-bit values: keep them within -127..=127.
                for q in &mut b[4..] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn vnni_kernels_equal_the_avx2_ones_bit_for_bit() {
        if !has_vnni() {
            eprintln!("this CPU has no AVX-512 VNNI: only the AVX2 kernels run here");
            return;
        }
        let nb = 18;
        for seed in 0..16 {
            let w = blocks(nb * TILE_ROWS, 20, seed);
            let a = blocks(nb * TILE_TOKENS, 36, seed + 1000);
            // SAFETY: both CPUs' features were checked; the rows hold `nb` whole blocks.
            let (x, y) = unsafe {
                (
                    dot_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb),
                    dot_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb),
                )
            };
            assert_eq!(x.to_bits(), y.to_bits(), "dot, seed {seed}");
            // Q8_0 by Q8_0: any weight bytes, activations within -127..=127.
            let w8 = blocks(nb * ROWS, 34, seed + 2000);
            let mut a8 = blocks(nb, 34, seed + 3000);
            for q in a8.chunks_exact_mut(34).flat_map(|b| &mut b[2..]) {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
            let (mut r1, mut r2) = ([0.0; ROWS], [0.0; ROWS]);
            // SAFETY: as above, with `ROWS` weight rows of Q8_0.
            let (x8, y8) = unsafe {
                rows_q8_0_avx2(w8.as_ptr(), a8.as_ptr(), nb, &mut r1);
                rows_q8_0_vnni(w8.as_ptr(), a8.as_ptr(), nb, &mut r2);
                (
                    dot_q8_0_avx2(w8.as_ptr(), a8.as_ptr(), nb),
                    dot_q8_0_vnni(w8.as_ptr(), a8.as_ptr(), nb),
                )
            };
            assert_eq!(x8.to_bits(), y8.to_bits(), "Q8_0 dot, seed {seed}");
            assert_eq!(
                r1.map(f32::to_bits),
                r2.map(f32::to_bits),
                "Q8_0 rows, seed {seed}"
            );
            assert_eq!(
                r1[0].to_bits(),
                x8.to_bits(),
                "Q8_0 rows vs dot, seed {seed}"
            );
            let (mut t1, mut t2) = (
                [0.0; TILE_ROWS * TILE_TOKENS],
                [0.0; TILE_ROWS * TILE_TOKENS],
            );
            // SAFETY: as above, with `TILE_ROWS` and `TILE_TOKENS` rows.
            unsafe {
                tile_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, &mut t1);
                tile_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, &mut t2);
            }
            assert_eq!(
                t1.map(f32::to_bits),
                t2.map(f32::to_bits),
                "tile, seed {seed}"
            );
            // Q8_0 and Q4_0 tiles: any weight bytes (-128 included), activations within
            // -127..=127.
            let mut at = blocks(nb * TILE_TOKENS, 34, seed + 4000);
            for q in at.chunks_exact_mut(34).flat_map(|b| &mut b[2..]) {
                if *q == 0x80 {
                    *q = 0x81;
                }
            }
            let (w8, w4) = (
                blocks(nb * TILE_ROWS, 34, seed + 5000),
                blocks(nb * TILE_ROWS, 18, seed + 6000),
            );
            let mut t = [[0.0; TILE_ROWS * TILE_TOKENS]; 4];
            // SAFETY: as above, with `TILE_ROWS` weight rows of Q8_0 and of Q4_0.
            unsafe {
                tile_q8_avx2::<34, 0>(w8.as_ptr(), at.as_ptr(), nb, &mut t[0]);
                tile_q8_vnni::<34, 0>(w8.as_ptr(), at.as_ptr(), nb, &mut t[1]);
                tile_q8_avx2::<18, 4>(w4.as_ptr(), at.as_ptr(), nb, &mut t[2]);
                tile_q8_vnni::<18, 4>(w4.as_ptr(), at.as_ptr(), nb, &mut t[3]);
            }
            assert_eq!(
                t[0].map(f32::to_bits),
                t[1].map(f32::to_bits),
                "Q8_0 tile, {seed}"
            );
            assert_eq!(
                t[2].map(f32::to_bits),
                t[3].map(f32::to_bits),
                "Q4_0 tile, {seed}"
            );
        }
    }
}
