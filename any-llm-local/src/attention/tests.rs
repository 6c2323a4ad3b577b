//! The attention arithmetic against the portable order, bit for bit: the vector kernels of
//! every tier this CPU has, the f16 and Q8_0 caches, and the Q8_0 decode step's blocks.

use super::*;
use crate::quant::Q8_0_BYTES;
use half::f16;

#[test]
fn exp_is_close_to_the_true_exponential() {
    let exp = kernels::exp;
    for i in -2000..2000 {
        let x = i as f32 * 0.043;
        let (ours, truth) = (exp(x), x.exp());
        assert!(
            (ours - truth).abs() <= 2.0 * f32::EPSILON * truth,
            "exp({x}) = {ours}, not {truth}"
        );
    }
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp(-200.0), 0.0);
    assert_eq!(exp(200.0), f32::INFINITY);
    assert_eq!(exp(0.0), 1.0);
}

#[test]
fn the_lane_order_adds_the_right_numbers() {
    let k: Vec<u16> = (0..64)
        .map(|i| f16::from_f32((i as f32 - 30.0) * 0.37).to_bits())
        .collect();
    let q: Vec<f32> = (0..64).map(|i| (i as f32 * 0.11).sin()).collect();
    let exact: f64 = k
        .iter()
        .zip(&q)
        .map(|(&kb, &qv)| f64::from(f16::from_bits(kb).to_f32()) * f64::from(qv))
        .sum();
    let kf: Vec<f32> = k.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    for order in [SumOrder::Lanes16, SumOrder::Lanes64] {
        assert!(
            (f64::from(dot(order, &kf, &q)) - exact).abs() < 1e-4,
            "{order:?}"
        );
    }
}

/// Deterministic f16 rows with magnitudes like a small model's keys and values.
fn f16_rows(n: usize, seed: u32) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let x = ((i as f32 + seed as f32 * 7.3) * 0.61).sin() * (1.0 + (i % 13) as f32);
            f16::from_f32(x).to_bits()
        })
        .collect()
}

/// The same rows stored as f16 bits and as Q8_0 blocks.
fn kv_both(n: usize, seed: u32) -> (Vec<u16>, Vec<u8>) {
    let f = f16_rows(n, seed);
    let x: Vec<f32> = f.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    let mut q = vec![0u8; n / 32 * Q8_0_BYTES];
    kernels::quantize_activations(crate::quant::GgmlType::Q8_0, &x, &mut q);
    (f, q)
}

#[test]
fn vector_attention_kernels_equal_the_portable_order_bit_for_bit() {
    for hd in [64, 128] {
        for heads in [1, 3, 5] {
            for len in [1, 5, 16, 17, 63, 64, 65, 200, 1000] {
                let (kf, kq) = kv_both(len * hd, 1);
                let (vf, vq) = kv_both(len * hd, 2);
                let q: Vec<f32> = f16_rows(heads * hd, 3)
                    .iter()
                    .map(|&b| f16::from_bits(b).to_f32())
                    .collect();
                for (keys, values) in [
                    (KvRows::F16(&kf), KvRows::F16(&vf)),
                    (KvRows::Q8_0(&kq), KvRows::Q8_0(&vq)),
                ] {
                    // The kernels this CPU picks, then the AVX2 ones (also where AVX-512
                    // would be picked).
                    check_kernels(hd, heads, len, keys, values, &q, false);
                    check_kernels(hd, heads, len, keys, values, &q, true);
                }
            }
        }
    }
}

fn check_kernels(
    hd: usize,
    heads: usize,
    len: usize,
    keys: KvRows<'_>,
    values: KvRows<'_>,
    q: &[f32],
    avx2: bool,
) {
    let tier = if avx2 { Tier::Baseline } else { Tier::Best };
    let mut row = vec![0.0; hd];
    for order in [SumOrder::Lanes16, SumOrder::Lanes64] {
        let lanes64 = order == SumOrder::Lanes64;
        let mut fast = vec![0.0; heads * len];
        if !kernels::attn_scores(tier, lanes64, keys, q, hd, 0.125, &mut fast) {
            eprintln!("no vector attention kernels (avx2: {avx2}) on this CPU");
            return;
        }
        for (h, qh) in q.chunks_exact(hd).enumerate() {
            for j in 0..len {
                keys.row_f32(j, &mut row);
                let slow = dot(order, &row, qh) * 0.125;
                let f = fast[h * len + j];
                assert_eq!(
                    f.to_bits(),
                    slow.to_bits(),
                    "scores {keys:?} {hd} {len} {j} avx2 {avx2}"
                );
            }
        }
        let p: Vec<f32> = (0..heads * len)
            .map(|j| f16::from_f32(1.0 / (1.0 + j as f32)).to_f32())
            .collect();
        let period = order.period();
        for slots in [0..period, 0..period / 2, period / 2..period] {
            let stride = slots.len() + 1;
            let mut acc = vec![f32::NAN; heads * stride * hd];
            assert!(kernels::attn_value_slots(
                tier,
                lanes64,
                &p,
                values,
                hd,
                heads,
                slots.clone(),
                &mut acc
            ));
            for (h, ph) in p.chunks_exact(len).enumerate() {
                let mut slow = vec![0.0; 64 * hd];
                for (j, &pj) in ph.iter().enumerate() {
                    values.row_f32(j, &mut row);
                    let slot = order.slot(j);
                    for (a, &v) in slow[slot * hd..][..hd].iter_mut().zip(&row) {
                        *a = pj.mul_add(v, *a);
                    }
                }
                let got: Vec<u32> = acc[h * stride * hd..][..slots.len() * hd]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                let want: Vec<u32> = slow[slots.start * hd..slots.end * hd]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, want, "slots {hd} {heads} {len} {slots:?} avx2 {avx2}");
                let mut portable = vec![f32::NAN; heads * stride * hd];
                value_slots_portable(order, &p, values, hd, heads, slots.clone(), &mut portable);
                let at = h * stride * hd;
                assert_eq!(
                    acc[at..at + slots.len() * hd]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    portable[at..at + slots.len() * hd]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "portable slots {hd} {heads} {len} {slots:?}"
                );
                // The vector fold equals the portable one.
                let mut folded = vec![0.0; hd];
                let mut all = slow.clone();
                kernels::fold_slots(period, &mut all, &mut folded);
                let (mut all2, mut folded2) = (slow.clone(), vec![0.0; hd]);
                kernels::fold_slots_portable(period, &mut all2, &mut folded2);
                assert_eq!(
                    folded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    folded2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "portable fold {hd} {len} {order:?}"
                );
                order.fold(&mut slow, hd);
                assert_eq!(
                    folded.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    slow[..hd].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "fold {hd} {len} {order:?}"
                );
            }
        }
    }
}

#[test]
fn the_f32_row_kernels_keep_the_portable_order() {
    let (_, rows) = kv_both(3 * 128, 6);
    let q: Vec<f32> = (0..128).map(|i| (i as f32 * 0.7).cos() * 5.0).collect();
    let mut row = vec![0.0; 128];
    for j in 0..3 {
        KvRows::Q8_0(&rows).range(j, 1, 128).row_f32(0, &mut row);
        for order in [SumOrder::Lanes16, SumOrder::Lanes64] {
            if let Some(v) = kernels::dot_f32_lanes(order == SumOrder::Lanes64, &row, &q) {
                assert_eq!(v.to_bits(), dot(order, &row, &q).to_bits(), "{order:?}");
            }
        }
        let mut fast: Vec<f32> = q.clone();
        kernels::fma_f32_row(&mut fast, 0.37, &row);
        let slow: Vec<f32> = q
            .iter()
            .zip(&row)
            .map(|(&a, &x)| 0.37f32.mul_add(x, a))
            .collect();
        assert_eq!(fast, slow);
    }
}

#[test]
fn q8_0_decode_kernels_equal_the_portable_ones_bit_for_bit() {
    let mut vector_paths = false;
    for hd in [64, 128, 96] {
        for heads in [1, 3, 5] {
            for len in [1, 5, 16, 17, 63, 200, Q8_BLOCK] {
                let (_, keys) = kv_both(len * hd, 1);
                let (_, values) = kv_both(len * hd, 2);
                let q: Vec<f32> = f16_rows(heads * hd, 3)
                    .iter()
                    .map(|&b| f16::from_bits(b).to_f32())
                    .collect();
                let (mut qs, mut qd) = (Vec::new(), Vec::new());
                quantize_queries(&q, &mut qs, &mut qd);
                let mut fast = vec![f32::NAN; heads * len];
                let mut slow = vec![f32::NAN; heads * len];
                q8_scores_portable(&qs, &qd, &keys, hd, 0.125, &mut slow);
                if kernels::attn_q8_scores(Tier::Best, &qs, &qd, &keys, hd, 0.125, &mut fast) {
                    vector_paths = true;
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fast), bits(&slow), "scores {hd} {heads} {len}");
                } else {
                    assert!(hd % 64 != 0 || !cfg!(target_arch = "x86_64") || fast[0].is_nan());
                }
                // The integer scores are the dot products of the quantized queries.
                let mut row = vec![0.0; hd];
                for j in [0, len / 2, len - 1] {
                    KvRows::Q8_0(&keys).row_f32(j, &mut row);
                    let want: f64 = row
                        .iter()
                        .zip(&qs)
                        .enumerate()
                        .map(|(i, (&k, &q))| f64::from(k) * f64::from(q) * f64::from(qd[i / 32]))
                        .sum::<f64>()
                        * 0.125;
                    assert!((f64::from(slow[j]) - want).abs() < 1e-4 * want.abs().max(1.0));
                }
                // The AVX2 kernel too, where this CPU also has the AVX-512 one.
                let mut avx2 = vec![f32::NAN; heads * len];
                if kernels::attn_q8_scores(Tier::Baseline, &qs, &qd, &keys, hd, 0.125, &mut avx2) {
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&avx2), bits(&slow), "AVX2 scores {hd} {heads} {len}");
                }
                let p: Vec<f32> = (0..heads * len).map(|j| 1.0 / (1.0 + j as f32)).collect();
                let mut slow = vec![f32::NAN; heads * hd];
                q8_values_portable(&p, &values, hd, heads, &mut slow);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let mut fast = vec![f32::NAN; heads * hd];
                if kernels::attn_q8_values(Tier::Best, &p, &values, hd, heads, &mut fast) {
                    assert_eq!(bits(&fast), bits(&slow), "values {hd} {heads} {len}");
                }
                let mut avx2 = vec![f32::NAN; heads * hd];
                if kernels::attn_q8_values(Tier::Baseline, &p, &values, hd, heads, &mut avx2) {
                    assert_eq!(bits(&avx2), bits(&slow), "AVX2 values {hd} {heads} {len}");
                }
            }
        }
    }
    if !vector_paths {
        eprintln!("no vector Q8_0 attention kernels on this CPU");
    }
}

#[test]
fn q8_0_blocks_joined_equal_softmax_attention() {
    let (hd, heads, len) = (64, 3, 3 * Q8_BLOCK + 40);
    let (_, keys) = kv_both(len * hd, 4);
    let (_, values) = kv_both(len * hd, 5);
    let q: Vec<f32> = (0..heads * hd)
        .map(|i| (i as f32 * 0.3).sin() * 2.0)
        .collect();
    let (mut qs, mut qd) = (Vec::new(), Vec::new());
    quantize_queries(&q, &mut qs, &mut qd);
    let rb = q8_row_bytes(hd);
    let part = q8_partial_len(heads, hd);
    let blocks = len.div_ceil(Q8_BLOCK);
    let mut parts = vec![0.0; blocks * part];
    let mut scratch = Vec::new();
    for (b, o) in parts.chunks_exact_mut(part).enumerate() {
        let (start, rows) = (b * Q8_BLOCK, Q8_BLOCK.min(len - b * Q8_BLOCK));
        let range = start * rb..(start + rows) * rb;
        let (k, v) = (&keys[range.clone()], &values[range]);
        q8_partial(&qs, &qd, k, v, rows, hd, 0.125, &mut scratch, o);
    }
    let (mut krow, mut vrow) = (vec![0.0; hd], vec![0.0; hd]);
    for h in 0..heads {
        let mut out = vec![0.0; hd];
        let blocks = parts
            .chunks_exact(part)
            .map(|p| (p[2 * h], p[2 * h + 1], &p[2 * heads + h * hd..][..hd]));
        q8_combine(blocks, &mut out);
        // The same attention in f64 over the dequantized rows and queries.
        let qh: Vec<f64> = (0..hd)
            .map(|i| f64::from(qs[h * hd + i]) * f64::from(qd[(h * hd + i) / 32]))
            .collect();
        let scores: Vec<f64> = (0..len)
            .map(|j| {
                KvRows::Q8_0(&keys).row_f32(j, &mut krow);
                krow.iter()
                    .zip(&qh)
                    .map(|(&k, &q)| f64::from(k) * q)
                    .sum::<f64>()
                    * 0.125
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        let mut want = vec![0f64; hd];
        for (j, &ej) in e.iter().enumerate() {
            KvRows::Q8_0(&values).row_f32(j, &mut vrow);
            for (w, &x) in want.iter_mut().zip(&vrow) {
                *w += ej / sum * f64::from(x);
            }
        }
        for (i, (&o, &w)) in out.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(o) - w).abs() < 1e-4 * w.abs().max(1.0),
                "head {h} value {i}: {o} vs {w}"
            );
        }
    }
}

#[test]
fn attention_over_one_position_returns_its_value() {
    let hd = 64;
    let v: Vec<u16> = (0..hd)
        .map(|i| f16::from_f32(i as f32 * 0.5).to_bits())
        .collect();
    let k = vec![f16::from_f32(0.1).to_bits(); hd];
    let q = vec![0.3f32; hd];
    let mut out = vec![0.0; hd];
    for order in [SumOrder::Lanes16, SumOrder::Lanes64] {
        let mut scratch = AttentionScratch::default();
        let (k, v) = (KvRows::F16(&k), KvRows::F16(&v));
        attend_group(
            order,
            &q,
            k,
            v,
            1,
            hd,
            0.125,
            ScoreMask::default(),
            &mut scratch,
            &mut out,
        );
        assert!(
            out.iter().enumerate().all(|(i, &o)| o == i as f32 * 0.5),
            "{order:?}"
        );
    }
}
