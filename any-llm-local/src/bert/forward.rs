//! The encoder's forward pass over a batch of texts packed end to end.
//!
//! The texts of a batch are laid one after another, with no padding: the matrix products run
//! over all their tokens at once, and attention runs per text, so a token attends to exactly
//! the tokens of its own text — what the attention mask of a padded batch achieves, without
//! computing the padding.

use std::ops::Range;

use any_core::{Error, Result};

use super::config::{BertConfig, Pooling};
use super::weights::{BertWeights, Linear, Norm};
use crate::kernels::{
    self,
    gemm::{PANEL, PackedMatrix, TOKEN_BLOCK, gemm_panel},
};
use crate::pool::Pool;

/// Buffers reused across batches.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    heads: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    ffn: Vec<f32>,
    panels: Vec<f32>,
}

/// The encoder, borrowed for one batch.
pub(super) struct Encoder<'a> {
    pub(super) cfg: &'a BertConfig,
    pub(super) weights: &'a BertWeights,
    pub(super) pool: &'a Pool,
}

impl Encoder<'_> {
    /// One sentence vector per sequence of token ids (each non-empty, within the position
    /// count, ids within the vocabulary). `cancelled` is asked between layers.
    pub(super) fn run(
        &self,
        seqs: &[Vec<u32>],
        s: &mut Scratch,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<Vec<f32>>> {
        let h = self.cfg.hidden;
        let mut ranges = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for seq in seqs {
            ranges.push(total..total + seq.len());
            total += seq.len();
        }
        self.embed(seqs, &mut s.hidden);
        for layer in &self.weights.layers {
            if cancelled() {
                return Err(Error::model("the request was cancelled"));
            }
            linear(
                self.pool,
                &s.hidden,
                total,
                &layer.qkv,
                &mut s.qkv,
                &mut s.panels,
                false,
            );
            self.attention(&s.qkv, &ranges, total, &mut s.heads);
            self.merge_heads(&s.heads, total, &mut s.context);
            linear(
                self.pool,
                &s.context,
                total,
                &layer.attn_out,
                &mut s.projected,
                &mut s.panels,
                false,
            );
            self.add_norm(&mut s.hidden, &s.projected, &layer.attn_norm);
            linear(
                self.pool,
                &s.hidden,
                total,
                &layer.up,
                &mut s.ffn,
                &mut s.panels,
                true,
            );
            linear(
                self.pool,
                &s.ffn,
                total,
                &layer.down,
                &mut s.projected,
                &mut s.panels,
                false,
            );
            self.add_norm(&mut s.hidden, &s.projected, &layer.out_norm);
        }
        Ok(ranges
            .iter()
            .map(|r| {
                let rows = &s.hidden[r.start * h..r.end * h];
                let mut v = match self.cfg.pooling {
                    Pooling::Cls => rows[..h].to_vec(),
                    Pooling::Mean => {
                        let mut sum = vec![0.0f32; h];
                        for row in rows.chunks_exact(h) {
                            sum.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                        }
                        let n = r.len() as f32;
                        sum.iter_mut().for_each(|a| *a /= n);
                        sum
                    }
                };
                if self.cfg.normalize {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect())
    }

    /// Word + position + token-type (0) embeddings, then LayerNorm.
    fn embed(&self, seqs: &[Vec<u32>], hidden: &mut Vec<f32>) {
        let h = self.cfg.hidden;
        let w = self.weights;
        hidden.clear();
        for seq in seqs {
            for (pos, &id) in seq.iter().enumerate() {
                let word = &w.word[id as usize * h..][..h];
                let position = &w.position[pos * h..][..h];
                let kind = &w.token_type[..h];
                hidden.extend((0..h).map(|i| word[i] + position[i] + kind[i]));
            }
        }
        let (norm, eps) = (&w.embed_norm, self.cfg.eps);
        self.pool
            .for_each_chunk(hidden, ROWS_PER_TASK * h, |_, rows, _| {
                for row in rows.chunks_exact_mut(h) {
                    layer_norm(row, norm, eps);
                }
            });
    }

    /// Scaled dot-product attention of every head over each text's own tokens, into
    /// `out[head][token][head_dim]`.
    fn attention(&self, qkv: &[f32], ranges: &[Range<usize>], total: usize, out: &mut Vec<f32>) {
        let (h, hd) = (self.cfg.hidden, self.cfg.head_dim());
        let scale = 1.0 / (hd as f32).sqrt();
        out.resize(self.cfg.heads * total * hd, 0.0);
        self.pool.for_each_chunk(out, total * hd, |head, out, _| {
            let (mut q, mut k, mut v, mut scores) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in ranges {
                let l = r.len();
                q.clear();
                k.clear();
                v.clear();
                for row in qkv[r.start * 3 * h..r.end * 3 * h].chunks_exact(3 * h) {
                    q.extend(row[head * hd..][..hd].iter().map(|x| x * scale));
                    k.extend_from_slice(&row[h + head * hd..][..hd]);
                    v.extend_from_slice(&row[2 * h + head * hd..][..hd]);
                }
                scores.resize(l * l, 0.0);
                PackedMatrix::pack(&k, l, hd).multiply(&q, l, &mut scores);
                for row in scores.chunks_exact_mut(l) {
                    softmax(row);
                }
                PackedMatrix::pack_transposed(&v, l, hd).multiply(
                    &scores,
                    l,
                    &mut out[r.start * hd..r.end * hd],
                );
            }
        });
    }

    /// `heads[head][token][d]` into `context[token][head * head_dim + d]`.
    fn merge_heads(&self, heads: &[f32], total: usize, context: &mut Vec<f32>) {
        let (h, hd) = (self.cfg.hidden, self.cfg.head_dim());
        context.resize(total * h, 0.0);
        self.pool
            .for_each_chunk(context, ROWS_PER_TASK * h, |c, rows, _| {
                for (i, row) in rows.chunks_exact_mut(h).enumerate() {
                    let t = c * ROWS_PER_TASK + i;
                    for (head, part) in row.chunks_exact_mut(hd).enumerate() {
                        part.copy_from_slice(&heads[(head * total + t) * hd..][..hd]);
                    }
                }
            });
    }

    /// `hidden = LayerNorm(hidden + add)`, row by row (BERT's post-norm residual).
    fn add_norm(&self, hidden: &mut [f32], add: &[f32], norm: &Norm) {
        let (h, eps) = (self.cfg.hidden, self.cfg.eps);
        self.pool
            .for_each_chunk(hidden, ROWS_PER_TASK * h, |c, rows, _| {
                let add = &add[c * ROWS_PER_TASK * h..];
                for (row, a) in rows.chunks_exact_mut(h).zip(add.chunks_exact(h)) {
                    row.iter_mut().zip(a).for_each(|(x, y)| *x += y);
                    layer_norm(row, norm, eps);
                }
            });
    }
}

/// Token rows per task of the row-wise steps.
const ROWS_PER_TASK: usize = 16;

/// `out[t][r] = x[t] · w[r] + b[r]` (then GELU if `gelu`) for `m` tokens. The panels are
/// split across threads, each computing its panels for a block of tokens at a time into
/// `panels` (panel-major); then rows are gathered token-major with the bias.
fn linear(
    pool: &Pool,
    x: &[f32],
    m: usize,
    l: &Linear,
    out: &mut Vec<f32>,
    panels: &mut Vec<f32>,
    gelu: bool,
) {
    let (n, k, np) = (l.w.rows(), l.w.cols(), l.w.panels());
    panels.resize(np * m * PANEL, 0.0);
    let per = np.div_ceil(pool.threads() * 4).max(1);
    pool.for_each_chunk(panels, per * m * PANEL, |c, chunk, _| {
        let count = chunk.len() / (m * PANEL);
        for t0 in (0..m).step_by(TOKEN_BLOCK) {
            let mt = TOKEN_BLOCK.min(m - t0);
            for i in 0..count {
                let dst = &mut chunk[(i * m + t0) * PANEL..][..mt * PANEL];
                gemm_panel(&x[t0 * k..], mt, k, l.w.panel(c * per + i), dst);
            }
        }
    });
    let panels = &panels[..];
    out.resize(m * n, 0.0);
    pool.for_each_chunk(out, ROWS_PER_TASK * n, |c, rows, _| {
        let mut exps = Vec::new();
        for (i, row) in rows.chunks_exact_mut(n).enumerate() {
            let t = c * ROWS_PER_TASK + i;
            for (p, (part, bias)) in row.chunks_mut(PANEL).zip(l.b.chunks(PANEL)).enumerate() {
                let src = &panels[(p * m + t) * PANEL..][..part.len()];
                for ((o, &v), &b) in part.iter_mut().zip(src).zip(bias) {
                    *o = v + b;
                }
            }
            if gelu {
                gelu_erf(row, &mut exps);
            }
        }
    });
}

fn layer_norm(row: &mut [f32], norm: &Norm, eps: f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, &w), &b) in row.iter_mut().zip(&norm.w).zip(&norm.b) {
        *x = (*x - mean) * inv * w + b;
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    row.iter_mut().for_each(|x| *x -= max);
    kernels::exp_in_place(row);
    let inv = 1.0 / row.iter().sum::<f32>();
    row.iter_mut().for_each(|x| *x *= inv);
}

/// GELU in its exact form, `x/2 · (1 + erf(x/√2))`, as BERT's `gelu` is. erf comes from
/// Abramowitz and Stegun's formula 7.1.26 (absolute error below 1.5e-7) with the
/// exponential vectorised.
fn gelu_erf(x: &mut [f32], exps: &mut Vec<f32>) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    exps.clear();
    // exp(-z²) for z = x/√2; far below -80 it is 0 in f32 anyway.
    exps.extend(x.iter().map(|&v| (-0.5 * v * v).max(-80.0)));
    kernels::exp_in_place(exps);
    for (v, &e) in x.iter_mut().zip(exps.iter()) {
        let z = (*v * std::f32::consts::FRAC_1_SQRT_2).abs();
        let t = 1.0 / (1.0 + P * z);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf = (1.0 - poly * e).copysign(*v);
        *v = 0.5 * *v * (1.0 + erf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_erf_form() {
        // Reference values of x/2 · (1 + erf(x/√2)), computed in f64 with a series for erf.
        fn erf(x: f64) -> f64 {
            // Maclaurin series; converges well for |x| < 3.
            let mut sum = 0.0;
            let mut term = x;
            for n in 0..200 {
                sum += term / f64::from(2 * n + 1);
                term *= -x * x / f64::from(n + 1);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let xs: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.1).collect();
        let mut got = xs.clone();
        gelu_erf(&mut got, &mut Vec::new());
        for (&x, &g) in xs.iter().zip(&got) {
            let want = 0.5 * f64::from(x) * (1.0 + erf(f64::from(x) / 2f64.sqrt()));
            assert!(
                (f64::from(g) - want).abs() < 1e-6,
                "gelu({x}) = {g}, want {want}"
            );
        }
        let mut far = [-30.0f32, 30.0];
        gelu_erf(&mut far, &mut Vec::new());
        assert_eq!(far, [0.0, 30.0]);
    }
}
