//! The non-linear 4-bit formats: IQ4_NL (blocks of 32) and IQ4_XS (super-blocks of 256).
//!
//! Both store 4-bit indexes into one fixed table of 16 signed levels, spaced more finely near
//! zero than at the ends (weights cluster near zero), times a scale. In IQ4_NL each 32 values
//! have an f16 scale; IQ4_XS shares one f16 scale per 256 values and gives each 32 a 6-bit
//! scale, stored as a low nibble in `scales_l` and two high bits in `scales_h`, offset by 32.
//! As in the 4-bit legacy formats, byte `j` of a 32-value group holds value `j` in its low
//! nibble and value `j + 16` in its high nibble.
//!
//! IQ4_NL pairs with Q8_0 activations, IQ4_XS with Q8_K; a block's dot product is an exact
//! integer sum (the levels times the activations, times each sub-block's scale for IQ4_XS)
//! and then one float product, as llama.cpp's vector kernels compute it.

use half::f16;

use super::Block;
use super::GgmlType;
use super::QK_K;
use super::float::{f16_at, put_f16};
use super::kquants::BlockQ8K;
use super::legacy::BlockQ8_0;

/// The 16 levels both formats index (ggml's `kvalues_iq4nl`).
pub const IQ4_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_NL: `x = d * IQ4_LEVELS[q]`, `q` in 0..16, 32 values.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIQ4NL {
    /// Scale.
    pub d: f16,
    /// 32 nibbles.
    pub qs: [u8; 16],
}

/// IQ4_XS: `x = d * (ls - 32) * IQ4_LEVELS[q]`, 256 values in 8 groups of 32, each with a
/// 6-bit `ls`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIQ4XS {
    /// Scale.
    pub d: f16,
    /// Bits 4 and 5 of each group's scale, two bits per group (a little-endian `u16`).
    pub scales_h: [u8; 2],
    /// Bits 0–3 of each group's scale, two groups per byte (low nibble first).
    pub scales_l: [u8; 4],
    /// 256 nibbles, 16 bytes per group.
    pub qs: [u8; QK_K / 2],
}

impl BlockIQ4XS {
    /// Group `ib`'s scale, less 32: in -32..32.
    pub fn group_scale(&self, ib: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let low = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F;
        let high = ((h >> (2 * ib)) & 3) as u8;
        i32::from(low | (high << 4)) - 32
    }
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// The 32 levels of one group of 16 bytes, in value order.
fn levels(qs: &[u8]) -> [i32; 32] {
    let mut v = [0; 32];
    for (j, &b) in qs.iter().enumerate().take(16) {
        v[j] = i32::from(IQ4_LEVELS[usize::from(b & 0x0F)]);
        v[j + 16] = i32::from(IQ4_LEVELS[usize::from(b >> 4)]);
    }
    v
}

impl Block for BlockIQ4NL {
    const TYPE: GgmlType = GgmlType::IQ4_NL;
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
        for (o, l) in out.iter_mut().zip(levels(&self.qs)) {
            *o = d * l as f32;
        }
    }
}

impl Block for BlockIQ4XS {
    const TYPE: GgmlType = GgmlType::IQ4_XS;
    fn read(b: &[u8]) -> Self {
        Self {
            d: f16_at(b, 0),
            scales_h: arr(b, 2),
            scales_l: arr(b, 4),
            qs: arr(b, 8),
        }
    }
    fn write(&self, out: &mut [u8]) {
        put_f16(out, 0, self.d);
        out[2..4].copy_from_slice(&self.scales_h);
        out[4..8].copy_from_slice(&self.scales_l);
        out[8..136].copy_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (ib, group) in out.chunks_exact_mut(32).enumerate() {
            let dl = d * self.group_scale(ib) as f32;
            for (o, l) in group
                .iter_mut()
                .zip(levels(&self.qs[16 * ib..16 * ib + 16]))
            {
                *o = dl * l as f32;
            }
        }
    }
}

fn idot(levels: [i32; 32], a: &[i8]) -> i32 {
    levels.iter().zip(a).map(|(&l, &y)| l * i32::from(y)).sum()
}

pub(super) fn dot_iq4_nl(w: &BlockIQ4NL, a: &BlockQ8_0) -> f32 {
    let s = idot(levels(&w.qs), &a.qs);
    s as f32 * (w.d.to_f32() * a.d.to_f32())
}

pub(super) fn dot_iq4_xs(w: &BlockIQ4XS, a: &BlockQ8K) -> f32 {
    let s: i32 = (0..QK_K / 32)
        .map(|ib| w.group_scale(ib) * idot(levels(&w.qs[16 * ib..16 * ib + 16]), &a.qs[32 * ib..]))
        .sum();
    s as f32 * (w.d.to_f32() * a.d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_scales_take_their_high_bits_from_scales_h() {
        let mut b = BlockIQ4XS {
            d: f16::ONE,
            scales_h: [0; 2],
            scales_l: [0x21, 0x43, 0x65, 0x87],
            qs: [0; 128],
        };
        let lows: Vec<i32> = (0..8).map(|ib| b.group_scale(ib) + 32).collect();
        assert_eq!(lows, [1, 2, 3, 4, 5, 6, 7, 8]);
        // Group 7's high bits are bits 14-15 of scales_h.
        b.scales_h = 0b11_00_00_00_00_00_00_01u16.to_le_bytes();
        assert_eq!(b.group_scale(0), 1 + 16 - 32);
        assert_eq!(b.group_scale(7), 8 + 48 - 32);
    }

    #[test]
    fn nibbles_index_the_levels_low_half_first() {
        let mut qs = [0u8; 16];
        qs[0] = 0xF0;
        qs[15] = 0x08;
        let b = BlockIQ4NL {
            d: f16::from_f32(0.5),
            qs,
        };
        let mut out = [0.0; 32];
        b.dequantize(&mut out);
        assert_eq!(out[0], -63.5);
        assert_eq!(out[16], 56.5);
        assert_eq!(out[15], 0.5);
        assert_eq!(out[31], -63.5);
    }
}
