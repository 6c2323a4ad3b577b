//! The f32 panel product of `kernels::gemm` with AVX2 and FMA: four tokens by sixteen
//! outputs held in eight registers while the inputs stream past.

use std::arch::x86_64::*;

use super::has_avx2;
use crate::kernels::gemm::PANEL;

/// `kernels::gemm::gemm_panel` with AVX2; `false` (nothing done) where the CPU has none.
pub(in crate::kernels) fn gemm_panel(
    x: &[f32],
    m: usize,
    k: usize,
    panel: &[f32],
    out: &mut [f32],
) -> bool {
    if !has_avx2() || x.len() < m * k || panel.len() != k * PANEL || out.len() < m * PANEL {
        return false;
    }
    let mut t = 0;
    while t + 4 <= m {
        // SAFETY: the CPU has AVX2 and FMA (checked above); tokens `t..t + 4` of `x` and of
        // `out` are inside the slices (their lengths were checked against `m`).
        unsafe { block_4x16(&x[t * k..(t + 4) * k], k, panel, &mut out[t * PANEL..]) };
        t += 4;
    }
    while t < m {
        // SAFETY: as above, for token `t` alone.
        unsafe { block_1x16(&x[t * k..(t + 1) * k], k, panel, &mut out[t * PANEL..]) };
        t += 1;
    }
    true
}

/// Four tokens (`x` holds `4 * k` values) by one panel, into `out[..4 * PANEL]`.
#[target_feature(enable = "avx2,fma")]
unsafe fn block_4x16(x: &[f32], k: usize, panel: &[f32], out: &mut [f32]) {
    debug_assert!(x.len() == 4 * k && panel.len() == k * PANEL && out.len() >= 4 * PANEL);
    let mut c = [_mm256_setzero_ps(); 8];
    let (xp, wp) = (x.as_ptr(), panel.as_ptr());
    for kk in 0..k {
        // SAFETY: `kk < k`, so the panel row `kk` (16 values) and the values `t * k + kk` of
        // the four tokens are inside the slices the caller sized.
        unsafe {
            let w0 = _mm256_loadu_ps(wp.add(kk * PANEL));
            let w1 = _mm256_loadu_ps(wp.add(kk * PANEL + 8));
            for t in 0..4 {
                let a = _mm256_broadcast_ss(&*xp.add(t * k + kk));
                c[2 * t] = _mm256_fmadd_ps(a, w0, c[2 * t]);
                c[2 * t + 1] = _mm256_fmadd_ps(a, w1, c[2 * t + 1]);
            }
        }
    }
    for t in 0..4 {
        // SAFETY: `out` holds at least `4 * PANEL` values.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr().add(t * PANEL), c[2 * t]);
            _mm256_storeu_ps(out.as_mut_ptr().add(t * PANEL + 8), c[2 * t + 1]);
        }
    }
}

/// One token by one panel, into `out[..PANEL]`.
#[target_feature(enable = "avx2,fma")]
unsafe fn block_1x16(x: &[f32], k: usize, panel: &[f32], out: &mut [f32]) {
    debug_assert!(x.len() == k && panel.len() == k * PANEL && out.len() >= PANEL);
    let (mut c0, mut c1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (kk, &a) in x.iter().enumerate() {
        // SAFETY: `kk < k`: panel row `kk` is inside the panel.
        unsafe {
            let a = _mm256_set1_ps(a);
            c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(panel.as_ptr().add(kk * PANEL)), c0);
            c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(panel.as_ptr().add(kk * PANEL + 8)), c1);
        }
    }
    // SAFETY: `out` holds at least `PANEL` values.
    unsafe {
        _mm256_storeu_ps(out.as_mut_ptr(), c0);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), c1);
    }
}
