//! Matrix multiplication of quantized weights by f32 activations.
//!
//! The activations are quantized once per multiplication into the format the weight type
//! pairs with (Q8_0 for Q4_0, Q8_1 for Q4_1, Q8_K for the K-quants, ...), then every weight
//! row is dotted with every activation row, exactly as llama.cpp does it: that is what makes
//! our logits agree with its to a few hundredths.

use crate::kernels::packed::{PACK_ROWS, PACK_TOKENS};
use crate::kernels::{self, packed};
use crate::pool::Pool;
use crate::quant::{self, GgmlType};

/// A weight matrix: `rows` rows of `cols` values in `ty` blocks, as they sit in the file, or
/// with `packed` in groups of interleaved rows (`kernels::packed`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WeightView<'a> {
    pub(crate) ty: GgmlType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: &'a [u8],
    pub(crate) packed: bool,
}

impl WeightView<'_> {
    fn row_bytes(&self) -> usize {
        self.data.len() / self.rows
    }

    /// Row `r` as f32 values (used for embedding lookups, which are never packed).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        debug_assert!(!self.packed, "a packed matrix has no rows of its own");
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

/// How many (row, token) block dot products make a multiplication worth splitting across
/// threads: waking a second thread costs a few microseconds, about 2000 blocks of work.
const PARALLEL_MIN_BLOCKS: usize = 4096;

/// Tokens that make quantizing the activations, and turning the results token-major, worth
/// splitting across threads.
const PARALLEL_MIN_TOKENS: usize = 32;

/// Tokens per block of the prefill loop: their activations (a few tens of KiB) stay in L1/L2
/// while a thread's rows stream past them.
const TOKEN_BLOCK: usize = 64;

/// `out[t * w.rows + r] = w[r] · x[t * w.cols ..]` for `n` activation rows.
pub(crate) fn matmul(
    w: WeightView<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    s: &mut MatmulScratch,
    pool: &Pool,
) {
    matmul_group(&[w], x, n, &mut [out], s, pool);
}

/// Several [`matmul`]s of the same activations (the Q, K and V projections; gate and up):
/// the activations are quantized once, and the rows of all the matrices are split across
/// threads as one, so each thread gets one share of one parallel region.
///
/// Every output is the same single dot product [`matmul`] computes; only the order in which
/// outputs are computed changes. Matrices of different types are multiplied one by one.
pub(crate) fn matmul_group(
    ws: &[WeightView<'_>],
    x: &[f32],
    n: usize,
    outs: &mut [&mut [f32]],
    s: &mut MatmulScratch,
    pool: &Pool,
) {
    debug_assert_eq!(ws.len(), outs.len());
    let Some(first) = ws.first() else { return };
    if ws
        .iter()
        .any(|w| w.ty != first.ty || w.cols != first.cols || w.packed != first.packed)
    {
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            matmul_group(
                std::slice::from_ref(w),
                x,
                n,
                std::slice::from_mut(out),
                s,
                pool,
            );
        }
        return;
    }
    let cols = first.cols;
    debug_assert_eq!(x.len(), n * cols);
    let act_ty = first
        .ty
        .vec_dot_type()
        .expect("weight types were validated at load");
    let ab = act_ty
        .row_size(cols)
        .expect("weight shapes were validated at load");
    s.acts.resize(n * ab, 0);
    // Rows `t0..` of the activations into `acts` (whole rows).
    let quantize = |t0: usize, acts: &mut [u8]| {
        for (xr, ar) in x[t0 * cols..]
            .chunks_exact(cols)
            .zip(acts.chunks_exact_mut(ab))
        {
            kernels::quantize_activations(act_ty, xr, ar);
        }
    };
    if n >= PARALLEL_MIN_TOKENS && pool.threads() > 1 {
        let per = PARALLEL_MIN_TOKENS / 2;
        pool.for_each_chunk(&mut s.acts, per * ab, |i, acts, _| quantize(i * per, acts));
    } else {
        quantize(0, &mut s.acts);
    }
    let acts = &s.acts[..];
    let packed_kernel = first
        .packed
        .then(|| packed::packed_fn(first.ty).expect("weights are packed only for a kernel"));
    let kernel = kernels::dot_fn(first.ty);
    let tile = kernels::tile_fn(first.ty);
    let rows_kernel = kernels::rows_fn(first.ty);
    let rb = first.row_bytes();
    let total_rows: usize = ws.iter().map(|w| w.rows).sum();
    // Global row `r` of the group is row `r - start` of the matrix whose rows start there.
    let row_data = |r: usize, count: usize| -> &[u8] {
        let mut r = r;
        for w in ws {
            if r < w.rows {
                debug_assert!(r + count <= w.rows);
                return &w.data[r * rb..(r + count) * rb];
            }
            r -= w.rows;
        }
        unreachable!("row {r} is past the group's rows")
    };
    // Rows of a run never straddle two matrices: runs are cut at matrix boundaries.
    let same_matrix_run = |r: usize, max: usize| -> usize {
        let mut r0 = r;
        for w in ws {
            if r0 < w.rows {
                return max.min(w.rows - r0);
            }
            r0 -= w.rows;
        }
        0
    };

    // `out_t[r * n + t]` for global row r; with one token that is the output vector itself.
    s.out_t.resize(total_rows * n, 0.0);
    let fill = |(chunk_row, o): (usize, &mut [f32])| {
        let rows = o.len() / n;
        if let Some(packed_kernel) = packed_kernel {
            // Groups of PACK_ROWS interleaved rows (every packed matrix's rows, and so every
            // share's, are whole groups) by up to PACK_TOKENS tokens at a time.
            let mut buf = [0.0f32; PACK_ROWS * PACK_TOKENS];
            for t0 in (0..n).step_by(TOKEN_BLOCK) {
                let t1 = (t0 + TOKEN_BLOCK).min(n);
                for g in (0..rows).step_by(PACK_ROWS) {
                    let wdata = row_data(chunk_row + g, PACK_ROWS);
                    for t in (t0..t1).step_by(PACK_TOKENS) {
                        let nt = PACK_TOKENS.min(t1 - t);
                        packed_kernel(wdata, &acts[t * ab..(t + nt) * ab], cols, nt, &mut buf);
                        for (dt, vals) in buf.chunks_exact(PACK_ROWS).take(nt).enumerate() {
                            for (dr, &v) in vals.iter().enumerate() {
                                o[(g + dr) * n + t + dt] = v;
                            }
                        }
                    }
                }
            }
            return;
        }
        for t0 in (0..n).step_by(TOKEN_BLOCK) {
            let t1 = (t0 + TOKEN_BLOCK).min(n);
            let mut i = 0;
            while i < rows {
                let r = chunk_row + i;
                let run = same_matrix_run(r, rows - i);
                let tiled_rows = match tile {
                    Some(_) if n >= kernels::TILE_TOKENS => {
                        run / kernels::TILE_ROWS * kernels::TILE_ROWS
                    }
                    _ => 0,
                };
                // Whole tiles of TILE_ROWS rows by TILE_TOKENS tokens.
                if let Some(tile) = tile.filter(|_| tiled_rows > 0) {
                    let mut tbuf = [0.0f32; kernels::TILE_ROWS * kernels::TILE_TOKENS];
                    for rr in (0..tiled_rows).step_by(kernels::TILE_ROWS) {
                        let wdata = row_data(r + rr, kernels::TILE_ROWS);
                        let mut t = t0;
                        while t + kernels::TILE_TOKENS <= t1 {
                            tile(
                                wdata,
                                &acts[t * ab..(t + kernels::TILE_TOKENS) * ab],
                                cols,
                                &mut tbuf,
                            );
                            for dr in 0..kernels::TILE_ROWS {
                                let row = &mut o[(i + rr + dr) * n..][..n];
                                row[t..t + kernels::TILE_TOKENS].copy_from_slice(
                                    &tbuf[dr * kernels::TILE_TOKENS..][..kernels::TILE_TOKENS],
                                );
                            }
                            t += kernels::TILE_TOKENS;
                        }
                        for dr in 0..kernels::TILE_ROWS {
                            let wrow = &wdata[dr * rb..(dr + 1) * rb];
                            for tt in t..t1 {
                                o[(i + rr + dr) * n + tt] =
                                    kernel(wrow, &acts[tt * ab..(tt + 1) * ab], cols);
                            }
                        }
                    }
                }
                // Without tiles (one to three tokens), groups of ROWS rows share each
                // activation load.
                let grouped_rows = match rows_kernel {
                    Some(_) if tiled_rows == 0 => run / kernels::ROWS * kernels::ROWS,
                    _ => 0,
                };
                if let Some(rows_kernel) = rows_kernel.filter(|_| grouped_rows > 0) {
                    let mut rbuf = [0.0f32; kernels::ROWS];
                    for rr in (0..grouped_rows).step_by(kernels::ROWS) {
                        let wdata = row_data(r + rr, kernels::ROWS);
                        for tt in t0..t1 {
                            rows_kernel(wdata, &acts[tt * ab..(tt + 1) * ab], cols, &mut rbuf);
                            for (dr, &v) in rbuf.iter().enumerate() {
                                o[(i + rr + dr) * n + tt] = v;
                            }
                        }
                    }
                }
                for rr in tiled_rows.max(grouped_rows)..run {
                    let wrow = row_data(r + rr, 1);
                    for tt in t0..t1 {
                        o[(i + rr) * n + tt] = kernel(wrow, &acts[tt * ab..(tt + 1) * ab], cols);
                    }
                }
                i += run;
            }
        }
    };
    let blocks = total_rows * n * (cols / 32);
    let threads = pool.threads();
    if threads > 1 && blocks >= PARALLEL_MIN_BLOCKS {
        // A few shares per thread, so a thread slowed by another process is helped out, each
        // share a multiple of the tile and row-group heights so those stay whole.
        let shares = threads * if n == 1 { 4 } else { 8 };
        let rows_per = total_rows
            .div_ceil(shares)
            .next_multiple_of(kernels::TILE_ROWS.max(kernels::ROWS).max(PACK_ROWS));
        pool.for_each_chunk(&mut s.out_t, rows_per * n, |c, o, _| {
            fill((c * rows_per, o));
        });
    } else {
        fill((0, &mut s.out_t[..]));
    }
    // Scatter into token-major outputs.
    let mut r0 = 0;
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        debug_assert_eq!(out.len(), n * w.rows);
        let part = &s.out_t[r0 * n..(r0 + w.rows) * n];
        if n == 1 {
            out.copy_from_slice(part);
        } else {
            // Tokens `t0..` of the output (whole rows of `w.rows`).
            let transpose = |t0: usize, rows: &mut [f32]| {
                for (t, row) in rows.chunks_exact_mut(w.rows).enumerate() {
                    for (r, o) in row.iter_mut().enumerate() {
                        *o = part[r * n + t0 + t];
                    }
                }
            };
            if n >= PARALLEL_MIN_TOKENS && pool.threads() > 1 {
                let per = PARALLEL_MIN_TOKENS / 2;
                pool.for_each_chunk(out, per * w.rows, |i, rows, _| transpose(i * per, rows));
            } else {
                transpose(0, out);
            }
        }
        r0 += w.rows;
    }
}
