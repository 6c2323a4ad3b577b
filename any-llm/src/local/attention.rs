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
//! llama.cpp sums a single token's attention (a decode step) in another order than a batch's
//! — 4 × 16 lanes over steps of 64, folded 0+2, 1+3, 0+1 before the halving — and so do we:
//! greedy continuations then equal its own token for token. The engine keeps track of which
//! cached positions were computed one token at a time and never reuses those for a prompt, so
//! prefix reuse cannot change an answer.

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

/// How a forward pass sums its dot products: a batch of several tokens in 16 lanes (lane `L`
/// takes the indices `≡ L mod 16`), a single token in 4 × 16 lanes over steps of 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SumOrder {
    /// A batch of several tokens.
    Lanes16,
    /// A single-token step.
    Lanes64,
}

impl SumOrder {
    pub(crate) fn for_batch(n_tokens: usize) -> Self {
        if n_tokens == 1 {
            SumOrder::Lanes64
        } else {
            SumOrder::Lanes16
        }
    }

    fn slots(self) -> usize {
        match self {
            SumOrder::Lanes16 => 16,
            SumOrder::Lanes64 => 64,
        }
    }

    /// Which partial sum index `x` goes to.
    fn slot(self, x: usize) -> usize {
        match self {
            SumOrder::Lanes16 => x % 16,
            SumOrder::Lanes64 => ((x / 16) % 4) * 16 + x % 16,
        }
    }

    /// Folds the partial sums (rows `width` wide) into row 0.
    fn fold(self, acc: &mut [f32], width: usize) {
        if self == SumOrder::Lanes64 {
            add_rows(acc, width, 0, 32, 16);
            add_rows(acc, width, 16, 48, 16);
            add_rows(acc, width, 0, 16, 16);
        }
        fold16(acc, width);
    }
}

/// `acc[dst + r] += acc[src + r]` for `rows` rows of `width`.
fn add_rows(acc: &mut [f32], width: usize, dst: usize, src: usize, rows: usize) {
    for r in 0..rows {
        for i in 0..width {
            acc[(dst + r) * width + i] += acc[(src + r) * width + i];
        }
    }
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

/// A dot product of f16 keys with f32 queries summed in `order`, with fused multiply-adds.
fn dot(order: SumOrder, k: &[u16], q: &[f32]) -> f32 {
    if let Some(v) = kernels::dot_f16_lanes(order == SumOrder::Lanes64, k, q) {
        return v;
    }
    let mut acc = [0f32; 64];
    for (x, (&kb, &qv)) in k.iter().zip(q).enumerate() {
        let s = order.slot(x);
        acc[s] = f16::from_bits(kb).to_f32().mul_add(qv, acc[s]);
    }
    order.fold(&mut acc, 1);
    acc[0]
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
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    order: SumOrder,
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
            .map(|k| dot(order, k, &s.q) * scale),
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
    // Weighted values, summed over positions in the same order: each probability, rounded to
    // f16, scales its value row into the partial sum of its slot; the slots fold at the end.
    s.acc.clear();
    s.acc.resize(order.slots() * hd, 0.0);
    for (j, (p, vrow)) in s.scores.iter().zip(values.chunks_exact(hd)).enumerate() {
        let p = f16::from_f32(p * inv).to_f32();
        let slot = order.slot(j);
        kernels::fma_f16_row(&mut s.acc[slot * hd..(slot + 1) * hd], p, vrow);
    }
    order.fold(&mut s.acc, hd);
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
        for order in [SumOrder::Lanes16, SumOrder::Lanes64] {
            assert!(
                (f64::from(dot(order, &k, &q)) - exact).abs() < 1e-4,
                "{order:?}"
            );
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
            attend(order, &q, &k, &v, 1, 0.125, &mut scratch, &mut out);
            assert!(
                out.iter().enumerate().all(|(i, &o)| o == i as f32 * 0.5),
                "{order:?}"
            );
        }
    }
}
