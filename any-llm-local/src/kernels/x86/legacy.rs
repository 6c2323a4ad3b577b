//! The 32-value block families (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) by Q8_0 or Q8_1 activations
//! with AVX2, and with AVX-512 VNNI (`vpdpbusd`) for the byte products where the CPU has it:
//! the dot products and the several-rows kernels here, the prefill tiles in [`tiles`]. Both
//! instruction sets give the same integers, so the same floats.

use std::arch::x86_64::*;

use super::hsum;
use crate::kernels::{DotFn, ROWS, RowsFn, TileFn};
use crate::quant::{
    GgmlType, Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK,
};

mod tiles;

#[cfg(test)]
pub(super) use tiles::{tile_q4_1_avx2, tile_q4_1_vnni, tile_q8_avx2, tile_q8_vnni};

/// The dot product for `ty`, with `vnni` where the CPU has AVX-512 VNNI; the CPU has AVX2.
pub(super) fn dot_fn(ty: GgmlType, vnni: bool) -> Option<DotFn> {
    if vnni {
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
        _ => None,
    }
}

/// The tiled dot product for `ty`, with `vnni` where the CPU has AVX-512 VNNI; the CPU has
/// AVX2.
pub(super) fn tile_fn(ty: GgmlType, vnni: bool) -> Option<TileFn> {
    if vnni {
        return match ty {
            GgmlType::Q8_0 => Some(tiles::tile_q8_0_vnni),
            GgmlType::Q4_0 => Some(tiles::tile_q4_0_vnni),
            GgmlType::Q4_1 => Some(tiles::tile_q4_1_vnni_checked),
            _ => None,
        };
    }
    match ty {
        GgmlType::Q8_0 => Some(tiles::tile_q8_0),
        GgmlType::Q4_0 => Some(tiles::tile_q4_0),
        GgmlType::Q4_1 => Some(tiles::tile_q4_1),
        _ => None,
    }
}

/// The several-rows kernel for `ty`, with `vnni` where the CPU has AVX-512 VNNI; the CPU has
/// AVX2.
pub(super) fn rows_fn(ty: GgmlType, vnni: bool) -> Option<RowsFn> {
    match ty {
        GgmlType::Q4_1 if vnni => Some(rows_q4_1_vnni_checked),
        GgmlType::Q4_1 => Some(rows_q4_1),
        GgmlType::Q8_0 if vnni => Some(rows_q8_0_vnni_checked),
        GgmlType::Q8_0 => Some(rows_q8_0),
        _ => None,
    }
}

fn rows_q4_1(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, Q4_1_BYTES * ROWS, Q8_1_BYTES);
    // SAFETY: `rows_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, Q4_1_BYTES * ROWS, Q8_1_BYTES);
    // SAFETY: as in `tile_q4_1_vnni_checked`.
    unsafe { rows_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q8_0(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, Q8_0_BYTES * ROWS, Q8_0_BYTES);
    // SAFETY: `rows_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // the slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q8_0_avx2(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn rows_q8_0_vnni_checked(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, Q8_0_BYTES * ROWS, Q8_0_BYTES);
    // SAFETY: `rows_fn` hands this out only when `has_vnni()` said yes; `check` proved the
    // slices hold `ROWS` rows and one row of `nb` whole blocks.
    unsafe { rows_q8_0_vnni(w.as_ptr(), a.as_ptr(), nb, out) }
}

fn dot_q8_0_vnni_checked(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q8_0_BYTES, Q8_0_BYTES);
    // SAFETY: `dot_fn` hands this out only when `has_vnni()` said yes; `check` proved both
    // slices hold `nb` whole blocks.
    unsafe { dot_q8_0_vnni(w.as_ptr(), a.as_ptr(), nb) }
}

fn check(w: &[u8], a: &[u8], n: usize, wb: usize, ab: usize) -> usize {
    let nb = n / QK;
    assert!(
        n.is_multiple_of(QK) && w.len() == nb * wb && a.len() == nb * ab,
        "row sizes do not match n = {n}"
    );
    nb
}

fn dot_q8_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q8_0_BYTES, Q8_0_BYTES);
    // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // both slices hold `nb` whole blocks.
    unsafe { dot_q8_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q4_0_BYTES, Q8_0_BYTES);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q4_1_BYTES, Q8_1_BYTES);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q5_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q5_0_BYTES, Q8_0_BYTES);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q5_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q5_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q5_1_BYTES, Q8_1_BYTES);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q5_1_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_1_vnni_checked(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, Q4_1_BYTES, Q8_1_BYTES);
    // SAFETY: `dot_fn` hands this out only when `has_vnni()` said yes; `check` proved both
    // slices hold `nb` whole blocks.
    unsafe { dot_q4_1_vnni(w.as_ptr(), a.as_ptr(), nb) }
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
            let (wb, ab) = (w.add(i * Q4_0_BYTES), a.add(i * Q8_0_BYTES));
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
            let (wb, ab) = (w.add(i * Q5_0_BYTES), a.add(i * Q8_0_BYTES));
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
            let (wb, ab) = (w.add(i * Q5_1_BYTES), a.add(i * Q8_1_BYTES));
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

/// The Q4_1 × Q8_1 dot product and its tile, for one instruction set: `$isum` sums a block's
/// integer products into 8 lanes. Both variants give the same integers, so the same floats.
macro_rules! q4_1_kernels {
    ($features:literal, $dot:ident, $rows:ident, $isum:ident) => {
        /// Four Q4_1 weight rows by one Q8_1 activation row. Per output: the same products
        /// and sums, in the same order, as the dot; the four rows' scale products are formed
        /// in one multiplication, each row's minimum term summed in its own lane.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $rows(w: *const u8, a: *const u8, nb: usize, out: &mut [f32; ROWS]) {
            const { assert!(ROWS == 4) };
            let wrow = nb * Q4_1_BYTES;
            let mut acc = [_mm256_setzero_ps(); ROWS];
            // Lane 2r + 1: the sum of m_w · s_a for row r.
            let mut mins = _mm256_setzero_ps();
            // The block's products [d_w0 d_a, m_w0 s_a, d_w1 d_a, ...], for `broadcast_at`.
            let mut prods = [0.0f32; 8];
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let ab = a.add(i * Q8_1_BYTES);
                    if i.is_multiple_of(3) {
                        for r in 0..ROWS {
                            _mm_prefetch::<_MM_HINT_T1>(
                                w.wrapping_add(r * wrow + i * Q4_1_BYTES + PREFETCH).cast(),
                            );
                        }
                    }
                    // [d_a, s_a] four times.
                    let ds = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(f16x2_at(ab))));
                    let qa = _mm256_loadu_si256(ab.add(4).cast());
                    let mut heads = [0i32; ROWS];
                    for (r, h) in heads.iter_mut().enumerate() {
                        *h = w
                            .add(r * wrow + i * Q4_1_BYTES)
                            .cast::<i32>()
                            .read_unaligned();
                    }
                    // [d_w0 d_a, m_w0 s_a, d_w1 d_a, ...].
                    let prod =
                        _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(heads.as_ptr().cast())), ds);
                    mins = _mm256_add_ps(mins, prod);
                    _mm256_storeu_ps(prods.as_mut_ptr(), prod);
                    for r in 0..ROWS {
                        let qw = nibbles(w.add(r * wrow + i * Q4_1_BYTES + 4));
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
        pub(super) unsafe fn $dot(w: *const u8, a: *const u8, nb: usize) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut mins = _mm_setzero_ps();
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let (wb, ab) = (w.add(i * Q4_1_BYTES), a.add(i * Q8_1_BYTES));
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
        pub(super) unsafe fn $dot(w: *const u8, a: *const u8, nb: usize) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let (wb, ab) = (w.add(i * Q8_0_BYTES), a.add(i * Q8_0_BYTES));
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
        pub(super) unsafe fn $rows(w: *const u8, a: *const u8, nb: usize, out: &mut [f32; ROWS]) {
            let wrow = nb * Q8_0_BYTES;
            let mut acc = [_mm256_setzero_ps(); ROWS];
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
                unsafe {
                    let ab = a.add(i * Q8_0_BYTES);
                    if i.is_multiple_of(2) {
                        for r in 0..ROWS {
                            _mm_prefetch::<_MM_HINT_T1>(
                                w.wrapping_add(r * wrow + i * Q8_0_BYTES + PREFETCH).cast(),
                            );
                        }
                    }
                    let da = f16x2_at(ab);
                    let qa = _mm256_loadu_si256(ab.add(2).cast());
                    for r in 0..ROWS {
                        let wb = w.add(r * wrow + i * Q8_0_BYTES);
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
