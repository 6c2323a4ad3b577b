//! f32 matrix products for the sentence encoder, whose weights stay in f32.
//!
//! A weight matrix (PyTorch's `[out][in]` layout) is packed once into panels of [`PANEL`]
//! output columns, each panel `[in][PANEL]`, so the inner loop reads one panel row per input
//! value and broadcasts the activation: the classic register-blocked product, several tokens
//! at a time. [`gemm_panel`] computes one panel's outputs for a run of tokens; the caller
//! splits panels across threads.

/// Output columns per packed panel.
pub(crate) const PANEL: usize = 16;

/// Tokens per block of [`PackedMatrix::multiply`]: their inputs stay in L1/L2 while the
/// panels stream past.
pub(crate) const TOKEN_BLOCK: usize = 64;

/// A weight matrix packed for [`gemm_panel`]: `n` outputs of `k` inputs, in `n / PANEL`
/// panels (rounded up; the last padded with zero columns).
#[derive(Debug, Clone)]
pub(crate) struct PackedMatrix {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `w`, `n` rows (outputs) of `k` values (inputs).
    pub(crate) fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "a {n}x{k} matrix");
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * k * PANEL];
        for (r, row) in w.chunks_exact(k).enumerate() {
            let (p, j) = (r / PANEL, r % PANEL);
            let panel = &mut data[p * k * PANEL..][..k * PANEL];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * PANEL + j] = v;
            }
        }
        PackedMatrix { n, k, data }
    }

    /// Packs `w` given input-major: `k` rows (inputs) of `n` values (outputs), as the
    /// values of an attention head are laid out.
    pub(crate) fn pack_transposed(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), n * k, "a {k}x{n} matrix");
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * k * PANEL];
        for (kk, row) in w.chunks_exact(n).enumerate() {
            for (p, part) in row.chunks(PANEL).enumerate() {
                data[(p * k + kk) * PANEL..][..part.len()].copy_from_slice(part);
            }
        }
        PackedMatrix { n, k, data }
    }

    /// `out[t * n + r] = Σ_kk x[t * k + kk] · w[r][kk]` for `m` tokens, on this thread.
    pub(crate) fn multiply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert!(x.len() >= m * k && out.len() >= m * n, "multiply shapes");
        let mut block = [0.0f32; TOKEN_BLOCK * PANEL];
        for t0 in (0..m).step_by(TOKEN_BLOCK) {
            let mt = TOKEN_BLOCK.min(m - t0);
            for p in 0..self.panels() {
                gemm_panel(&x[t0 * k..], mt, k, self.panel(p), &mut block);
                let cols = PANEL.min(n - p * PANEL);
                for t in 0..mt {
                    out[(t0 + t) * n + p * PANEL..][..cols]
                        .copy_from_slice(&block[t * PANEL..][..cols]);
                }
            }
        }
    }

    /// Outputs.
    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// How many panels.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    /// Panel `p`: `k` rows of [`PANEL`] values.
    pub(crate) fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * PANEL..][..self.k * PANEL]
    }
}

/// `out[t * PANEL + j] = Σ_kk x[t * k + kk] · panel[kk * PANEL + j]` for `t` in `0..m`.
pub(crate) fn gemm_panel(x: &[f32], m: usize, k: usize, panel: &[f32], out: &mut [f32]) {
    assert!(
        x.len() >= m * k && panel.len() == k * PANEL && out.len() >= m * PANEL,
        "gemm_panel shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if super::x86::gemm_panel(x, m, k, panel, out) {
        return;
    }
    gemm_panel_portable(x, m, k, panel, out);
}

/// The portable [`gemm_panel`]: the same sums, in the same order of `kk`, without FMA.
pub(crate) fn gemm_panel_portable(x: &[f32], m: usize, k: usize, panel: &[f32], out: &mut [f32]) {
    for (xr, o) in x.chunks_exact(k).zip(out.chunks_exact_mut(PANEL)).take(m) {
        let mut acc = [0.0f32; PANEL];
        for (&a, w) in xr.iter().zip(panel.chunks_exact(PANEL)) {
            for (c, &wv) in acc.iter_mut().zip(w) {
                *c += a * wv;
            }
        }
        o.copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values spread over a few orders of magnitude, of both signs, from a fixed seed.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    #[test]
    fn packed_products_match_the_plain_product() {
        // 37 outputs: two whole panels and a padded one; 1..9 tokens cover the 4-token
        // blocks and their remainders.
        let (n, k) = (37, 52);
        let w = values(n * k, 1);
        let packed = PackedMatrix::pack(&w, n, k);
        assert_eq!((packed.rows(), packed.cols(), packed.panels()), (n, k, 3));
        let mut wt = vec![0.0; n * k];
        for r in 0..n {
            for kk in 0..k {
                wt[kk * n + r] = w[r * k + kk];
            }
        }
        assert_eq!(PackedMatrix::pack_transposed(&wt, k, n).data, packed.data);
        let m = 70;
        let x = values(m * k, 9);
        let mut out = vec![0.0; m * n];
        packed.multiply(&x, m, &mut out);
        for (t, row) in out.chunks_exact(n).enumerate() {
            for (r, &got) in row.iter().enumerate() {
                let want: f32 = (0..k).map(|kk| x[t * k + kk] * w[r * k + kk]).sum();
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
        for m in 1..9 {
            let x = values(m * k, 2 + m as u32);
            for p in 0..packed.panels() {
                let mut fast = vec![0.0; m * PANEL];
                let mut portable = vec![0.0; m * PANEL];
                gemm_panel(&x, m, k, packed.panel(p), &mut fast);
                gemm_panel_portable(&x, m, k, packed.panel(p), &mut portable);
                for t in 0..m {
                    for j in 0..PANEL {
                        let r = p * PANEL + j;
                        let want: f64 = if r < n {
                            (0..k)
                                .map(|kk| f64::from(x[t * k + kk]) * f64::from(w[r * k + kk]))
                                .sum()
                        } else {
                            0.0
                        };
                        for got in [fast[t * PANEL + j], portable[t * PANEL + j]] {
                            assert!(
                                (f64::from(got) - want).abs() < 1e-4 * (1.0 + want.abs()),
                                "m {m} row {r} token {t}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
