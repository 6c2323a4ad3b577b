//! AVX2 + FMA + F16C kernels for x86-64.
//!
//! Every function marked `#[target_feature]` is only reached after [`has_avx2`] said yes.
//! Pointer arithmetic stays inside slices whose lengths the safe wrappers check first.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{
    DotFn, EXP_C1, EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_SHIFT,
};
use crate::local::quant::GgmlType;

/// Whether this CPU runs the AVX2 kernels (AVX2, FMA and F16C together).
pub(super) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// The AVX2 dot product for `ty`, where there is one.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    if !has_avx2() {
        return None;
    }
    match ty {
        GgmlType::Q8_0 => Some(dot_q8_0),
        GgmlType::Q4_0 => Some(dot_q4_0),
        GgmlType::Q4_1 => Some(dot_q4_1),
        _ => None,
    }
}

fn check(w: &[u8], a: &[u8], n: usize, wb: usize, ab: usize) -> usize {
    let nb = n / 32;
    assert!(
        n.is_multiple_of(32) && w.len() == nb * wb && a.len() == nb * ab,
        "row sizes do not match n = {n}"
    );
    nb
}

fn dot_q8_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 34, 34);
    // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; `check` proved
    // both slices hold `nb` whole blocks.
    unsafe { dot_q8_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_0(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 18, 34);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_0_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_q4_1(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = check(w, a, n, 20, 36);
    // SAFETY: as in `dot_q8_0`.
    unsafe { dot_q4_1_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller points `p` at two readable bytes.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Sum of products of 32 signed bytes by 32 signed bytes, as 8 lanes of i32 turned f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256 {
    // maddubs multiplies unsigned by signed: move x's sign onto y.
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let pairs = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// 16 bytes of nibbles as 32 bytes: low nibbles (values 0..16) then high nibbles (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller points `p` at 16 readable bytes.
    let bytes = unsafe { _mm_loadu_si128(p.cast()) };
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(bytes, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    _mm256_set_m128i(hi, lo)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 34), a.add(i * 34));
            let d = _mm256_set1_ps(f16_at(wb) * f16_at(ab));
            let qw = _mm256_loadu_si256(wb.add(2).cast());
            let qa = _mm256_loadu_si256(ab.add(2).cast());
            acc = _mm256_fmadd_ps(d, dot_i8(qw, qa), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 18), a.add(i * 34));
            let d = _mm256_set1_ps(f16_at(wb) * f16_at(ab));
            let qw = _mm256_sub_epi8(nibbles(wb.add(2)), _mm256_set1_epi8(8));
            let qa = _mm256_loadu_si256(ab.add(2).cast());
            acc = _mm256_fmadd_ps(d, dot_i8(qw, qa), acc);
        }
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    let ones = _mm256_set1_epi16(1);
    for i in 0..nb {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * 20), a.add(i * 36));
            let d = _mm256_set1_ps(f16_at(wb) * f16_at(ab));
            mins += f16_at(wb.add(2)) * f16_at(ab.add(2));
            let qw = nibbles(wb.add(4));
            let qa = _mm256_loadu_si256(ab.add(4).cast());
            // Weights are unsigned here, so maddubs takes them as they are.
            let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qa), ones);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc);
        }
    }
    hsum(acc) + mins
}

/// The 16-lane (or 4 × 16-lane) f16 dot product; see `kernels::dot_f16_lanes`. Lengths are
/// equal multiples of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f16_lanes(lanes64: bool, k: &[u16], q: &[f32]) -> f32 {
    let n = k.len().min(q.len());
    // Each group of 16 lanes is two 8-lane registers (lanes 0..8 and 8..16).
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 16 <= n {
        let g = if lanes64 { (i / 16) % 4 } else { 0 };
        // SAFETY: `i + 16 <= n` keeps both 16-wide loads inside the slices.
        unsafe {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i).cast()));
            let k1 = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8).cast()));
            acc[2 * g] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q.as_ptr().add(i)), acc[2 * g]);
            acc[2 * g + 1] =
                _mm256_fmadd_ps(k1, _mm256_loadu_ps(q.as_ptr().add(i + 8)), acc[2 * g + 1]);
        }
        i += 16;
    }
    let (mut lo, mut hi) = (acc[0], acc[1]);
    if lanes64 {
        // Groups 0+2 and 1+3, then 0+1.
        lo = _mm256_add_ps(_mm256_add_ps(lo, acc[4]), _mm256_add_ps(acc[2], acc[6]));
        hi = _mm256_add_ps(_mm256_add_ps(hi, acc[5]), _mm256_add_ps(acc[3], acc[7]));
    }
    // Halving: lanes i and i+8, then the 128-bit halves, then pairs, then the last two.
    hsum(_mm256_add_ps(lo, hi))
}

/// `acc[i] = fma(p, v[i], acc[i])`, values as f16 bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fma_f16_row(acc: &mut [f32], p: f32, v: &[u16]) {
    let n = acc.len().min(v.len());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let vv = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(pv, vv, a));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] = p.mul_add(half::f16::from_bits(v[j]).to_f32(), acc[j]);
    }
}

/// f32 to f16 bits, rounding to nearest even.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f32_to_f16(x: &[f32], out: &mut [u16]) {
    let n = x.len().min(out.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the load and the store inside the slices.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), h);
        }
        i += 8;
    }
    for j in i..n {
        out[j] = half::f16::from_f32(x[j]).to_bits();
    }
}

/// Eight lanes of `kernels::exp`, or `None` when a lane needs a scale outside f32's normal
/// exponents (the caller then takes the scalar path, which handles those exactly).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> Option<__m256> {
    let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
    let shift = c(EXP_SHIFT);
    let z = _mm256_fmadd_ps(x, c(EXP_LOG2E), shift);
    let n = _mm256_sub_ps(z, shift);
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    // NaN compares false here and goes to the scalar path too.
    let in_range = _mm256_cmp_ps::<_CMP_LE_OQ>(abs_n, _mm256_set1_ps(126.0));
    if _mm256_movemask_ps(in_range) != 0xFF {
        return None;
    }
    let neg_n = _mm256_sub_ps(_mm256_setzero_ps(), n);
    let b = _mm256_fmadd_ps(
        neg_n,
        c(EXP_LN2_LO),
        _mm256_fmadd_ps(neg_n, c(EXP_LN2_HI), x),
    );
    let u = _mm256_mul_ps(b, b);
    let p = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(EXP_C5), b, c(EXP_C4)),
            u,
            _mm256_fmadd_ps(c(EXP_C3), b, c(EXP_C2)),
        ),
        u,
        _mm256_fmadd_ps(c(EXP_C1), b, _mm256_set1_ps(1.0)),
    );
    // 2^n exactly, from the exponent bits; one rounding of p·2^n, as the scalar path has.
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    Some(_mm256_mul_ps(p, pow2))
}

/// `x[i] = exp(x[i])`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn exp_in_place(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for ch in &mut chunks {
        // SAFETY: the chunk holds exactly 8 floats.
        let v = unsafe { _mm256_loadu_ps(ch.as_ptr()) };
        match exp8(v) {
            // SAFETY: as above.
            Some(e) => unsafe { _mm256_storeu_ps(ch.as_mut_ptr(), e) },
            None => ch.iter_mut().for_each(|v| *v = super::exp(*v)),
        }
    }
    for v in chunks.into_remainder() {
        *v = super::exp(*v);
    }
}

/// `gate[i] = gate[i] / (1 + exp(0 − gate[i])) · up[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps the loads and the store inside the slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let neg = _mm256_sub_ps(_mm256_setzero_ps(), g);
            match exp8(neg) {
                Some(e) => {
                    let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                    let out = _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i)));
                    _mm256_storeu_ps(gate.as_mut_ptr().add(i), out);
                }
                None => {
                    for j in i..i + 8 {
                        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
                    }
                }
            }
        }
        i += 8;
    }
    for j in i..n {
        gate[j] = gate[j] / (1.0 + super::exp(0.0 - gate[j])) * up[j];
    }
}
