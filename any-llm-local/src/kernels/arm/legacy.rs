//! The 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) by their 8-bit activations: one
//! dot product, four weight rows by one activation row, and the 2 × 4 tile.
//!
//! Per output, all three run the same steps in the same order, so they give the same bits —
//! and the same as the x86 kernels (AVX2 and VNNI), which sum as llama.cpp's x86 build does:
//! each block's integer sums in eight lanes of four adjacent bytes (two registers: values
//! 0..16 and 16..32; equal with and without `sdot`), turned f32 and fused-multiply-added with
//! the block's scale product `d_w · d_a`; the eight lanes summed as
//! `((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7))`; for the formats with a minimum, the products
//! `m_w · s_a` summed one block after another and added last.

use std::arch::aarch64::*;

use super::super::{DotFn, ROWS, RowsFn, TILE_ROWS, TILE_TOKENS, TileFn};
use super::{check, f16x4_to_f32, isum16_dotprod, isum16_neon, lanes, load32};
use crate::quant::{
    GgmlType, Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES, Q8_1_BYTES,
};

type Tile = [f32; TILE_ROWS * TILE_TOKENS];

/// A weight format of 32-value blocks, as the kernels read it.
pub(super) trait Weights {
    /// Bytes per block.
    const BYTES: usize;
    /// Whether blocks carry a minimum `m` after the scale `d` (Q4_1, Q5_1). Those pair with
    /// Q8_1 activations, whose `s = d · Σq` pays for it; the others pair with Q8_0.
    const MIN: bool;
    /// The block's 32 quants as signed bytes in value order, offset removed.
    ///
    /// # Safety
    /// `p` points at a whole block.
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2];
}

/// Bytes per activation block of the format `W` pairs with.
const fn act_bytes<W: Weights>() -> usize {
    if W::MIN { Q8_1_BYTES } else { Q8_0_BYTES }
}

/// 16 bytes of nibbles at `p` as 32 values: the low nibbles (values 0..16), then the high ones.
///
/// # Safety
/// `p` points at 16 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(p: *const u8) -> [uint8x16_t; 2] {
    // SAFETY: the caller's promise.
    let b = unsafe { vld1q_u8(p) };
    [vandq_u8(b, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(b)]
}

/// The 32 fifth bits of a Q5_0/Q5_1 block (`qh`, bit `i` for value `i`) as bytes: 16 where
/// the bit is set, 0 where not.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: u32) -> [uint8x16_t; 2] {
    let [b0, b1, b2, b3] = qh.to_le_bytes();
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let spread = |x: u8, y: u8| vcombine_u8(vdup_n_u8(x), vdup_n_u8(y));
    let sixteen = |s: uint8x16_t| vandq_u8(vtstq_u8(s, bit), vdupq_n_u8(16));
    [sixteen(spread(b0, b1)), sixteen(spread(b2, b3))]
}

/// Unsigned quants less `offset`, as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn signed(q: [uint8x16_t; 2], offset: u8) -> [int8x16_t; 2] {
    q.map(|q| vreinterpretq_s8_u8(vsubq_u8(q, vdupq_n_u8(offset))))
}

pub(super) enum Q4_0 {}
pub(super) enum Q4_1 {}
pub(super) enum Q5_0 {}
pub(super) enum Q5_1 {}
pub(super) enum Q8_0 {}

impl Weights for Q4_0 {
    const BYTES: usize = Q4_0_BYTES;
    const MIN: bool = false;
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2] {
        // SAFETY: the nibbles are bytes 2..18 of the block.
        signed(unsafe { nibbles(p.add(2)) }, 8)
    }
}

impl Weights for Q4_1 {
    const BYTES: usize = Q4_1_BYTES;
    const MIN: bool = true;
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2] {
        // SAFETY: the nibbles are bytes 4..20 of the block.
        signed(unsafe { nibbles(p.add(4)) }, 0)
    }
}

impl Weights for Q5_0 {
    const BYTES: usize = Q5_0_BYTES;
    const MIN: bool = false;
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2] {
        // SAFETY: `qh` is bytes 2..6 of the block, the nibbles 6..22.
        let (qh, lo) = unsafe { (p.add(2).cast::<u32>().read_unaligned(), nibbles(p.add(6))) };
        let hi = fifth_bits(u32::from_le(qh));
        signed([vorrq_u8(lo[0], hi[0]), vorrq_u8(lo[1], hi[1])], 16)
    }
}

impl Weights for Q5_1 {
    const BYTES: usize = Q5_1_BYTES;
    const MIN: bool = true;
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2] {
        // SAFETY: `qh` is bytes 4..8 of the block, the nibbles 8..24.
        let (qh, lo) = unsafe { (p.add(4).cast::<u32>().read_unaligned(), nibbles(p.add(8))) };
        let hi = fifth_bits(u32::from_le(qh));
        signed([vorrq_u8(lo[0], hi[0]), vorrq_u8(lo[1], hi[1])], 0)
    }
}

impl Weights for Q8_0 {
    const BYTES: usize = Q8_0_BYTES;
    const MIN: bool = false;
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn quants(p: *const u8) -> [int8x16_t; 2] {
        // SAFETY: the quants are bytes 2..34 of the block.
        unsafe { load32(p.add(2)) }
    }
}

/// The f16 bits at `p`.
///
/// # Safety
/// `p` points at 2 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn f16_bits(p: *const u8) -> u16 {
    // SAFETY: the caller's promise.
    u16::from_le(unsafe { p.cast::<u16>().read_unaligned() })
}

/// The heads of four blocks `stride` bytes apart as f32: their scales `d`, and their second
/// fields (`m` or `s`) where `with_min`, zero where not.
///
/// # Safety
/// `p + k * stride` points at a whole block for `k < 4`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn heads4(p: *const u8, stride: usize, with_min: bool) -> (float32x4_t, float32x4_t) {
    let (mut d, mut m) = ([0u16; 4], [0u16; 4]);
    for k in 0..4 {
        // SAFETY: the caller's promise; every block starts with `d` and, with a minimum, `m`
        // or `s`.
        unsafe {
            let b = p.add(k * stride);
            d[k] = f16_bits(b);
            if with_min {
                m[k] = f16_bits(b.add(2));
            }
        }
    }
    // SAFETY: both arrays hold four values.
    unsafe {
        (
            f16x4_to_f32(vld1_u16(d.as_ptr())),
            f16x4_to_f32(vld1_u16(m.as_ptr())),
        )
    }
}

/// The head of one block as f32: `[d, m or s (zero without a minimum), 0, 0]`.
///
/// # Safety
/// `p` points at a whole block.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn head(p: *const u8, with_min: bool) -> float32x4_t {
    // SAFETY: the caller's promise.
    let bits = unsafe {
        [
            f16_bits(p),
            if with_min { f16_bits(p.add(2)) } else { 0 },
            0,
            0,
        ]
    };
    // SAFETY: the array holds four values.
    f16x4_to_f32(unsafe { vld1_u16(bits.as_ptr()) })
}

/// Eight f32 lanes in two registers: lanes 0..4 take a block's values 0..16, lanes 4..8 its
/// values 16..32.
type Lanes8 = [float32x4_t; 2];

/// `acc + sums · d` lane by lane, fused.
#[inline]
#[target_feature(enable = "neon")]
fn fma8(acc: Lanes8, sums: [int32x4_t; 2], d: f32) -> Lanes8 {
    [
        vfmaq_n_f32(acc[0], vcvtq_f32_s32(sums[0]), d),
        vfmaq_n_f32(acc[1], vcvtq_f32_s32(sums[1]), d),
    ]
}

/// The sum of eight lanes in the x86 kernels' order: `((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7))`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum8(v: Lanes8) -> f32 {
    let x = vaddq_f32(v[0], v[1]);
    vpadds_f32(vadd_f32(vget_low_f32(x), vget_high_f32(x)))
}

/// Lane `k`: [`hsum8`] of `v[k]`, four at once.
#[inline]
#[target_feature(enable = "neon")]
fn reduce4x8(v: [Lanes8; 4]) -> float32x4_t {
    let x = v.map(|v| vaddq_f32(v[0], v[1]));
    // [a0 + a2, a1 + a3, b0 + b2, b1 + b3].
    let halves = |a: float32x4_t, b: float32x4_t| {
        let lo = vcombine_f32(vget_low_f32(a), vget_low_f32(b));
        vaddq_f32(lo, vcombine_f32(vget_high_f32(a), vget_high_f32(b)))
    };
    vpaddq_f32(halves(x[0], x[1]), halves(x[2], x[3]))
}

/// The dot product, four-rows and tile kernels for one way of summing bytes: `$isum16` sums
/// 16 products into four lanes of i32, as `sdot` groups them; `$isum` applies it to both
/// halves of a block.
macro_rules! kernels {
    (
        $(#[$feature:meta])*
        $isum16:ident,
        $isum:ident,
        $dot:ident,
        $rows:ident,
        $tile:ident
    ) => {
        /// The integer sums of a block's two halves, four lanes each.
        #[inline]
        $(#[$feature])*
        fn $isum(x: [int8x16_t; 2], y: [int8x16_t; 2]) -> [int32x4_t; 2] {
            [$isum16(x[0], y[0]), $isum16(x[1], y[1])]
        }

        /// One weight row by one activation row, `nb` blocks.
        ///
        /// # Safety
        /// Both rows hold `nb` whole blocks; the CPU has the function's target features.
        $(#[$feature])*
        unsafe fn $dot<W: Weights>(w: *const u8, a: *const u8, nb: usize) -> f32 {
            let ab = act_bytes::<W>();
            let mut acc = [vdupq_n_f32(0.0); 2];
            let mut mins = 0.0f32;
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (the caller's promise).
                unsafe {
                    let (wb, ab) = (w.add(i * W::BYTES), a.add(i * ab));
                    let (hw, ha) = (head(wb, W::MIN), head(ab, W::MIN));
                    // [d_w · d_a, m_w · s_a].
                    let prod = vmul_f32(vget_low_f32(hw), vget_low_f32(ha));
                    let sums = $isum(W::quants(wb), load32(ab.add(ab_quants::<W>())));
                    acc = fma8(acc, sums, vget_lane_f32::<0>(prod));
                    if W::MIN {
                        mins += vget_lane_f32::<1>(prod);
                    }
                }
            }
            if W::MIN { hsum8(acc) + mins } else { hsum8(acc) }
        }

        /// [`ROWS`] consecutive weight rows (`nb` blocks each) by one activation row, sharing
        /// the activation loads; per row, the steps of the dot product.
        ///
        /// # Safety
        /// `w` holds `ROWS` rows and `a` one row of `nb` whole blocks; the CPU has the
        /// function's target features.
        $(#[$feature])*
        unsafe fn $rows<W: Weights>(w: *const u8, a: *const u8, nb: usize, out: &mut [f32; ROWS]) {
            const { assert!(ROWS == 4) };
            let (wrow, ab) = (nb * W::BYTES, act_bytes::<W>());
            let mut acc = [[vdupq_n_f32(0.0); 2]; ROWS];
            // Lane r: row r's sum of m_w · s_a.
            let mut mins = vdupq_n_f32(0.0);
            for i in 0..nb {
                // SAFETY: block `i < nb` of each row is in bounds (the caller's promise).
                unsafe {
                    let ab = a.add(i * ab);
                    let qa = load32(ab.add(ab_quants::<W>()));
                    let ha = head(ab, W::MIN);
                    let (dw, mw) = heads4(w.add(i * W::BYTES), wrow, W::MIN);
                    let d = lanes(vmulq_laneq_f32::<0>(dw, ha));
                    if W::MIN {
                        mins = vaddq_f32(mins, vmulq_laneq_f32::<1>(mw, ha));
                    }
                    for r in 0..ROWS {
                        let sums = $isum(W::quants(w.add(r * wrow + i * W::BYTES)), qa);
                        acc[r] = fma8(acc[r], sums, d[r]);
                    }
                }
            }
            let total = if W::MIN { vaddq_f32(reduce4x8(acc), mins) } else { reduce4x8(acc) };
            // SAFETY: `out` holds four floats.
            unsafe { vst1q_f32(out.as_mut_ptr(), total) };
        }

        /// [`TILE_ROWS`] weight rows by [`TILE_TOKENS`] activation rows (`nb` blocks each),
        /// sharing their loads; per output, the steps of the dot product.
        ///
        /// # Safety
        /// `w` holds `TILE_ROWS` rows and `a` `TILE_TOKENS` rows of `nb` whole blocks; the
        /// CPU has the function's target features.
        $(#[$feature])*
        unsafe fn $tile<W: Weights>(w: *const u8, a: *const u8, nb: usize, out: &mut Tile) {
            const { assert!(TILE_TOKENS == 4) };
            let (wrow, arow, ab) = (nb * W::BYTES, nb * act_bytes::<W>(), act_bytes::<W>());
            let mut acc = [[vdupq_n_f32(0.0); 2]; TILE_ROWS * TILE_TOKENS];
            // Lane t of row r's vector: the sum of m_w · s_a for token t.
            let mut mins = [vdupq_n_f32(0.0); TILE_ROWS];
            for i in 0..nb {
                // SAFETY: block `i < nb` of each of the tile's rows is in bounds (the caller's
                // promise).
                unsafe {
                    let qa: [[int8x16_t; 2]; TILE_TOKENS] = std::array::from_fn(|t| {
                        load32(a.add(t * arow + i * ab + ab_quants::<W>()))
                    });
                    let (da, sa) = heads4(a.add(i * ab), arow, W::MIN);
                    for r in 0..TILE_ROWS {
                        let wb = w.add(r * wrow + i * W::BYTES);
                        let hw = head(wb, W::MIN);
                        let d = lanes(vmulq_laneq_f32::<0>(da, hw));
                        if W::MIN {
                            mins[r] = vaddq_f32(mins[r], vmulq_laneq_f32::<1>(sa, hw));
                        }
                        let qw = W::quants(wb);
                        for t in 0..TILE_TOKENS {
                            let k = r * TILE_TOKENS + t;
                            let sums = $isum(qw, qa[t]);
                            acc[k] = fma8(acc[k], sums, d[t]);
                        }
                    }
                }
            }
            for r in 0..TILE_ROWS {
                let row = [0, 1, 2, 3].map(|t| acc[r * TILE_TOKENS + t]);
                let total = if W::MIN {
                    vaddq_f32(reduce4x8(row), mins[r])
                } else {
                    reduce4x8(row)
                };
                // SAFETY: row r's outputs are four floats of `out`.
                unsafe { vst1q_f32(out.as_mut_ptr().add(r * TILE_TOKENS), total) };
            }
        }
    };
}

kernels!(
    #[target_feature(enable = "neon")]
    isum16_neon,
    isum_neon,
    dot_neon,
    rows_neon,
    tile_neon
);
kernels!(
    #[target_feature(enable = "neon,dotprod")]
    isum16_dotprod,
    isum_dotprod,
    dot_dotprod,
    rows_dotprod,
    tile_dotprod
);

/// Where the quants of an activation block start.
const fn ab_quants<W: Weights>() -> usize {
    if W::MIN { 4 } else { 2 }
}

/// The dot product of `W` weights, with `sdot` where `DOTPROD`.
fn dot<W: Weights, const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, W::BYTES, act_bytes::<W>());
    // SAFETY: `check` proved both rows hold `nb` whole blocks; `dot_fn` hands these out
    // only where the build has NEON, the `DOTPROD` variant where the CPU has `dotprod`.
    unsafe {
        if DOTPROD {
            dot_dotprod::<W>(w.as_ptr(), a.as_ptr(), nb)
        } else {
            dot_neon::<W>(w.as_ptr(), a.as_ptr(), nb)
        }
    }
}

/// The four-rows kernel of `W` weights, with `sdot` where `DOTPROD`.
fn rows<W: Weights, const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize, out: &mut [f32; ROWS]) {
    let nb = check(w, a, n, W::BYTES * ROWS, act_bytes::<W>());
    // SAFETY: `check` proved the slices hold `ROWS` rows and one row of `nb` whole blocks;
    // `rows_fn` hands these out only where the build has NEON, the `DOTPROD` variant where
    // the CPU has `dotprod`.
    unsafe {
        if DOTPROD {
            rows_dotprod::<W>(w.as_ptr(), a.as_ptr(), nb, out);
        } else {
            rows_neon::<W>(w.as_ptr(), a.as_ptr(), nb, out);
        }
    }
}

/// The tile of `W` weights, with `sdot` where `DOTPROD`.
fn tile<W: Weights, const DOTPROD: bool>(w: &[u8], a: &[u8], n: usize, out: &mut Tile) {
    let nb = check(
        w,
        a,
        n,
        W::BYTES * TILE_ROWS,
        act_bytes::<W>() * TILE_TOKENS,
    );
    // SAFETY: `check` proved the slices hold `TILE_ROWS` and `TILE_TOKENS` rows of `nb`
    // whole blocks; `tile_fn` hands these out only where the build has NEON, the `DOTPROD`
    // variant where the CPU has `dotprod`.
    unsafe {
        if DOTPROD {
            tile_dotprod::<W>(w.as_ptr(), a.as_ptr(), nb, out);
        } else {
            tile_neon::<W>(w.as_ptr(), a.as_ptr(), nb, out);
        }
    }
}

/// The dot product for `ty`; `DOTPROD` only where the CPU has `dotprod`.
pub(super) fn dot_fn<const DOTPROD: bool>(ty: GgmlType) -> Option<DotFn> {
    Some(match ty {
        GgmlType::Q4_0 => dot::<Q4_0, DOTPROD>,
        GgmlType::Q4_1 => dot::<Q4_1, DOTPROD>,
        GgmlType::Q5_0 => dot::<Q5_0, DOTPROD>,
        GgmlType::Q5_1 => dot::<Q5_1, DOTPROD>,
        GgmlType::Q8_0 => dot::<Q8_0, DOTPROD>,
        _ => return None,
    })
}

/// The four-rows kernel for `ty`; `DOTPROD` only where the CPU has `dotprod`.
pub(super) fn rows_fn<const DOTPROD: bool>(ty: GgmlType) -> Option<RowsFn> {
    Some(match ty {
        GgmlType::Q4_0 => rows::<Q4_0, DOTPROD>,
        GgmlType::Q4_1 => rows::<Q4_1, DOTPROD>,
        GgmlType::Q5_0 => rows::<Q5_0, DOTPROD>,
        GgmlType::Q5_1 => rows::<Q5_1, DOTPROD>,
        GgmlType::Q8_0 => rows::<Q8_0, DOTPROD>,
        _ => return None,
    })
}

/// The tile for `ty`; `DOTPROD` only where the CPU has `dotprod`.
pub(super) fn tile_fn<const DOTPROD: bool>(ty: GgmlType) -> Option<TileFn> {
    Some(match ty {
        GgmlType::Q4_0 => tile::<Q4_0, DOTPROD>,
        GgmlType::Q4_1 => tile::<Q4_1, DOTPROD>,
        GgmlType::Q5_0 => tile::<Q5_0, DOTPROD>,
        GgmlType::Q5_1 => tile::<Q5_1, DOTPROD>,
        GgmlType::Q8_0 => tile::<Q8_0, DOTPROD>,
        _ => return None,
    })
}
