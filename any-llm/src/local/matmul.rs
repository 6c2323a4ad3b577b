//! Matrix multiplication of quantized weights by f32 activations.
//!
//! The activations are quantized once per multiplication into the format the weight type
//! pairs with (Q8_0 for Q4_0, Q8_1 for Q4_1, Q8_K for the K-quants, ...), then every weight
//! row is dotted with every activation row, exactly as llama.cpp does it: that is what makes
//! our logits agree with its to a few hundredths.

use rayon::prelude::*;

use crate::local::kernels;
use crate::local::quant::{self, GgmlType};

/// A weight matrix as it sits in the file: `rows` rows of `cols` values in `ty` blocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WeightView<'a> {
    pub(crate) ty: GgmlType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: &'a [u8],
}

impl WeightView<'_> {
    fn row_bytes(&self) -> usize {
        self.data.len() / self.rows
    }

    /// Row `r` as f32 values (used for embedding lookups).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        quant::dequantize_row(self.ty, &self.data[r * rb..(r + 1) * rb], out)
            .expect("weight shapes were validated at load");
    }
}

/// Reusable buffers, so the token loop does not allocate.
#[derive(Debug, Default)]
pub(crate) struct MatmulScratch {
    acts: Vec<u8>,
    out_t: Vec<f32>,
}

/// How many (row, token) dot products make a multiplication worth splitting across threads.
const PARALLEL_MIN_WORK: usize = 4096;

/// `out[t * w.rows + r] = w[r] · x[t * w.cols ..]` for `n` activation rows.
pub(crate) fn matmul(
    w: WeightView<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    s: &mut MatmulScratch,
) {
    debug_assert_eq!(x.len(), n * w.cols);
    debug_assert_eq!(out.len(), n * w.rows);
    let act_ty =
        w.ty.vec_dot_type()
            .expect("weight types were validated at load");
    let act_row = act_ty
        .row_size(w.cols)
        .expect("weight shapes were validated at load");
    s.acts.resize(n * act_row, 0);
    for (xr, ar) in x.chunks_exact(w.cols).zip(s.acts.chunks_exact_mut(act_row)) {
        kernels::quantize_activations(act_ty, xr, ar);
    }
    let acts = &s.acts[..];
    let rb = w.row_bytes();
    let kernel = kernels::dot_fn(w.ty);
    let dot = |r: usize, t: usize| {
        kernel(
            &w.data[r * rb..(r + 1) * rb],
            &acts[t * act_row..(t + 1) * act_row],
            w.cols,
        )
    };
    if n == 1 {
        if w.rows >= PARALLEL_MIN_WORK / 4 {
            out.par_chunks_mut(64).enumerate().for_each(|(c, o)| {
                for (i, v) in o.iter_mut().enumerate() {
                    *v = dot(c * 64 + i, 0);
                }
            });
        } else {
            for (r, v) in out.iter_mut().enumerate() {
                *v = dot(r, 0);
            }
        }
        return;
    }
    // Several tokens: compute row-major by weight row (each row read once while hot), then
    // transpose into token-major output.
    s.out_t.resize(n * w.rows, 0.0);
    let fill = |(r, o): (usize, &mut [f32])| {
        for (t, v) in o.iter_mut().enumerate() {
            *v = dot(r, t);
        }
    };
    if w.rows * n >= PARALLEL_MIN_WORK {
        s.out_t.par_chunks_mut(n).enumerate().for_each(fill);
    } else {
        s.out_t.chunks_mut(n).enumerate().for_each(fill);
    }
    for r in 0..w.rows {
        for t in 0..n {
            out[t * w.rows + r] = s.out_t[r * n + t];
        }
    }
}
