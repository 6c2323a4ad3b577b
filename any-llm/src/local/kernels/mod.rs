//! The hot loops, chosen at run time for the CPU at hand.
//!
//! Every function here has a portable path (the scalar reference in [`quant`] or a plain loop)
//! and, where the CPU has them, SIMD paths; tests check each SIMD path against the portable
//! one. This is the only module of the crate allowed `unsafe`, each block with its reason.
//!
//! [`quant`]: crate::local::quant
#![allow(unsafe_code)]

use half::f16;

use crate::local::quant::{self, GgmlType};

#[cfg(target_arch = "x86_64")]
mod x86;

/// The dot product [`quant::vec_dot`] computes, through the fastest kernel for `ty` on this
/// CPU (what the local backend's matrix multiplications run). Public for benchmarks and for
/// checking a kernel against the reference.
///
/// # Errors
/// As [`quant::vec_dot`]: an unsupported type, or rows that are not `n` values of `ty` and
/// of `ty.vec_dot_type()`.
pub fn vec_dot(ty: GgmlType, weight_row: &[u8], act_row: &[u8], n: usize) -> quant::Result<f32> {
    let act_ty = ty
        .vec_dot_type()
        .ok_or(quant::QuantError::Unsupported { ty, op: "vec_dot" })?;
    quant::check(ty, n, weight_row.len(), "weight row")?;
    quant::check(act_ty, n, act_row.len(), "activation row")?;
    Ok(dot_fn(ty)(weight_row, act_row, n))
}

/// Quantizes one row of activations into `ty` (a weight type's `vec_dot_type()`) as the
/// local backend's matrix multiplications do before their dot products.
///
/// # Errors
/// When `out` is not the size of `x.len()` values of `ty`, or `ty` cannot be quantized to.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> quant::Result<()> {
    quant::check(ty, x.len(), out.len(), "output")?;
    match ty {
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            quantize_activations(ty, x, out);
            Ok(())
        }
        _ => quant::quantize_row(ty, x, out),
    }
}

/// A dot product of one weight row (in its GGUF type) with one quantized activation row (in
/// the paired type), over `n` values. The slices must have exactly the row sizes.
pub(crate) type DotFn = fn(&[u8], &[u8], usize) -> f32;

/// The fastest dot product for weight type `ty` on this CPU.
pub(crate) fn dot_fn(ty: GgmlType) -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::dot_fn(ty) {
        return f;
    }
    scalar_dot_fn(ty)
}

/// Weight rows per tile of a [`TileFn`].
pub(crate) const TILE_ROWS: usize = 2;
/// Activation rows (tokens) per tile of a [`TileFn`].
pub(crate) const TILE_TOKENS: usize = 4;

/// [`TILE_ROWS`] × [`TILE_TOKENS`] dot products sharing their loads: weight rows
/// `w[r * wb..][..wb]` with activation rows `a[t * ab..][..ab]` (`wb`, `ab` the row sizes for
/// `n` values) into `out[r * TILE_TOKENS + t]`.
///
/// Each output is computed by exactly the operations, in the same order, that the [`DotFn`]
/// of the same type uses, so tiled and untiled results are bit for bit the same.
pub(crate) type TileFn = fn(&[u8], &[u8], usize, &mut [f32; TILE_ROWS * TILE_TOKENS]);

/// The tiled dot product for weight type `ty` on this CPU, where there is one.
pub(crate) fn tile_fn(ty: GgmlType) -> Option<TileFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::tile_fn(ty) {
        return Some(f);
    }
    let _ = ty;
    None
}

/// The scalar reference dot product for `ty`.
pub(crate) fn scalar_dot_fn(ty: GgmlType) -> DotFn {
    macro_rules! scalar {
        ($($t:ident),*) => {
            match ty {
                $(GgmlType::$t => |w, a, n| {
                    quant::vec_dot(GgmlType::$t, w, a, n).expect("row sizes were checked by the caller")
                },)*
                _ => |_, _, _| unreachable!("weight types are checked at load"),
            }
        };
    }
    scalar!(
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K
    )
}

/// Quantizes one activation row into `ty` (the type a weight pairs with).
///
/// Q8_0 and Q8_1 follow what llama.cpp's CPU kernels compute (scale `127 / max|x|`, ties
/// rounded to even) rather than its portable reference (`1 / d`, ties away from zero): the
/// two differ on exact ties, and a small model's logits are sensitive to those.
pub(crate) fn quantize_activations(ty: GgmlType, x: &[f32], out: &mut [u8]) {
    match ty {
        GgmlType::Q8_0 => quantize_q8(x, out, false),
        GgmlType::Q8_1 => quantize_q8(x, out, true),
        _ => quant::quantize_row(ty, x, out).expect("activation sizes match the weight"),
    }
}

fn quantize_q8(x: &[f32], out: &mut [u8], with_sum: bool) {
    let block = if with_sum { 36 } else { 34 };
    let head = if with_sum { 4 } else { 2 };
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(block)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (o, &v) in ob[head..].iter_mut().zip(xb) {
            let q = (v * id).round_ties_even() as i32;
            sum += q;
            *o = q as i8 as u8;
        }
        ob[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        if with_sum {
            ob[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_bits().to_le_bytes());
        }
    }
}

/// `Σ k[i] · q[i]` for a row of f16 keys and f32 queries.
pub(crate) fn dot_f16_f32(k: &[u16], q: &[f32]) -> f32 {
    debug_assert_eq!(k.len(), q.len());
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { x86::dot_f16_f32(k, q) };
    }
    k.iter()
        .zip(q)
        .map(|(&kb, &qv)| f16::from_bits(kb).to_f32() * qv)
        .sum()
}

/// `acc[i] += p · v[i]` for a row of f16 values.
pub(crate) fn axpy_f16(acc: &mut [f32], p: f32, v: &[u16]) {
    debug_assert_eq!(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { x86::axpy_f16(acc, p, v) };
    }
    for (a, &vb) in acc.iter_mut().zip(v) {
        *a += p * f16::from_bits(vb).to_f32();
    }
}

/// Writes `x` as f16 bits (round to nearest even).
pub(crate) fn f32_to_f16(x: &[f32], out: &mut [u16]) {
    debug_assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { x86::f32_to_f16(x, out) };
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v).to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in (-scale, scale), with a few outliers like the
    /// massive activations real models have.
    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale;
                if i % 97 == 5 { v * 40.0 } else { v }
            })
            .collect()
    }

    fn quantized(ty: GgmlType, x: &[f32]) -> Vec<u8> {
        let mut out = vec![0; ty.row_size(x.len()).expect("whole blocks")];
        quant::quantize_row(ty, x, &mut out).expect("quantizes");
        out
    }

    #[test]
    fn every_dot_path_matches_the_scalar_reference() {
        // Weight types with a quantizer of their own are exercised on real quantized data.
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::F16,
        ] {
            let n = 1024;
            let act_ty = ty.vec_dot_type().expect("pairs");
            for seed in 0..8 {
                let w = quantized(ty, &values(n, seed, 1.0));
                let mut a = vec![0; act_ty.row_size(n).expect("whole blocks")];
                quantize_activations(act_ty, &values(n, seed + 100, 3.0), &mut a);
                let fast = dot_fn(ty)(&w, &a, n);
                let reference = scalar_dot_fn(ty)(&w, &a, n);
                let tol = 1e-5 * reference.abs().max(1.0);
                assert!(
                    (fast - reference).abs() <= tol,
                    "{ty:?} seed {seed}: {fast} vs {reference}"
                );
            }
        }
    }

    /// Random K-quant blocks (there is no K-quant quantizer) with sane f16 super-block
    /// scales at `scale_at` (byte offsets within the block).
    fn random_blocks(ty: GgmlType, n: usize, seed: u32, scale_at: &[usize]) -> Vec<u8> {
        let bytes = ty.row_size(n).expect("whole blocks");
        let block = ty.row_size(256).expect("one block");
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        let mut out: Vec<u8> = (0..bytes)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect();
        for (b, blk) in out.chunks_exact_mut(block).enumerate() {
            for (k, &at) in scale_at.iter().enumerate() {
                let v = f16::from_f32(0.001 + 0.0007 * ((b + k) % 7) as f32);
                blk[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn k_quant_dot_paths_match_the_scalar_reference_bit_for_bit() {
        for (ty, scale_at) in [(GgmlType::Q4_K, &[0, 2][..]), (GgmlType::Q6_K, &[208][..])] {
            let n = 1024;
            let act_ty = ty.vec_dot_type().expect("pairs");
            for seed in 0..8 {
                let w = random_blocks(ty, n, seed, scale_at);
                let mut a = vec![0; act_ty.row_size(n).expect("whole blocks")];
                quantize_activations(act_ty, &values(n, seed + 100, 3.0), &mut a);
                let fast = dot_fn(ty)(&w, &a, n);
                let reference = scalar_dot_fn(ty)(&w, &a, n);
                assert_eq!(fast.to_bits(), reference.to_bits(), "{ty:?} seed {seed}");
                assert!(
                    fast.is_finite() && fast != 0.0,
                    "{ty:?} seed {seed}: {fast}"
                );
            }
        }
    }

    #[test]
    fn tiles_match_the_single_dot_bit_for_bit() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let Some(tile) = tile_fn(ty) else { continue };
            let n = 576;
            let act_ty = ty.vec_dot_type().expect("pairs");
            let (wb, ab) = (
                ty.row_size(n).expect("whole blocks"),
                act_ty.row_size(n).expect("whole blocks"),
            );
            let w: Vec<u8> = (0..TILE_ROWS as u32)
                .flat_map(|r| quantized(ty, &values(n, r, 1.0)))
                .collect();
            let mut a = vec![0; TILE_TOKENS * ab];
            for (t, row) in a.chunks_exact_mut(ab).enumerate() {
                quantize_activations(act_ty, &values(n, 50 + t as u32, 3.0), row);
            }
            let mut out = [0.0; TILE_ROWS * TILE_TOKENS];
            tile(&w, &a, n, &mut out);
            for r in 0..TILE_ROWS {
                for t in 0..TILE_TOKENS {
                    let single = dot_fn(ty)(&w[r * wb..][..wb], &a[t * ab..][..ab], n);
                    assert_eq!(
                        out[r * TILE_TOKENS + t].to_bits(),
                        single.to_bits(),
                        "{ty:?} row {r} token {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn activation_quantization_matches_the_reference_off_ties() {
        // Away from exact ties the kernel quantizer and the portable reference agree byte for
        // byte; on ties the kernel rounds to even.
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let x = values(256, 7, 2.0);
            let mut ours = vec![0; ty.row_size(256).expect("whole blocks")];
            quantize_activations(ty, &x, &mut ours);
            let reference = quantized(ty, &x);
            let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert!(differing <= 2, "{ty:?}: {differing} bytes differ");
        }
        let mut tie = [0u8; 34];
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        quantize_activations(GgmlType::Q8_0, &x, &mut tie);
        assert_eq!(tie[3] as i8, 2, "2.5 rounds to even");
    }

    #[test]
    fn f16_helpers_match_the_portable_loops() {
        let k: Vec<u16> = values(77, 1, 4.0)
            .iter()
            .map(|&v| f16::from_f32(v).to_bits())
            .collect();
        let q = values(77, 2, 1.0);
        let terms: Vec<f32> = k
            .iter()
            .zip(&q)
            .map(|(&kb, &qv)| f16::from_bits(kb).to_f32() * qv)
            .collect();
        let portable: f32 = terms.iter().sum();
        let magnitude: f32 = terms.iter().map(|t| t.abs()).sum();
        assert!((dot_f16_f32(&k, &q) - portable).abs() <= 1e-6 * magnitude);
        let mut acc = values(77, 3, 1.0);
        let mut expected = acc.clone();
        axpy_f16(&mut acc, 0.3, &k);
        for (e, &kb) in expected.iter_mut().zip(&k) {
            *e += 0.3 * f16::from_bits(kb).to_f32();
        }
        assert!(acc.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
        let mut bits = vec![0u16; 77];
        f32_to_f16(&q, &mut bits);
        assert!(
            bits.iter()
                .zip(&q)
                .all(|(&b, &v)| b == f16::from_f32(v).to_bits())
        );
    }
}
