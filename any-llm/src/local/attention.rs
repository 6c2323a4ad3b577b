//! Causal grouped-query attention over the f16 KV cache, and the element-wise functions whose
//! rounding must follow llama.cpp's.
//!
//! A small model like the default one carries activations in the tens of thousands; quantizing
//! those to 8 bits before each matrix multiplication turns a one-ulp difference anywhere into a
//! flipped rounding tie, and a flipped tie into a visible change of the logits. So the
//! arithmetic here reproduces llama.cpp's CPU build (its prompt path) operation for operation:
//! the polynomial `exp` (`kernels::exp`), the order in which dot products are summed (16
//! lanes, reduced by halving), and where values are rounded to f16. With it, our logits on
//! the reference prompts equal llama.cpp's to every printed digit.
//!
//! One departure: llama.cpp sums a single token's attention (a decode step) in another order
//! than a batch's, so its results depend on how a sequence was split into batches. Ours use the
//! batch order always, so every token's result is the same however the sequence is split —
//! prefix reuse and queued requests cannot change an answer — and our greedy continuations
//! still equal llama.cpp's on every reference prompt.

use half::f16;

use crate::local::kernels;

/// Sums 16 lanes by halving: lanes `i` and `i + 8`, then `i` and `i + 4`, and so on.
pub(crate) fn reduce16(mut v: [f32; 16]) -> f32 {
    let mut m = 8;
    while m >= 1 {
        for i in 0..m {
            v[i] += v[i + m];
        }
        m /= 2;
    }
    v[0]
}

/// Folds 16 rows of partial sums (`width` wide each) into row 0 by halving, lane by lane.
fn fold16(acc: &mut [f32], width: usize) {
    let mut m = 8;
    while m >= 1 {
        for lane in 0..m {
            for i in 0..width {
                acc[lane * width + i] += acc[(lane + m) * width + i];
            }
        }
        m /= 2;
    }
}

/// A dot product of f16 keys with f32 queries in 16 lanes (lane `L` sums the indices
/// `≡ L mod 16` with fused multiply-adds), reduced by halving.
fn dot(k: &[u16], q: &[f32]) -> f32 {
    if let Some(v) = kernels::dot_f16_lanes(k, q) {
        return v;
    }
    let mut acc = [0f32; 16];
    for (x, (&kb, &qv)) in k.iter().zip(q).enumerate() {
        acc[x % 16] = f16::from_bits(kb).to_f32().mul_add(qv, acc[x % 16]);
    }
    reduce16(acc)
}

/// Reusable buffers of one attention call.
#[derive(Debug, Default)]
pub(crate) struct AttentionScratch {
    q: Vec<f32>,
    qbits: Vec<u16>,
    scores: Vec<f32>,
    acc: Vec<f32>,
}

/// Attention of one query head (`q`, already rotated) over `len` cached positions of its
/// key/value head, written to `out`.
pub(crate) fn attend(
    q: &[f32],
    keys: &[u16],
    values: &[u16],
    len: usize,
    scale: f32,
    s: &mut AttentionScratch,
    out: &mut [f32],
) {
    let hd = q.len();
    // The query is rounded to f16, as the keys are.
    s.qbits.resize(hd, 0);
    kernels::f32_to_f16(q, &mut s.qbits);
    s.q.clear();
    s.q.extend(s.qbits.iter().map(|&b| f16::from_bits(b).to_f32()));
    s.scores.clear();
    s.scores.extend(
        keys.chunks_exact(hd)
            .take(len)
            .map(|k| dot(k, &s.q) * scale),
    );
    let max = s.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Softmax: exponentials summed 16 at a time in f32, the sixteens in f64.
    let mut sum = 0.0f64;
    for chunk in s.scores.chunks_mut(16) {
        let mut lanes = [0f32; 16];
        for v in chunk.iter_mut() {
            *v -= max;
        }
        kernels::exp_in_place(chunk);
        lanes[..chunk.len()].copy_from_slice(chunk);
        sum += f64::from(reduce16(lanes));
    }
    let inv = (1.0 / sum) as f32;
    // Weighted values, in the same 16 lanes over positions: each probability, rounded to f16,
    // scales its value row into the partial sum of its lane; the lanes fold by halving.
    s.acc.clear();
    s.acc.resize(16 * hd, 0.0);
    for (j, (p, vrow)) in s.scores.iter().zip(values.chunks_exact(hd)).enumerate() {
        let p = f16::from_f32(p * inv).to_f32();
        let lane = j % 16;
        kernels::fma_f16_row(&mut s.acc[lane * hd..(lane + 1) * hd], p, vrow);
    }
    fold16(&mut s.acc, hd);
    out.copy_from_slice(&s.acc[..hd]);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((f64::from(dot(&k, &q)) - exact).abs() < 1e-4);
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
        attend(
            &q,
            &k,
            &v,
            1,
            0.125,
            &mut AttentionScratch::default(),
            &mut out,
        );
        assert!(
            out.iter().enumerate().all(|(i, &o)| o == i as f32 * 0.5),
            "{out:?}"
        );
    }
}
