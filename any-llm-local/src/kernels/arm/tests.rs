//! Every NEON path, with and without `dotprod`, against the portable code: the scalar
//! reference in `quant` for the dot products, the portable loops for the rest. Run them on
//! an aarch64 CPU, or under `qemu-aarch64` with `-cpu max` (which has `dotprod`) and
//! `-cpu cortex-a53` (which has not), as `scripts/test` does; without `dotprod`, the `sdot`
//! variants are skipped and said so.

use half::f16;

use super::super::tests::{quantized, random_blocks, values};
use super::super::{ROWS, TILE_ROWS, TILE_TOKENS};
use super::attention::{attn_scores, attn_value_slots, dot_f16_lanes};
use super::*;
use crate::quant;

/// The variants this CPU runs: plain NEON, and `dotprod` where present.
fn variants() -> Vec<bool> {
    if has_dotprod() {
        vec![false, true]
    } else {
        eprintln!("this CPU has no dotprod: only the plain NEON kernels run here");
        vec![false]
    }
}

/// Activations of `n` values in the type `ty` pairs with, quantized as the backend does.
fn activations(ty: GgmlType, n: usize, seed: u32, scale: f32) -> Vec<u8> {
    let act_ty = ty.vec_dot_type().expect("pairs");
    let mut x = values(n, seed, scale);
    // A block of zeros, where there are several.
    if n >= 64 {
        x[32..64].fill(0.0);
    }
    let mut a = vec![0; act_ty.row_size(n).expect("whole blocks")];
    super::super::quantize_activations(act_ty, &x, &mut a);
    a
}

/// Weight rows of `n` values: quantized from values of very different sizes (the largest
/// near the top of f16), then rows of
/// random bytes (every quant value, `-128` included) under sane f16 scales.
fn weight_rows(ty: GgmlType, n: usize, seed: u32) -> Vec<Vec<u8>> {
    let mut rows: Vec<Vec<u8>> = [1e-3, 1.0, 1e3]
        .iter()
        .map(|&scale| quantized(ty, &values(n, seed, scale)))
        .collect();
    let block = ty.row_size(32).expect("one block");
    let mut raw = random_blocks(ty, n, seed, &[]);
    for (i, b) in raw.chunks_exact_mut(block).enumerate() {
        let d = f16::from_f32(0.01 + 0.003 * (i % 5) as f32)
            .to_bits()
            .to_le_bytes();
        b[..2].copy_from_slice(&d);
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            let m = f16::from_f32(-0.2 + 0.01 * (i % 7) as f32)
                .to_bits()
                .to_le_bytes();
            b[2..4].copy_from_slice(&m);
        }
    }
    rows.push(raw);
    rows
}

/// The scalar reference and the sum of its blocks' magnitudes (what a different order of
/// the same additions can be off by a few ulp of).
fn reference(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> (f32, f32) {
    let act_ty = ty.vec_dot_type().expect("pairs");
    let (wb, ab) = (
        ty.row_size(32).expect("block"),
        act_ty.row_size(32).expect("block"),
    );
    let magnitude = w
        .chunks_exact(wb)
        .zip(a.chunks_exact(ab))
        .map(|(w, a)| quant::vec_dot(ty, w, a, 32).expect("one block").abs())
        .sum();
    (quant::vec_dot(ty, w, a, n).expect("sizes match"), magnitude)
}

const LEGACY: [GgmlType; 5] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];

#[test]
fn legacy_dots_match_the_scalar_reference_and_each_other() {
    for ty in LEGACY {
        for n in [32, 64, 96, 576, 2048] {
            for seed in 0..3 {
                let a = activations(ty, n, seed + 100, 3.0);
                for (k, w) in weight_rows(ty, n, seed).iter().enumerate() {
                    let (expected, magnitude) = reference(ty, w, &a, n);
                    let mut bits = Vec::new();
                    for dotprod in variants() {
                        let dot = if dotprod {
                            legacy::dot_fn::<true>(ty)
                        } else {
                            legacy::dot_fn::<false>(ty)
                        }
                        .expect("a kernel");
                        let got = dot(w, &a, n);
                        let tol = 1e-5 * magnitude.max(f32::MIN_POSITIVE);
                        assert!(
                            (got - expected).abs() <= tol,
                            "{ty:?} n {n} seed {seed} row {k} dotprod {dotprod}: {got} vs {expected}"
                        );
                        bits.push(got.to_bits());
                    }
                    assert!(
                        bits.windows(2).all(|b| b[0] == b[1]),
                        "{ty:?} n {n} seed {seed} row {k}: sdot changed the result"
                    );
                }
            }
        }
    }
}

/// Block `b`'s 32 weight quants as integers (offset removed), in value order.
fn weight_quants(ty: GgmlType, w: &[u8], b: usize) -> [i32; 32] {
    let block = &w[b * ty.row_size(32).expect("one block")..];
    let nibble = |at: usize, i: usize| i32::from((block[at + i % 16] >> (4 * (i / 16))) & 0x0F);
    let fifth = |at: usize, i: usize| {
        let qh = u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
        (((qh >> i) & 1) << 4) as i32
    };
    std::array::from_fn(|i| match ty {
        GgmlType::Q4_0 => nibble(2, i) - 8,
        GgmlType::Q4_1 => nibble(4, i),
        GgmlType::Q5_0 => (nibble(6, i) | fifth(2, i)) - 16,
        GgmlType::Q5_1 => nibble(8, i) | fifth(4, i),
        _ => i32::from(block[2 + i] as i8),
    })
}

#[test]
fn legacy_dots_sum_in_the_x86_kernels_order() {
    // The x86 kernels (and llama.cpp's x86 build, whose logits the local backend
    // reproduces) keep eight lanes of four adjacent products, fuse each block's d_w · d_a
    // into them, and sum the lanes ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)).
    let f16_at = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
    for ty in LEGACY {
        let with_min = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
        let (wb, ab) = (
            ty.row_size(32).expect("block"),
            if with_min { 36 } else { 34 },
        );
        for n in [32, 576] {
            let a = activations(ty, n, 9, 3.0);
            for w in weight_rows(ty, n, 4) {
                let (mut lanes, mut mins) = ([0f32; 8], 0f32);
                for b in 0..n / 32 {
                    let (wq, ablk) = (weight_quants(ty, &w, b), &a[b * ab..][..ab]);
                    let aq = |i: usize| i32::from(ablk[ab - 32 + i] as i8);
                    let d = f16_at(&w, b * wb) * f16_at(ablk, 0);
                    for (k, lane) in lanes.iter_mut().enumerate() {
                        let sum: i32 = (4 * k..4 * k + 4).map(|i| wq[i] * aq(i)).sum();
                        *lane = (sum as f32).mul_add(d, *lane);
                    }
                    if with_min {
                        mins += f16_at(&w, b * wb + 2) * f16_at(ablk, 2);
                    }
                }
                let l = lanes;
                let total = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
                let want = if with_min { total + mins } else { total };
                for dotprod in variants() {
                    let dot = if dotprod {
                        legacy::dot_fn::<true>(ty)
                    } else {
                        legacy::dot_fn::<false>(ty)
                    }
                    .expect("a kernel");
                    let got = dot(&w, &a, n);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{ty:?} n {n} dotprod {dotprod}"
                    );
                }
            }
        }
    }
}

#[test]
fn legacy_rows_and_tiles_equal_their_dot_bit_for_bit() {
    for ty in LEGACY {
        let act_ty = ty.vec_dot_type().expect("pairs");
        for n in [32, 96, 576] {
            let (wb, ab) = (
                ty.row_size(n).expect("whole blocks"),
                act_ty.row_size(n).expect("whole blocks"),
            );
            // Four weight rows of different kinds, four tokens.
            let w: Vec<u8> = (0..ROWS as u32)
                .flat_map(|r| weight_rows(ty, n, r).swap_remove(r as usize % 4))
                .collect();
            let a: Vec<u8> = (0..TILE_TOKENS as u32)
                .flat_map(|t| activations(ty, n, 50 + t, 3.0))
                .collect();
            for dotprod in variants() {
                let (dot, rows, tile) = if dotprod {
                    (
                        legacy::dot_fn::<true>(ty),
                        legacy::rows_fn::<true>(ty),
                        legacy::tile_fn::<true>(ty),
                    )
                } else {
                    (
                        legacy::dot_fn::<false>(ty),
                        legacy::rows_fn::<false>(ty),
                        legacy::tile_fn::<false>(ty),
                    )
                };
                let (dot, rows, tile) = (dot.unwrap(), rows.unwrap(), tile.unwrap());
                let single = |r: usize, t: usize| dot(&w[r * wb..][..wb], &a[t * ab..][..ab], n);
                for t in 0..TILE_TOKENS {
                    let mut out = [0.0; ROWS];
                    rows(&w, &a[t * ab..][..ab], n, &mut out);
                    for (r, o) in out.iter().enumerate() {
                        assert_eq!(
                            o.to_bits(),
                            single(r, t).to_bits(),
                            "{ty:?} n {n} rows: row {r} token {t} dotprod {dotprod}"
                        );
                    }
                }
                let mut out = [0.0; TILE_ROWS * TILE_TOKENS];
                tile(&w[..TILE_ROWS * wb], &a, n, &mut out);
                for r in 0..TILE_ROWS {
                    for t in 0..TILE_TOKENS {
                        assert_eq!(
                            out[r * TILE_TOKENS + t].to_bits(),
                            single(r, t).to_bits(),
                            "{ty:?} n {n} tile: row {r} token {t} dotprod {dotprod}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn k_quant_dots_equal_the_scalar_reference_bit_for_bit() {
    for (ty, scale_at) in [
        (GgmlType::Q4_K, &[0, 2][..]),
        (GgmlType::Q5_K, &[0, 2][..]),
        (GgmlType::Q6_K, &[208][..]),
    ] {
        for n in [256, 512, 2048] {
            for seed in 0..4 {
                let mut w = random_blocks(ty, n, seed, scale_at);
                let block = ty.row_size(256).expect("one block");
                // The largest scales and quants in one block, the smallest in another.
                if n >= 512 {
                    let (first, second) = w.split_at_mut(block);
                    for (i, b) in first.iter_mut().enumerate() {
                        if !scale_at.iter().any(|&at| (at..at + 2).contains(&i)) {
                            *b = 0xFF;
                        }
                    }
                    for (i, b) in second[..block].iter_mut().enumerate() {
                        if !scale_at.iter().any(|&at| (at..at + 2).contains(&i)) {
                            *b = 0;
                        }
                    }
                }
                let mut a = vec![0; GgmlType::Q8_K.row_size(n).expect("whole blocks")];
                quant::quantize_row(GgmlType::Q8_K, &values(n, seed + 7, 5.0), &mut a)
                    .expect("quantizes");
                let expected = quant::vec_dot(ty, &w, &a, n).expect("sizes match");
                for dotprod in variants() {
                    let dot = if dotprod {
                        kquants::dot_fn::<true>(ty)
                    } else {
                        kquants::dot_fn::<false>(ty)
                    }
                    .expect("a kernel");
                    let got = dot(&w, &a, n);
                    assert_eq!(
                        got.to_bits(),
                        expected.to_bits(),
                        "{ty:?} n {n} seed {seed} dotprod {dotprod}: {got} vs {expected}"
                    );
                }
            }
        }
    }
}

#[test]
fn i_quant_dots_equal_the_scalar_reference_bit_for_bit() {
    let variants = variants();
    for (ty, block_values) in [(GgmlType::IQ4_NL, 32), (GgmlType::IQ4_XS, 256)] {
        let block = ty.row_size(block_values).expect("one block");
        for n in [256, 512, 2048] {
            for seed in 0..4 {
                // Random indexes and group scales (every 6-bit scale, -32 included) under
                // f16 scales from tiny to large; the largest index and scale bytes in one
                // block, zeros in another. (No quantizer writes these types here.)
                let rows: Vec<Vec<u8>> = [1e-4, 0.01, 100.0]
                    .iter()
                    .map(|&size| {
                        let mut w = random_blocks(ty, n, seed + 60, &[]);
                        for (b, blk) in w.chunks_exact_mut(block).enumerate() {
                            let d = f16::from_f32(size * (1.0 + 0.25 * (b % 5) as f32));
                            blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
                        }
                        if n / block_values >= 2 {
                            w[2..block].fill(0xFF);
                            w[block + 2..2 * block].fill(0);
                        }
                        w
                    })
                    .collect();
                let a = activations(ty, n, seed + 160, 3.0);
                for w in &rows {
                    let expected = quant::vec_dot(ty, w, &a, n).expect("sizes match");
                    for &dotprod in &variants {
                        let dot = if dotprod {
                            iquants::dot_fn::<true>(ty)
                        } else {
                            iquants::dot_fn::<false>(ty)
                        }
                        .expect("a kernel");
                        let got = dot(w, &a, n);
                        assert_eq!(
                            got.to_bits(),
                            expected.to_bits(),
                            "{ty:?} n {n} seed {seed} dotprod {dotprod}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn activation_quantization_equals_the_portable_one_on_extreme_values() {
    let mut x = values(32 * 12, 3, 4.0);
    // Exact ties, then NaN and infinities, then tiny values with subnormals, then values
    // near the top of f32, then negative zeros.
    for (i, v) in x[..32].iter_mut().enumerate() {
        *v = if i == 0 { 127.0 } else { i as f32 - 15.5 };
    }
    x[33] = f32::NAN;
    x[64] = f32::INFINITY;
    x[70] = f32::NEG_INFINITY;
    for (i, v) in x[96..128].iter_mut().enumerate() {
        *v = if i == 3 { 1e-36 } else { 1e-40 * i as f32 };
    }
    for (i, v) in x[128..160].iter_mut().enumerate() {
        *v = 3e38 - 1e37 * i as f32;
    }
    x[160..192].fill(-0.0);
    for with_sum in [false, true] {
        let block = if with_sum { 36 } else { 34 };
        let mut fast = vec![0u8; x.len() / 32 * block];
        let mut portable = fast.clone();
        // SAFETY: this module is built only with NEON.
        unsafe { quantize_q8_neon(&x, &mut fast, with_sum) };
        super::super::quantize_q8_scalar(&x, &mut portable, with_sum);
        assert_eq!(fast, portable, "with_sum {with_sum}");
    }
}

/// Values that probe f16 rounding: ties, the edges of the range, subnormals, NaN.
fn f16_edges() -> Vec<f32> {
    let mut x = values(200, 5, 3.0);
    x.extend([
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        65504.0,
        65519.0,
        65520.0,
        -70000.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -0.0,
        1e-6,
        -3e-8,
        6e-8,
        1e-9,
    ]);
    x
}

#[test]
fn f16_conversions_and_fma_equal_the_portable_ones_at_every_length() {
    let x = f16_edges();
    let bits: Vec<u16> = values(x.len(), 6, 4.0)
        .iter()
        .map(|&v| f16::from_f32(v).to_bits())
        .collect();
    for n in (0..20).chain([63, 64, 65, x.len()]) {
        let x = &x[x.len() - n..];
        let mut fast = x.to_vec();
        let mut portable = x.to_vec();
        // SAFETY: this module is built only with NEON.
        unsafe { round_to_f16_neon(&mut fast) };
        super::super::round_to_f16_portable(&mut portable);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "round_to_f16, {n} values"
        );
        let (mut fast, mut portable) = (vec![0u16; n], vec![0u16; n]);
        // SAFETY: as above.
        unsafe { f32_to_f16_neon(x, &mut fast) };
        super::super::f32_to_f16_portable(x, &mut portable);
        assert_eq!(fast, portable, "f32_to_f16, {n} values");
        let v = &bits[..n];
        let (mut fast, mut portable) = (x.to_vec(), x.to_vec());
        // SAFETY: as above.
        unsafe { fma_f16_row_neon(&mut fast, -0.37, v) };
        super::super::fma_f16_row_portable(&mut portable, -0.37, v);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "fma_f16_row, {n} values"
        );
    }
}

/// The portable statement of the f16 dot product's order: index `x` into lane `x mod
/// period` (fused), the lanes folded by halving.
fn portable_dot(period: usize, k: &[u16], q: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    for (x, (&kb, &qv)) in k.iter().zip(q).enumerate() {
        acc[x % period] = f16::from_bits(kb).to_f32().mul_add(qv, acc[x % period]);
    }
    super::super::halve_rows(period, &mut acc, 1);
    acc[0]
}

fn f16_row(n: usize, seed: u32) -> Vec<u16> {
    values(n, seed, 8.0)
        .iter()
        .map(|&v| f16::from_f32(v).to_bits())
        .collect()
}

#[test]
fn f16_dot_products_follow_the_portable_order_bit_for_bit() {
    for n in (16..=320).step_by(16) {
        let k = f16_row(n, n as u32);
        let q = values(n, 1 + n as u32, 2.0);
        for (lanes64, period) in [(false, 16), (true, 64)] {
            // SAFETY: this module is built only with NEON.
            let fast = unsafe { dot_f16_lanes(lanes64, &k, &q) }.expect("a multiple of 16");
            let want = portable_dot(period, &k, &q);
            assert_eq!(
                fast.to_bits(),
                want.to_bits(),
                "{n} values, lanes64 {lanes64}"
            );
        }
    }
    // SAFETY: as above.
    let odd = unsafe { dot_f16_lanes(false, &[0; 24], &[0.0; 24]) };
    assert_eq!(
        odd, None,
        "not a multiple of 16: the caller's portable loop runs"
    );
}

#[test]
fn attention_kernels_follow_the_portable_order_at_other_head_widths() {
    // Widths 64 and 128 are checked by the attention module's own test.
    for hd in [16, 32, 80, 256] {
        for heads in [1, 4] {
            for len in [1, 17, 70] {
                let keys = f16_row(len * hd, 1);
                let values_f16 = f16_row(len * hd, 2);
                let q = values(heads * hd, 3, 1.0);
                let p = values(heads * len, 4, 1.0);
                for (lanes64, period) in [(false, 16), (true, 64)] {
                    let mut scores = vec![0.0; heads * len];
                    // SAFETY: this module is built only with NEON.
                    assert!(unsafe { attn_scores(lanes64, &keys, &q, hd, 0.3, &mut scores) });
                    for h in 0..heads {
                        for j in 0..len {
                            let k = &keys[j * hd..][..hd];
                            let want = portable_dot(period, k, &q[h * hd..][..hd]) * 0.3;
                            let got = scores[h * len + j];
                            assert_eq!(got.to_bits(), want.to_bits(), "scores {hd} {heads} {len}");
                        }
                    }
                    let slots = 1..period - 1;
                    let stride = slots.len() + 1;
                    let mut acc = vec![f32::NAN; heads * stride * hd];
                    // SAFETY: as above.
                    let done = unsafe {
                        attn_value_slots(
                            lanes64,
                            &p,
                            &values_f16,
                            hd,
                            heads,
                            slots.clone(),
                            &mut acc,
                        )
                    };
                    assert!(done);
                    let mut want = vec![0.0f32; heads * stride * hd];
                    for h in 0..heads {
                        for j in (0..len).filter(|j| slots.contains(&(j % period))) {
                            let at = (h * stride + j % period - slots.start) * hd;
                            super::super::fma_f16_row_portable(
                                &mut want[at..at + hd],
                                p[h * len + j],
                                &values_f16[j * hd..][..hd],
                            );
                        }
                    }
                    assert_eq!(
                        acc.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "value slots {hd} {heads} {len} lanes64 {lanes64}"
                    );
                }
            }
        }
    }
}

#[test]
fn dotprod_detection_matches_the_cpu_the_runner_chose() {
    // A runner that chose the CPU (`scripts/test`, through the emulator's `-cpu`) says in
    // `ANY_EXPECT_DOTPROD` whether it has `dotprod`.
    match std::env::var("ANY_EXPECT_DOTPROD").as_deref() {
        Ok("1") => assert!(has_dotprod(), "this CPU should have dotprod"),
        Ok("0") => assert!(!has_dotprod(), "this CPU should not have dotprod"),
        _ => eprintln!("ANY_EXPECT_DOTPROD unset: detection says {}", has_dotprod()),
    }
    let ty = GgmlType::Q4_1;
    let (w, a) = (
        quantized(ty, &values(64, 2, 1.0)),
        activations(ty, 64, 1, 1.0),
    );
    let (fast, expected) = (
        super::super::dot_fn(ty)(&w, &a, 64),
        reference(ty, &w, &a, 64),
    );
    assert!(
        (fast - expected.0).abs() <= 1e-5 * expected.1,
        "{fast} vs {expected:?}"
    );
}
