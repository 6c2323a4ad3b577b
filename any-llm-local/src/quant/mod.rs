//! Quantized block formats: the ggml type table, dequantization, activation quantization and
//! dot products, as scalar reference code.
//!
//! Everything here works on rows of raw bytes exactly as they sit in a GGUF file. A matrix-vector
//! product quantizes the activation row once into the weight type's
//! [`vec_dot_type`](GgmlType::vec_dot_type) and then takes [`vec_dot`] with each weight row,
//! as llama.cpp does; the results match llama.cpp's reference up to float summation order.
//!
//! The block structs ([`BlockQ4_0`], [`BlockQ4K`], …) are `#[repr(C)]` copies of ggml's, so
//! the SIMD kernels can share their layout; the scalar functions here are what those kernels
//! are tested against.
//!
//! ```
//! use any_llm_local::quant::{self, GgmlType};
//! # fn main() -> Result<(), quant::QuantError> {
//! let weights: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 8.0).collect();
//! let mut w = vec![0u8; GgmlType::Q8_0.row_size(64).unwrap_or(0)];
//! quant::quantize_row(GgmlType::Q8_0, &weights, &mut w)?;
//!
//! let act = vec![0.5f32; 64];
//! let mut a = vec![0u8; 2 * 34];
//! quant::quantize_row(GgmlType::Q8_0, &act, &mut a)?;
//! let dot = quant::vec_dot(GgmlType::Q8_0, &w, &a, 64)?;
//! assert!((dot - -2.0).abs() < 0.05);
//! # Ok(()) }
//! ```

mod float;
mod iquants;
mod kquants;
mod legacy;
mod types;

pub use float::{bf16_bits_to_f32, f32_to_bf16_bits};
pub use iquants::{BlockIQ4NL, BlockIQ4XS, IQ4_LEVELS};
pub use kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K, scale_min_k4};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
pub use types::GgmlType;
pub(crate) use types::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_0_BYTES,
    Q8_1_BYTES, Q8_K_BYTES, QK,
};

/// Why a row could not be converted or multiplied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The type has no code here (an IQ type, an integer type, …) for this operation.
    #[error("unsupported type {ty} for {op}")]
    Unsupported {
        /// The type.
        ty: GgmlType,
        /// What was asked (`"dequantize"`, `"quantize"`, `"vec_dot"`).
        op: &'static str,
    },
    /// The row length does not fill whole blocks.
    #[error(
        "{ty} packs {block_size} values per block, so a row must be a multiple of {block_size}; found {n} values"
    )]
    NotBlockMultiple {
        /// The type.
        ty: GgmlType,
        /// Its block size.
        block_size: usize,
        /// The row length.
        n: usize,
    },
    /// A buffer is not the size `n` values of its type take.
    #[error("{what}: {n} values of {ty} take {expected} bytes, found {found}")]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Its type.
        ty: GgmlType,
        /// The row length in values.
        n: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
}

/// A `Result` whose error is [`QuantError`].
pub type Result<T, E = QuantError> = std::result::Result<T, E>;

/// A ggml block layout: how to read and write it from bytes, and how to dequantize it.
///
/// `read` and `write` take exactly [`BYTES`](Block::BYTES) bytes (as
/// `chunks_exact(Self::BYTES)` hands them out) and panic on any other length.
pub trait Block: Sized + Copy {
    /// The ggml type.
    const TYPE: GgmlType;
    /// Bytes per block (the `#[repr(C)]` struct has exactly ggml's size).
    const BYTES: usize = std::mem::size_of::<Self>();
    /// Parses one block.
    fn read(bytes: &[u8]) -> Self;
    /// Serializes one block.
    fn write(&self, out: &mut [u8]);
    /// Writes the block's values into `out` (one block's worth).
    fn dequantize(&self, out: &mut [f32]);
}

// The repr(C) structs have exactly ggml's sizes, so `size_of` can stand for the type size.
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<BlockQ4_0>() == 18);
    assert!(size_of::<BlockQ4_1>() == 20);
    assert!(size_of::<BlockQ5_0>() == 22);
    assert!(size_of::<BlockQ5_1>() == 24);
    assert!(size_of::<BlockQ8_0>() == 34);
    assert!(size_of::<BlockQ8_1>() == 36);
    assert!(size_of::<BlockQ2K>() == 84);
    assert!(size_of::<BlockQ3K>() == 110);
    assert!(size_of::<BlockQ4K>() == 144);
    assert!(size_of::<BlockQ5K>() == 176);
    assert!(size_of::<BlockQ6K>() == 210);
    assert!(size_of::<BlockQ8K>() == 292);
    assert!(size_of::<BlockIQ4NL>() == 18);
    assert!(size_of::<BlockIQ4XS>() == 136);
};

/// Checks `n` against the block size and `len` against `n` values' bytes.
pub(crate) fn check(ty: GgmlType, n: usize, len: usize, what: &'static str) -> Result<()> {
    let expected = ty.row_size(n).ok_or(QuantError::NotBlockMultiple {
        ty,
        block_size: ty.block_size(),
        n,
    })?;
    if len != expected {
        return Err(QuantError::BufferSize {
            what,
            ty,
            n,
            expected,
            found: len,
        });
    }
    Ok(())
}

fn dequantize_blocks<B: Block>(src: &[u8], dst: &mut [f32]) {
    let values = B::TYPE.block_size();
    for (b, o) in src.chunks_exact(B::BYTES).zip(dst.chunks_exact_mut(values)) {
        B::read(b).dequantize(o);
    }
}

/// Dequantizes one row of `dst.len()` values of type `ty` from `src`.
///
/// # Errors
///
/// [`QuantError::Unsupported`], [`QuantError::NotBlockMultiple`] or
/// [`QuantError::BufferSize`] if `src` is not `dst.len()` values' worth of bytes.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    check(ty, dst.len(), src.len(), "quantized row")?;
    match ty {
        GgmlType::F32 => float::dequantize_f32(src, dst),
        GgmlType::F16 => float::dequantize_f16(src, dst),
        GgmlType::BF16 => float::dequantize_bf16(src, dst),
        GgmlType::Q4_0 => dequantize_blocks::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => dequantize_blocks::<BlockQ4_1>(src, dst),
        GgmlType::Q5_0 => dequantize_blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => dequantize_blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q8_0 => dequantize_blocks::<BlockQ8_0>(src, dst),
        GgmlType::Q8_1 => dequantize_blocks::<BlockQ8_1>(src, dst),
        GgmlType::Q2_K => dequantize_blocks::<BlockQ2K>(src, dst),
        GgmlType::Q3_K => dequantize_blocks::<BlockQ3K>(src, dst),
        GgmlType::Q4_K => dequantize_blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5_K => dequantize_blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6_K => dequantize_blocks::<BlockQ6K>(src, dst),
        GgmlType::Q8_K => dequantize_blocks::<BlockQ8K>(src, dst),
        GgmlType::IQ4_NL => dequantize_blocks::<BlockIQ4NL>(src, dst),
        GgmlType::IQ4_XS => dequantize_blocks::<BlockIQ4XS>(src, dst),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                op: "dequantize",
            });
        }
    }
    Ok(())
}

fn quantize_blocks<B: Block>(src: &[f32], dst: &mut [u8], f: fn(&[f32]) -> B) {
    let values = B::TYPE.block_size();
    for (x, o) in src.chunks_exact(values).zip(dst.chunks_exact_mut(B::BYTES)) {
        f(x).write(o);
    }
}

/// Quantizes one row of `src.len()` values into `dst` with ggml's reference quantizer, byte for
/// byte: the float types, the activation types Q8_0, Q8_1 and Q8_K, and the legacy weight
/// types Q4_0, Q4_1, Q5_0 and Q5_1. (The K-quant weight quantizers search for scales and are
/// not provided.)
///
/// # Errors
///
/// [`QuantError::Unsupported`], [`QuantError::NotBlockMultiple`] or
/// [`QuantError::BufferSize`] if `dst` is not `src.len()` values' worth of bytes.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    check(ty, src.len(), dst.len(), "quantized row")?;
    match ty {
        GgmlType::F32 => float::quantize_f32(src, dst),
        GgmlType::F16 => float::quantize_f16(src, dst),
        GgmlType::BF16 => float::quantize_bf16(src, dst),
        GgmlType::Q4_0 => quantize_blocks(src, dst, legacy::quantize_q4_0),
        GgmlType::Q4_1 => quantize_blocks(src, dst, legacy::quantize_q4_1),
        GgmlType::Q5_0 => quantize_blocks(src, dst, legacy::quantize_q5_0),
        GgmlType::Q5_1 => quantize_blocks(src, dst, legacy::quantize_q5_1),
        GgmlType::Q8_0 => quantize_blocks(src, dst, legacy::quantize_q8_0),
        GgmlType::Q8_1 => quantize_blocks(src, dst, legacy::quantize_q8_1),
        GgmlType::Q8_K => quantize_blocks(src, dst, kquants::quantize_q8_k),
        _ => return Err(QuantError::Unsupported { ty, op: "quantize" }),
    }
    Ok(())
}

fn dot_blocks<W: Block, A: Block>(w: &[u8], a: &[u8], f: fn(&W, &A) -> f32) -> f32 {
    w.chunks_exact(W::BYTES)
        .zip(a.chunks_exact(A::BYTES))
        .map(|(w, a)| f(&W::read(w), &A::read(a)))
        .sum()
}

/// The dot product of `n` values: a weight row of type `ty` with an activation row already
/// quantized to `ty.vec_dot_type()`, computed as llama.cpp's reference does (an integer dot
/// per block or sub-block, then the scales; K-quant minimums through Q8_K's `bsums`). Block
/// results are summed in `f32`; the float types accumulate in `f64`.
///
/// # Errors
///
/// [`QuantError::Unsupported`], [`QuantError::NotBlockMultiple`], or
/// [`QuantError::BufferSize`] if either row is not `n` values of its type.
pub fn vec_dot(ty: GgmlType, weight_row: &[u8], act_row: &[u8], n: usize) -> Result<f32> {
    let act_ty = ty
        .vec_dot_type()
        .ok_or(QuantError::Unsupported { ty, op: "vec_dot" })?;
    check(ty, n, weight_row.len(), "weight row")?;
    check(act_ty, n, act_row.len(), "activation row")?;
    let (w, a) = (weight_row, act_row);
    Ok(match ty {
        GgmlType::F32 => float::dot_f32(w, a),
        GgmlType::F16 => float::dot_f16(w, a),
        GgmlType::BF16 => float::dot_bf16(w, a),
        GgmlType::Q4_0 => dot_blocks(w, a, legacy::dot_q4_0),
        GgmlType::Q4_1 => dot_blocks(w, a, legacy::dot_q4_1),
        GgmlType::Q5_0 => dot_blocks(w, a, legacy::dot_q5_0),
        GgmlType::Q5_1 => dot_blocks(w, a, legacy::dot_q5_1),
        GgmlType::Q8_0 => dot_blocks(w, a, legacy::dot_q8_0),
        GgmlType::Q8_1 => dot_blocks(w, a, legacy::dot_q8_1),
        GgmlType::Q2_K => dot_blocks(w, a, kquants::dot_q2_k),
        GgmlType::Q3_K => dot_blocks(w, a, kquants::dot_q3_k),
        GgmlType::Q4_K => dot_blocks(w, a, kquants::dot_q4_k),
        GgmlType::Q5_K => dot_blocks(w, a, kquants::dot_q5_k),
        GgmlType::Q6_K => dot_blocks(w, a, kquants::dot_q6_k),
        GgmlType::Q8_K => dot_blocks(w, a, kquants::dot_q8_k),
        GgmlType::IQ4_NL => dot_blocks(w, a, iquants::dot_iq4_nl),
        GgmlType::IQ4_XS => dot_blocks(w, a, iquants::dot_iq4_xs),
        _ => return Err(QuantError::Unsupported { ty, op: "vec_dot" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_not_trusted() {
        let mut out = [0.0f32; 33];
        let e = dequantize_row(GgmlType::Q4_0, &[0; 18], &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Q4_0 packs 32 values per block, so a row must be a multiple of 32; found 33 values"
        );
        let e = dequantize_row(GgmlType::Q4_0, &[0; 17], &mut out[..32]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "quantized row: 32 values of Q4_0 take 18 bytes, found 17"
        );
        let e = vec_dot(GgmlType::Q4_K, &[0; 144], &[0; 144], 256).unwrap_err();
        assert_eq!(
            e.to_string(),
            "activation row: 256 values of Q8_K take 292 bytes, found 144"
        );
        let e = vec_dot(GgmlType::IQ2_XS, &[], &[], 0).unwrap_err();
        assert_eq!(e.to_string(), "unsupported type IQ2_XS for vec_dot");
        let e = quantize_row(GgmlType::Q4_K, &[0.0; 256], &mut [0; 144]).unwrap_err();
        assert_eq!(e.to_string(), "unsupported type Q4_K for quantize");
    }

    #[test]
    fn every_supported_type_round_trips_zero_rows() {
        for ty in GgmlType::SUPPORTED {
            let n = ty.block_size().max(32) * 2;
            let mut bytes = vec![0u8; ty.row_size(n).unwrap()];
            let mut out = vec![1.0f32; n];
            dequantize_row(ty, &bytes, &mut out).unwrap();
            // All-zero bytes have a zero scale, so every value is zero.
            assert!(out.iter().all(|&v| v == 0.0), "{ty}: {out:?}");
            if quantize_row(ty, &vec![0.0; n], &mut bytes).is_ok() {
                dequantize_row(ty, &bytes, &mut out).unwrap();
                assert!(out.iter().all(|&v| v == 0.0), "{ty}");
            }
            let act = ty.vec_dot_type().unwrap();
            let a = vec![0u8; act.row_size(n).unwrap()];
            assert_eq!(vec_dot(ty, &bytes, &a, n).unwrap(), 0.0, "{ty}");
        }
    }

    /// Clears bit 14 of every f16 field of K- and i-quant blocks (exponent below 0x1f: finite).
    fn sanitize_f16_scales(ty: GgmlType, w: &mut [u8]) {
        let fields: &[usize] = match ty {
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
            _ => &[],
        };
        for block in w.chunks_exact_mut(ty.type_size()) {
            for &f in fields {
                block[f + 1] &= 0xbf;
            }
        }
    }

    #[test]
    fn dot_matches_the_dequantized_product_for_each_weight_type() {
        // A deterministic pseudo-random row through every supported pairing.
        let n = 512;
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for ty in GgmlType::SUPPORTED {
            let act_ty = ty.vec_dot_type().unwrap();
            let mut w = vec![0u8; ty.row_size(n).unwrap()];
            for b in &mut w {
                *b = next() as u8;
            }
            let mut wf = vec![0.0f32; n];
            let values: Vec<f32> = (0..n)
                .map(|_| (next() % 2001) as f32 / 500.0 - 2.0)
                .collect();
            if quantize_row(ty, &values, &mut w).is_err() {
                // No quantizer (K- and i-quants): random bytes with finite f16 scales.
                sanitize_f16_scales(ty, &mut w);
            }
            dequantize_row(ty, &w, &mut wf).unwrap();
            assert!(wf.iter().all(|v| v.is_finite()), "{ty}");
            let x: Vec<f32> = (0..n)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut a = vec![0u8; act_ty.row_size(n).unwrap()];
            quantize_row(act_ty, &x, &mut a).unwrap();
            let mut af = vec![0.0f32; n];
            dequantize_row(act_ty, &a, &mut af).unwrap();
            let exact: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum();
            let norm: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                .sum();
            // Q8_1 stores `s = d * sum(q)` as an f16 rounded from the unrounded `d`, so the
            // Q4_1/Q5_1 minimum term may differ from the dequantized product by half an f16
            // ulp of `m * s` per block.
            let mut slack = 0.0;
            if act_ty == GgmlType::Q8_1 {
                for (wb, ab) in w.chunks_exact(ty.type_size()).zip(a.chunks_exact(36)) {
                    let m = float::f16_at(wb, 2).to_f64();
                    let s = float::f16_at(ab, 2).to_f64();
                    slack += (m * s).abs() * 2f64.powi(-10);
                }
            }
            let got = f64::from(vec_dot(ty, &w, &a, n).unwrap());
            assert!(
                (got - exact).abs() <= 1e-5 * norm.max(1e-30) + slack,
                "{ty}: {got} vs {exact}"
            );
        }
    }
}
