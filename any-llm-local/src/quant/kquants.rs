//! The 256-value "K" super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation
//! format Q8_K.
//!
//! Each weight block splits into sub-blocks (16 of 16 values, or 8 of 32) with their own
//! small integer scale (and, for Q2_K, Q4_K, Q5_K, a minimum), multiplied by the block's `f16`
//! `d` (and `dmin`). Q8_K carries the sums of each 16 of its quants (`bsums`), so a dot product
//! pays for the weight minimums with 16 multiplications instead of 256.
//!
//! The unpacking helpers below return the quants in value order, which the dequantizers and
//! dot products share; the bit positions follow ggml's `block_q*_K` layouts.

use half::f16;

use super::Block;
use super::GgmlType;
use super::float::{f16_at, put_f16};

/// Values per K super-block.
pub const QK_K: usize = 256;

/// Q2_K: 16 sub-blocks of 16, `x = d * sc * q - dmin * m`, `q` in 0..4.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, minimum in the high nibble.
    pub scales: [u8; 16],
    /// 2-bit quants.
    pub qs: [u8; 64],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
}

/// Q3_K: 16 sub-blocks of 16, `x = d * (sc - 32) * q`, `q` in -4..4.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ3K {
    /// High bits: bit `i` of byte `l` for value `32 * i + l`; a clear bit subtracts 4.
    pub hmask: [u8; 32],
    /// Low 2 bits.
    pub qs: [u8; 64],
    /// 16 6-bit scales, packed.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}

/// Q4_K: 8 sub-blocks of 32, `x = d * sc * q - dmin * m`, `q` in 0..16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
    /// 8 6-bit scales and 8 6-bit minimums, packed.
    pub scales: [u8; 12],
    /// 4-bit quants.
    pub qs: [u8; 128],
}

/// Q5_K: as Q4_K with a fifth bit, `q` in 0..32.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the minimums.
    pub dmin: f16,
    /// 8 6-bit scales and 8 6-bit minimums, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: bit `i` of byte `l` for value `32 * i + l`.
    pub qh: [u8; 32],
    /// Low 4 bits.
    pub qs: [u8; 128],
}

/// Q6_K: 16 sub-blocks of 16, `x = d * sc * (q - 32)`, `q` in 0..64.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; 128],
    /// High 2 bits.
    pub qh: [u8; 64],
    /// Signed 8-bit sub-block scales.
    pub scales: [i8; 16],
    /// Super-block scale.
    pub d: f16,
}

/// Q8_K: `x = d * q`, with `bsums[j]` the sum of quants `16 j .. 16 j + 16`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale (an `f32`, unlike every other block).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sums of each 16 quants.
    pub bsums: [i16; 16],
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) in Q4_K/Q5_K packing: the first four
/// sit in the low 6 bits of bytes 0..4 and 4..8; the last four take their low 4 bits from
/// bytes 8..12 and their top 2 bits from the spare bits of bytes 0..8.
pub fn scale_min_k4(scales: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

impl BlockQ2K {
    /// The 2-bit quants in value order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (n, j, l) = (e / 128, (e / 32) % 4, e % 32);
            (self.qs[n * 32 + l] >> (2 * j)) & 3
        })
    }
}

impl BlockQ3K {
    /// The 16 signed scales (`sc - 32`).
    pub fn signed_scales(&self) -> [i8; 16] {
        std::array::from_fn(|s| {
            let low = if s < 8 {
                self.scales[s] & 0x0f
            } else {
                self.scales[s - 8] >> 4
            };
            let high = (self.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
            (low | (high << 4)) as i8 - 32
        })
    }

    /// The quants in value order, in -4..4.
    pub fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (n, j, l) = (e / 128, (e / 32) % 4, e % 32);
            let low = ((self.qs[n * 32 + l] >> (2 * j)) & 3) as i8;
            let high_set = (self.hmask[l] >> (e / 32)) & 1 == 1;
            if high_set { low } else { low - 4 }
        })
    }
}

impl BlockQ4K {
    /// The 4-bit quants in value order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (c, k, l) = (e / 64, (e / 32) % 2, e % 32);
            (self.qs[c * 32 + l] >> (4 * k)) & 0x0f
        })
    }
}

impl BlockQ5K {
    /// The 5-bit quants in value order.
    pub fn quants(&self) -> [u8; QK_K] {
        std::array::from_fn(|e| {
            let (c, k, l) = (e / 64, (e / 32) % 2, e % 32);
            let low = (self.qs[c * 32 + l] >> (4 * k)) & 0x0f;
            low | (((self.qh[l] >> (e / 32)) & 1) << 4)
        })
    }
}

impl BlockQ6K {
    /// The quants in value order, in -32..32.
    pub fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (h, j, l) = (e / 128, (e / 32) % 4, e % 32);
            let low = (self.ql[h * 64 + (j % 2) * 32 + l] >> (4 * (j / 2))) & 0x0f;
            let high = (self.qh[h * 32 + l] >> (2 * j)) & 3;
            (low | (high << 4)) as i8 - 32
        })
    }
}

impl Block for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    fn read(b: &[u8]) -> Self {
        Self {
            scales: arr(b, 0),
            qs: arr(b, 16),
            d: f16_at(b, 80),
            dmin: f16_at(b, 82),
        }
    }
    fn write(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.scales);
        out[16..80].copy_from_slice(&self.qs);
        put_f16(out, 80, self.d);
        put_f16(out, 82, self.dmin);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (e, (o, q)) in out.iter_mut().zip(self.quants()).enumerate() {
            let sc = self.scales[e / 16];
            *o = d * f32::from(sc & 0x0f) * f32::from(q) - dmin * f32::from(sc >> 4);
        }
    }
}

impl Block for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    fn read(b: &[u8]) -> Self {
        Self {
            hmask: arr(b, 0),
            qs: arr(b, 32),
            scales: arr(b, 96),
            d: f16_at(b, 108),
        }
    }
    fn write(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.hmask);
        out[32..96].copy_from_slice(&self.qs);
        out[96..108].copy_from_slice(&self.scales);
        put_f16(out, 108, self.d);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        let sc = self.signed_scales();
        for (e, (o, q)) in out.iter_mut().zip(self.quants()).enumerate() {
            *o = d * f32::from(sc[e / 16]) * f32::from(q);
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: arr(b, 4),
            qs: arr(b, 16),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        put_f16(out, 2, self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..144].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4(self.d, self.dmin, &self.scales, &self.quants(), out);
    }
}

impl Block for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            dmin: f16_at(b, 2),
            scales: arr(b, 4),
            qh: arr(b, 16),
            qs: arr(b, 48),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        put_f16(out, 2, self.dmin);
        out[4..16].copy_from_slice(&self.scales);
        out[16..48].copy_from_slice(&self.qh);
        out[48..176].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4(self.d, self.dmin, &self.scales, &self.quants(), out);
    }
}

fn dequantize_k4(d: f16, dmin: f16, scales: &[u8; 12], q: &[u8; QK_K], out: &mut [f32]) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for (j, (o, q)) in out.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min_k4(scales, j);
        let (d, m) = (d * f32::from(sc), dmin * f32::from(m));
        for (o, &q) in o.iter_mut().zip(q) {
            *o = d * f32::from(q) - m;
        }
    }
}

impl Block for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    fn read(b: &[u8]) -> Self {
        Self {
            ql: arr(b, 0),
            qh: arr(b, 128),
            scales: arr::<16>(b, 192).map(|v| v as i8),
            d: f16_at(b, 208),
        }
    }
    fn write(&self, out: &mut [u8]) {
        out[..128].copy_from_slice(&self.ql);
        out[128..192].copy_from_slice(&self.qh);
        for (o, s) in out[192..208].iter_mut().zip(self.scales) {
            *o = s as u8;
        }
        put_f16(out, 208, self.d);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (e, (o, q)) in out.iter_mut().zip(self.quants()).enumerate() {
            *o = d * f32::from(self.scales[e / 16]) * f32::from(q);
        }
    }
}

impl Block for BlockQ8K {
    const TYPE: GgmlType = GgmlType::Q8_K;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f32::from_le_bytes(arr(b, 0)),
            qs: arr::<QK_K>(b, 4).map(|v| v as i8),
            bsums: std::array::from_fn(|j| i16::from_le_bytes(arr(b, 260 + 2 * j))),
        }
    }
    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.d.to_le_bytes());
        for (o, q) in out[4..260].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
        for (o, s) in out[260..292].chunks_exact_mut(2).zip(self.bsums) {
            o.copy_from_slice(&s.to_le_bytes());
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = self.d * f32::from(q);
        }
    }
}

/// ggml's reference Q8_K quantizer: scale by the signed extreme so it maps to -127, round
/// ties to even, clamp at 127, and record the sums of each 16.
pub(super) fn quantize_q8_k(x: &[f32]) -> BlockQ8K {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16],
        };
    }
    let iscale = -127.0 / max;
    let qs: [i8; QK_K] =
        std::array::from_fn(|j| (iscale * x[j]).round_ties_even().min(127.0) as i8);
    let bsums =
        std::array::from_fn(|j| qs[16 * j..16 * j + 16].iter().map(|&q| i16::from(q)).sum());
    BlockQ8K {
        d: 1.0 / iscale,
        qs,
        bsums,
    }
}

/// Integer dot of 16 or 32 quants with the matching Q8_K quants.
fn isum<T: Copy + Into<i32>>(q: &[T], a: &[i8]) -> i32 {
    q.iter()
        .zip(a)
        .map(|(&x, &y)| x.into() * i32::from(y))
        .sum()
}

pub(super) fn dot_q2_k(w: &BlockQ2K, a: &BlockQ8K) -> f32 {
    let q = w.quants();
    let mut sum = 0i32;
    let mut mins = 0i32;
    for j in 0..16 {
        let sc = w.scales[j];
        sum += i32::from(sc & 0x0f) * isum(&q[16 * j..16 * j + 16], &a.qs[16 * j..16 * j + 16]);
        mins += i32::from(sc >> 4) * i32::from(a.bsums[j]);
    }
    a.d * w.d.to_f32() * sum as f32 - a.d * w.dmin.to_f32() * mins as f32
}

pub(super) fn dot_q3_k(w: &BlockQ3K, a: &BlockQ8K) -> f32 {
    let (q, sc) = (w.quants(), w.signed_scales());
    let sum: i32 = (0..16)
        .map(|j| i32::from(sc[j]) * isum(&q[16 * j..16 * j + 16], &a.qs[16 * j..16 * j + 16]))
        .sum();
    a.d * w.d.to_f32() * sum as f32
}

fn dot_k4(d: f16, dmin: f16, scales: &[u8; 12], q: &[u8; QK_K], a: &BlockQ8K) -> f32 {
    let mut sum = 0i32;
    let mut mins = 0i32;
    for j in 0..8 {
        let (sc, m) = scale_min_k4(scales, j);
        sum += i32::from(sc) * isum(&q[32 * j..32 * j + 32], &a.qs[32 * j..32 * j + 32]);
        mins += i32::from(m) * (i32::from(a.bsums[2 * j]) + i32::from(a.bsums[2 * j + 1]));
    }
    a.d * d.to_f32() * sum as f32 - a.d * dmin.to_f32() * mins as f32
}

pub(super) fn dot_q4_k(w: &BlockQ4K, a: &BlockQ8K) -> f32 {
    dot_k4(w.d, w.dmin, &w.scales, &w.quants(), a)
}

pub(super) fn dot_q5_k(w: &BlockQ5K, a: &BlockQ8K) -> f32 {
    dot_k4(w.d, w.dmin, &w.scales, &w.quants(), a)
}

pub(super) fn dot_q6_k(w: &BlockQ6K, a: &BlockQ8K) -> f32 {
    let q = w.quants();
    let sum: i32 = (0..16)
        .map(|j| i32::from(w.scales[j]) * isum(&q[16 * j..16 * j + 16], &a.qs[16 * j..16 * j + 16]))
        .sum();
    a.d * w.d.to_f32() * sum as f32
}

pub(super) fn dot_q8_k(w: &BlockQ8K, a: &BlockQ8K) -> f32 {
    w.d * a.d * isum(&w.qs, &a.qs) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_k_maps_the_signed_extreme_to_minus_127_and_sums_each_16() {
        let mut x = [0.0f32; QK_K];
        x[0] = 2.0;
        x[1] = -2.0;
        x[17] = 1.0;
        let b = quantize_q8_k(&x);
        assert_eq!(b.qs[0], -127, "the extreme maps to -127 whatever its sign");
        assert_eq!(b.qs[1], 127);
        assert_eq!(b.d, -2.0 / 127.0);
        // 1.0 * -63.5 rounds to the even -64.
        assert_eq!(b.qs[17], -64);
        assert_eq!(b.bsums[0], 0);
        assert_eq!(b.bsums[1], -64);
        let zero = quantize_q8_k(&[0.0; QK_K]);
        assert_eq!((zero.d, zero.bsums), (0.0, [0; 16]));
    }

    #[test]
    fn q4_k_scales_unpack_all_six_bits() {
        let scales = [0xff; 12];
        for j in 0..8 {
            assert_eq!(scale_min_k4(&scales, j), (63, 63));
        }
        let mut s = [0u8; 12];
        s[8] = 0x21; // sub-block 4: scale low nibble 1, min low nibble 2
        s[0] = 0xc0; // sub-block 4: scale high bits 3
        s[4] = 0x40; // sub-block 4: min high bits 1
        assert_eq!(scale_min_k4(&s, 4), (0x31, 0x12));
    }

    #[test]
    fn q3_k_clear_high_bits_subtract_four_and_scales_are_signed() {
        let b = BlockQ3K {
            hmask: [0; 32],
            qs: [0; 64],
            scales: [0; 12],
            d: f16::ONE,
        };
        assert_eq!(b.quants(), [-4; QK_K]);
        assert_eq!(b.signed_scales(), [-32; 16]);
        let mut out = [0.0; QK_K];
        b.dequantize(&mut out);
        assert_eq!(out, [128.0; QK_K]);
    }

    #[test]
    fn q6_k_extremes() {
        let b = BlockQ6K {
            ql: [0xff; 128],
            qh: [0xff; 64],
            scales: [-128; 16],
            d: f16::ONE,
        };
        assert_eq!(b.quants(), [31; QK_K]);
        let mut out = [0.0; QK_K];
        b.dequantize(&mut out);
        assert_eq!(out, [-128.0 * 31.0; QK_K]);
        let a = quantize_q8_k(&[1.0; QK_K]);
        let expect: f32 = out.iter().sum();
        assert!((dot_q6_k(&b, &a) - expect).abs() <= expect.abs() * 1e-6);
    }
}
