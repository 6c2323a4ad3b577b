//! Every vector path against the portable code through the arch-neutral functions: the dot
//! products, tiles and several-rows kernels against the scalar reference in `quant`, bit for
//! bit; activation quantization byte for byte; `exp`, SwiGLU and the f16 helpers. The ISA
//! modules have their own tests beside them (`x86/tests.rs`, `arm/tests.rs`, which reuses the
//! generators here).

use super::*;

/// Deterministic pseudo-random values in (-scale, scale), with a few outliers like the
/// massive activations real models have.
pub(super) fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
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

pub(super) fn quantized(ty: GgmlType, x: &[f32]) -> Vec<u8> {
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
pub(super) fn random_blocks(ty: GgmlType, n: usize, seed: u32, scale_at: &[usize]) -> Vec<u8> {
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
    for (ty, scale_at) in [
        (GgmlType::Q4_K, &[0, 2][..]),
        (GgmlType::Q5_K, &[0, 2][..]),
        (GgmlType::Q6_K, &[208][..]),
    ] {
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
fn row_kernels_match_the_single_dot_bit_for_bit() {
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let Some(rows) = rows_fn(ty) else { continue };
        let n = 576;
        let act_ty = ty.vec_dot_type().expect("pairs");
        let wb = ty.row_size(n).expect("whole blocks");
        let w: Vec<u8> = (0..ROWS as u32)
            .flat_map(|r| quantized(ty, &values(n, r + 20, 1.0)))
            .collect();
        let mut a = vec![0; act_ty.row_size(n).expect("whole blocks")];
        quantize_activations(act_ty, &values(n, 77, 3.0), &mut a);
        let mut out = [0.0; ROWS];
        rows(&w, &a, n, &mut out);
        for (r, o) in out.iter().enumerate() {
            let single = dot_fn(ty)(&w[r * wb..][..wb], &a, n);
            assert_eq!(o.to_bits(), single.to_bits(), "{ty:?} row {r}");
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
fn i_quant_dot_paths_match_the_scalar_reference() {
    // Random indexes and group scales under a sane f16 scale per block; odd block counts
    // for IQ4_NL reach the kernel's scalar tail.
    for (ty, n) in [
        (GgmlType::IQ4_NL, 1024),
        (GgmlType::IQ4_NL, 32 * 9),
        (GgmlType::IQ4_XS, 1024),
    ] {
        let act_ty = ty.vec_dot_type().expect("pairs");
        for seed in 0..8 {
            let mut w = random_blocks(ty, n, seed + 40, &[]);
            for (b, blk) in w.chunks_exact_mut(ty.type_size()).enumerate() {
                let d = f16::from_f32(0.002 + 0.0005 * ((b + seed as usize) % 5) as f32);
                blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
            }
            let mut a = vec![0; act_ty.row_size(n).expect("whole blocks")];
            quantize_activations(act_ty, &values(n, seed + 140, 3.0), &mut a);
            let fast = dot_fn(ty)(&w, &a, n);
            let reference = scalar_dot_fn(ty)(&w, &a, n);
            let tol = 1e-5 * reference.abs().max(1.0);
            assert!(
                (fast - reference).abs() <= tol && fast != 0.0,
                "{ty:?} n {n} seed {seed}: {fast} vs {reference}"
            );
        }
    }
}

#[test]
fn k_quant_tiles_match_the_single_dot_bit_for_bit() {
    for (ty, scale_at) in [
        (GgmlType::Q4_K, &[0, 2][..]),
        (GgmlType::Q5_K, &[0, 2][..]),
        (GgmlType::Q6_K, &[208][..]),
    ] {
        let Some(tile) = tile_fn(ty) else { continue };
        let n = 768;
        let act_ty = ty.vec_dot_type().expect("pairs");
        let (wb, ab) = (
            ty.row_size(n).expect("whole blocks"),
            act_ty.row_size(n).expect("whole blocks"),
        );
        let w: Vec<u8> = (0..TILE_ROWS as u32)
            .flat_map(|r| random_blocks(ty, n, 30 + r, scale_at))
            .collect();
        let mut a = vec![0; TILE_TOKENS * ab];
        for (t, row) in a.chunks_exact_mut(ab).enumerate() {
            quantize_activations(act_ty, &values(n, 60 + t as u32, 3.0), row);
        }
        let mut out = [0.0; TILE_ROWS * TILE_TOKENS];
        tile(&w, &a, n, &mut out);
        for r in 0..TILE_ROWS {
            for t in 0..TILE_TOKENS {
                let (wr, ar) = (&w[r * wb..][..wb], &a[t * ab..][..ab]);
                let single = dot_fn(ty)(wr, ar, n);
                let reference = scalar_dot_fn(ty)(wr, ar, n);
                let got = out[r * TILE_TOKENS + t];
                assert_eq!(got.to_bits(), single.to_bits(), "{ty:?} row {r} token {t}");
                assert_eq!(
                    got.to_bits(),
                    reference.to_bits(),
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
fn vector_activation_quantization_matches_the_portable_one_byte_for_byte() {
    let mut x = values(32 * 64, 11, 5.0);
    // A zero block, a block of exact ties, and one with a single huge value.
    x[..32].fill(0.0);
    for (i, v) in x[32..64].iter_mut().enumerate() {
        *v = if i == 0 { 127.0 } else { i as f32 - 15.5 };
    }
    x[64] = 22_000.0;
    for with_sum in [false, true] {
        let block = if with_sum { Q8_1_BYTES } else { Q8_0_BYTES };
        let mut fast = vec![0u8; x.len() / 32 * block];
        let mut portable = fast.clone();
        quantize_q8(&x, &mut fast, with_sum);
        quantize_q8_scalar(&x, &mut portable, with_sum);
        assert_eq!(fast, portable, "with_sum {with_sum}");
    }
}

#[test]
fn q8_k_activation_quantization_matches_the_reference_byte_for_byte() {
    let mut x = values(256 * 8, 13, 4.0);
    // A zero block; a block of exact ties; a block whose extreme is negative and repeated with
    // both signs (the first one sets the scale); a block with a NaN and an infinity.
    x[..256].fill(0.0);
    for (i, v) in x[256..512].iter_mut().enumerate() {
        *v = if i == 0 {
            127.0
        } else {
            i as f32 % 64.0 - 31.5
        };
    }
    x[600] = -9.0;
    x[700] = 9.0;
    x[1000] = f32::NAN;
    x[1300] = f32::INFINITY;
    let size = GgmlType::Q8_K.row_size(x.len()).expect("whole blocks");
    let (mut fast, mut reference) = (vec![0u8; size], vec![0u8; size]);
    quantize_activations(GgmlType::Q8_K, &x, &mut fast);
    quant::quantize_row(GgmlType::Q8_K, &x, &mut reference).expect("quantizes");
    for (b, (f, r)) in fast
        .chunks(crate::quant::Q8_K_BYTES)
        .zip(reference.chunks(crate::quant::Q8_K_BYTES))
        .enumerate()
    {
        assert_eq!(f, r, "block {b}");
    }
}

#[test]
fn vector_exp_and_swiglu_match_the_scalar_ones() {
    let mut x: Vec<f32> = values(1000, 9, 30.0);
    x.extend([
        -200.0,
        -130.0,
        -100.0,
        -88.0,
        0.0,
        88.0,
        100.0,
        200.0,
        f32::NEG_INFINITY,
    ]);
    let mut fast = x.clone();
    exp_in_place(&mut fast);
    for (i, (&f, &v)) in fast.iter().zip(&x).enumerate() {
        assert_eq!(f.to_bits(), exp(v).to_bits(), "exp({v}) at {i}");
    }
    let up = values(x.len(), 10, 2.0);
    let mut gate: Vec<f32> = x.iter().map(|v| v.clamp(-150.0, 150.0)).collect();
    let expected: Vec<f32> = gate
        .iter()
        .zip(&up)
        .map(|(&g, &u)| g / (1.0 + exp(0.0 - g)) * u)
        .collect();
    swiglu(&mut gate, &up);
    for (g, e) in gate.iter().zip(&expected) {
        assert_eq!(g.to_bits(), e.to_bits());
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // lane arithmetic reads best with indices
fn f16_helpers_match_the_portable_loops() {
    let k: Vec<u16> = values(64, 1, 4.0)
        .iter()
        .map(|&v| f16::from_f32(v).to_bits())
        .collect();
    let q = values(64, 2, 1.0);
    let kf: Vec<f32> = k.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    // The portable statement of each order, lane by lane.
    let mut lanes = [0f32; 16];
    for x in 0..64 {
        lanes[x % 16] = kf[x].mul_add(q[x], lanes[x % 16]);
    }
    let halve = crate::attention::reduce16;
    if let Some(fast) = dot_f16_lanes(false, &k, &q) {
        assert_eq!(fast.to_bits(), halve(lanes).to_bits());
    }
    let mut groups = [[0f32; 16]; 4];
    for x in 0..64 {
        groups[x / 16][x % 16] = kf[x].mul_add(q[x], groups[x / 16][x % 16]);
    }
    for l in 0..16 {
        groups[0][l] += groups[2][l];
        groups[1][l] += groups[3][l];
        groups[0][l] += groups[1][l];
    }
    if let Some(fast) = dot_f16_lanes(true, &k, &q) {
        assert_eq!(fast.to_bits(), halve(groups[0]).to_bits());
    }
    let mut acc = values(77, 3, 1.0);
    let mut expected = acc.clone();
    let v: Vec<u16> = values(77, 4, 4.0)
        .iter()
        .map(|&v| f16::from_f32(v).to_bits())
        .collect();
    fma_f16_row(&mut acc, 0.3, &v);
    for (e, &vb) in expected.iter_mut().zip(&v) {
        *e = 0.3f32.mul_add(f16::from_bits(vb).to_f32(), *e);
    }
    assert_eq!(acc, expected);
    let mut bits = vec![0u16; 77];
    f32_to_f16(&q[..64].repeat(2)[..77], &mut bits);
    assert!(
        bits.iter()
            .zip(&q[..64].repeat(2))
            .all(|(&b, &v)| b == f16::from_f32(v).to_bits())
    );
}
