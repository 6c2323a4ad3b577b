//! The 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
//!
//! Layouts follow ggml's `block_q*` structs byte for byte (little-endian `f16` scales first,
//! then packed quants). In the 4- and 5-bit formats byte `j` of `qs` holds value `j` in its
//! low nibble and value `j + 16` in its high nibble; the fifth bits live in the 32-bit `qh`,
//! bit `j` for value `j`.

use half::f16;

use super::Block;
use super::GgmlType;
use super::float::{f16_at, put_f16};

/// Q4_0: `x = d * (q - 8)`, `q` in 0..16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// 32 nibbles.
    pub qs: [u8; 16],
}

/// Q4_1: `x = d * q + m`, `q` in 0..16.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// 32 nibbles.
    pub qs: [u8; 16],
}

/// Q5_0: `x = d * (q - 16)`, `q` in 0..32.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits, bit `j` for value `j` (a little-endian `u32`).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; 16],
}

/// Q5_1: `x = d * q + m`, `q` in 0..32.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Fifth bits, bit `j` for value `j` (a little-endian `u32`).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; 16],
}

/// Q8_0: `x = d * q`, `q` in -128..128.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; 32],
}

/// Q8_1: as Q8_0 plus `s = d * sum(q)`, which pays for the minimum of Q4_1/Q5_1 weights.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`, with the unrounded `d`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; 32],
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

fn arr_i8<const N: usize>(b: &[u8], at: usize) -> [i8; N] {
    arr::<N>(b, at).map(|v| v as i8)
}

fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

fn five_bits(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let h = u32::from_le_bytes(qh);
    let mut q = nibbles(qs);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((h >> j) & 1) as u8) << 4;
    }
    q
}

impl Block for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            qs: arr(b, 2),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        out[2..18].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(nibbles(&self.qs)) {
            *o = (f32::from(q) - 8.0) * d;
        }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qs: arr(b, 4),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        put_f16(out, 2, self.m);
        out[4..20].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (o, q) in out.iter_mut().zip(nibbles(&self.qs)) {
            *o = f32::from(q) * d + m;
        }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            qh: arr(b, 2),
            qs: arr(b, 6),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        out[2..6].copy_from_slice(&self.qh);
        out[6..22].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(five_bits(self.qh, &self.qs)) {
            *o = (f32::from(q) - 16.0) * d;
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            m: f16_at(b, 2),
            qh: arr(b, 4),
            qs: arr(b, 8),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        put_f16(out, 2, self.m);
        out[4..8].copy_from_slice(&self.qh);
        out[8..24].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (o, q) in out.iter_mut().zip(five_bits(self.qh, &self.qs)) {
            *o = f32::from(q) * d + m;
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            qs: arr_i8(b, 2),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        for (o, q) in out[2..34].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = f32::from(q) * d;
        }
    }
}

impl Block for BlockQ8_1 {
    const TYPE: GgmlType = GgmlType::Q8_1;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            s: f16_at(b, 2),
            qs: arr_i8(b, 4),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        put_f16(out, 2, self.s);
        for (o, q) in out[4..36].iter_mut().zip(self.qs) {
            *o = q as u8;
        }
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, q) in out.iter_mut().zip(self.qs) {
            *o = f32::from(q) * d;
        }
    }
}

// Quantizers: ggml's reference (`quantize_row_*_ref`) rounding, step for step.

/// The value of largest magnitude, keeping its sign (the first one on ties).
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `(value + bias)` truncated toward zero, as C's float-to-int cast does.
fn trunc_q(v: f32, bias: f32, max: i32) -> u8 {
    ((v + bias) as i32).clamp(0, max) as u8
}

pub(super) fn quantize_q4_0(x: &[f32]) -> BlockQ4_0 {
    let d = signed_absmax(x) / -8.0;
    let id = inverse(d);
    let mut qs = [0; 16];
    for j in 0..16 {
        qs[j] = trunc_q(x[j] * id, 8.5, 15) | (trunc_q(x[j + 16] * id, 8.5, 15) << 4);
    }
    BlockQ4_0 {
        d: f16::from_f32(d),
        qs,
    }
}

pub(super) fn quantize_q4_1(x: &[f32]) -> BlockQ4_1 {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    let mut qs = [0; 16];
    for j in 0..16 {
        qs[j] =
            trunc_q((x[j] - min) * id, 0.5, 15) | (trunc_q((x[j + 16] - min) * id, 0.5, 15) << 4);
    }
    BlockQ4_1 {
        d: f16::from_f32(d),
        m: f16::from_f32(min),
        qs,
    }
}

fn pack5(q: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let mut qs = [0; 16];
    let mut qh = 0u32;
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
        qh |= u32::from(q[j] >> 4) << j;
        qh |= u32::from(q[j + 16] >> 4) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

pub(super) fn quantize_q5_0(x: &[f32]) -> BlockQ5_0 {
    let d = signed_absmax(x) / -16.0;
    let id = inverse(d);
    let q: [u8; 32] = std::array::from_fn(|j| trunc_q(x[j] * id, 16.5, 31));
    let (qh, qs) = pack5(&q);
    BlockQ5_0 {
        d: f16::from_f32(d),
        qh,
        qs,
    }
}

pub(super) fn quantize_q5_1(x: &[f32]) -> BlockQ5_1 {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    let q: [u8; 32] = std::array::from_fn(|j| trunc_q((x[j] - min) * id, 0.5, 31));
    let (qh, qs) = pack5(&q);
    BlockQ5_1 {
        d: f16::from_f32(d),
        m: f16::from_f32(min),
        qh,
        qs,
    }
}

/// Q8_0 quants and the unrounded scale: `round(x / (amax / 127))`, ties away from zero.
fn q8_round(x: &[f32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    (d, std::array::from_fn(|j| (x[j] * id).round() as i8))
}

pub(super) fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    let (d, qs) = q8_round(x);
    BlockQ8_0 {
        d: f16::from_f32(d),
        qs,
    }
}

pub(super) fn quantize_q8_1(x: &[f32]) -> BlockQ8_1 {
    let (d, qs) = q8_round(x);
    let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
    BlockQ8_1 {
        d: f16::from_f32(d),
        s: f16::from_f32(sum as f32 * d),
        qs,
    }
}

// Dot products against the paired activation block: an integer dot, then the scales.

fn idot(a: impl IntoIterator<Item = i32>, b: &[i8; 32]) -> i32 {
    a.into_iter().zip(b).map(|(x, &y)| x * i32::from(y)).sum()
}

pub(super) fn dot_q4_0(w: &BlockQ4_0, a: &BlockQ8_0) -> f32 {
    let s = idot(nibbles(&w.qs).map(|q| i32::from(q) - 8), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32())
}

pub(super) fn dot_q4_1(w: &BlockQ4_1, a: &BlockQ8_1) -> f32 {
    let s = idot(nibbles(&w.qs).map(i32::from), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32()) + w.m.to_f32() * a.s.to_f32()
}

pub(super) fn dot_q5_0(w: &BlockQ5_0, a: &BlockQ8_0) -> f32 {
    let s = idot(five_bits(w.qh, &w.qs).map(|q| i32::from(q) - 16), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32())
}

pub(super) fn dot_q5_1(w: &BlockQ5_1, a: &BlockQ8_1) -> f32 {
    let s = idot(five_bits(w.qh, &w.qs).map(i32::from), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32()) + w.m.to_f32() * a.s.to_f32()
}

pub(super) fn dot_q8_0(w: &BlockQ8_0, a: &BlockQ8_0) -> f32 {
    let s = idot(w.qs.map(i32::from), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32())
}

pub(super) fn dot_q8_1(w: &BlockQ8_1, a: &BlockQ8_1) -> f32 {
    let s = idot(w.qs.map(i32::from), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_quantize_to_a_zero_scale_and_back_to_zeros() {
        let x = [0.0f32; 32];
        let b = quantize_q4_0(&x);
        assert_eq!(b.d.to_f32(), 0.0);
        assert_eq!(b.qs, [0x88; 16], "zero sits at the offset 8");
        let mut out = [1.0f32; 32];
        b.dequantize(&mut out);
        assert_eq!(out, [0.0; 32]);
        let q = quantize_q8_1(&x);
        assert_eq!((q.d.to_f32(), q.s.to_f32(), q.qs), (0.0, 0.0, [0; 32]));
        let q = quantize_q5_1(&x);
        q.dequantize(&mut out);
        assert_eq!(out, [0.0; 32]);
    }

    #[test]
    fn q4_0_takes_the_signed_maximum_and_keeps_it_exact() {
        let mut x = [0.5f32; 32];
        x[3] = -4.0;
        let b = quantize_q4_0(&x);
        // d = max / -8 = 0.5; the extreme maps to q = 0.
        assert_eq!(b.d.to_f32(), 0.5);
        let mut out = [0.0; 32];
        b.dequantize(&mut out);
        assert_eq!(out[3], -4.0);
        assert_eq!(out[0], 0.5);
    }

    #[test]
    fn q8_0_rounds_ties_away_from_zero_and_hits_plus_minus_127() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = -127.0;
        x[2] = 2.5;
        x[3] = -2.5;
        let b = quantize_q8_0(&x);
        assert_eq!(&b.qs[..4], &[127, -127, 3, -3]);
        let mut bytes = [0u8; 34];
        b.write(&mut bytes);
        assert_eq!(BlockQ8_0::read(&bytes), b);
    }

    #[test]
    fn negative_scales_flip_the_values() {
        let b = BlockQ8_0 {
            d: f16::from_f32(-2.0),
            qs: [3; 32],
        };
        let mut out = [0.0; 32];
        b.dequantize(&mut out);
        assert_eq!(out, [-6.0; 32]);
        let a = BlockQ8_0 {
            d: f16::from_f32(0.5),
            qs: [-1; 32],
        };
        assert_eq!(dot_q8_0(&b, &a), 96.0);
    }

    #[test]
    fn five_bit_formats_use_every_high_bit() {
        let b = BlockQ5_1 {
            d: f16::ONE,
            m: f16::ZERO,
            qh: [0xff; 4],
            qs: [0xff; 16],
        };
        let mut out = [0.0; 32];
        b.dequantize(&mut out);
        assert_eq!(out, [31.0; 32]);
        let q = quantize_q5_1(&out.map(|v| v - 31.0 * (v / 62.0)));
        let mut back = [0.0; 32];
        q.dequantize(&mut back);
        assert!(back.iter().all(|v| (v - 15.5).abs() < 0.01), "{back:?}");
    }
}
