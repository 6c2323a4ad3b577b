//! The unblocked float formats: F32, F16 and BF16.

use half::f16;

/// Converts `x` to bfloat16 bits as ggml does: round to nearest even, NaN kept quiet.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        // A NaN: keep the sign and top mantissa bits and force the quiet bit, so rounding
        // cannot carry it into an infinity.
        return ((bits >> 16) | 64) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    ((u64::from(bits) + u64::from(rounding)) >> 16) as u16
}

/// Widens bfloat16 bits to `f32` (exact).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Reads little-endian `f16` bits.
pub(super) fn f16_at(b: &[u8], at: usize) -> f16 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Writes `v` as little-endian `f16` bits.
pub(super) fn put_f16(out: &mut [u8], at: usize, v: f16) {
    out[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
}

fn chunks2(src: &[u8]) -> impl Iterator<Item = u16> + '_ {
    src.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
}

fn chunks4(src: &[u8]) -> impl Iterator<Item = f32> + '_ {
    src.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

pub(super) fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (o, v) in dst.iter_mut().zip(chunks4(src)) {
        *o = v;
    }
}

pub(super) fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (o, v) in dst.iter_mut().zip(chunks2(src)) {
        *o = f16::from_bits(v).to_f32();
    }
}

pub(super) fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (o, v) in dst.iter_mut().zip(chunks2(src)) {
        *o = bf16_bits_to_f32(v);
    }
}

pub(super) fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (o, v) in dst.chunks_exact_mut(4).zip(src) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (o, v) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
    }
}

pub(super) fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (o, v) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&f32_to_bf16_bits(*v).to_le_bytes());
    }
}

// ggml's reference float dots multiply in f32 and accumulate in f64.

pub(super) fn dot_f32(x: &[u8], y: &[u8]) -> f32 {
    chunks4(x)
        .zip(chunks4(y))
        .map(|(a, b)| f64::from(a * b))
        .sum::<f64>() as f32
}

pub(super) fn dot_f16(x: &[u8], y: &[u8]) -> f32 {
    chunks2(x)
        .zip(chunks2(y))
        .map(|(a, b)| f64::from(f16::from_bits(a).to_f32() * f16::from_bits(b).to_f32()))
        .sum::<f64>() as f32
}

pub(super) fn dot_bf16(x: &[u8], y: &[u8]) -> f32 {
    chunks2(x)
        .zip(chunks2(y))
        .map(|(a, b)| f64::from(bf16_bits_to_f32(a) * bf16_bits_to_f32(b)))
        .sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_quiet() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // Exactly halfway between two bf16 values: ties go to the even one.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
        let nan = f32_to_bf16_bits(f32::from_bits(0x7f80_0001));
        assert!(bf16_bits_to_f32(nan).is_nan());
        assert_eq!(bf16_bits_to_f32(0xc000), -2.0);
    }
}
