//! The non-linear 4-bit formats (IQ4_NL by Q8_0, IQ4_XS by Q8_K) with AVX2: the 4-bit indexes
//! become their levels through one byte shuffle of the 16-entry table, then a signed byte dot
//! product. Floats are accumulated lane by lane, in the order llama.cpp's AVX2 kernels use, so
//! the results are theirs bit for bit (the scalar reference sums per block, and agrees to
//! float rounding).

use std::arch::x86_64::*;

use super::{f16_at, f32_at, hsum};
use crate::kernels::DotFn;
use crate::quant::{GgmlType, IQ4_LEVELS, Q8_0_BYTES, Q8_K_BYTES, QK_K};

/// Bytes of an IQ4_NL block (32 values) and an IQ4_XS super-block (256).
const IQ4_NL_BYTES: usize = 18;
const IQ4_XS_BYTES: usize = 136;

/// The dot product for `ty`; the CPU has AVX2.
pub(super) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
    match ty {
        GgmlType::IQ4_NL => Some(dot_iq4_nl),
        GgmlType::IQ4_XS => Some(dot_iq4_xs),
        _ => None,
    }
}

fn dot_iq4_nl(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = n / 32;
    assert!(
        n.is_multiple_of(32) && w.len() == nb * IQ4_NL_BYTES && a.len() == nb * Q8_0_BYTES,
        "row sizes do not match n = {n}"
    );
    // SAFETY: `dot_fn` hands this out only when AVX2/FMA/F16C are present; the assertion
    // proved both slices hold `nb` whole blocks.
    unsafe { dot_iq4_nl_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

fn dot_iq4_xs(w: &[u8], a: &[u8], n: usize) -> f32 {
    let nb = n / QK_K;
    assert!(
        n.is_multiple_of(QK_K) && w.len() == nb * IQ4_XS_BYTES && a.len() == nb * Q8_K_BYTES,
        "row sizes do not match n = {n}"
    );
    // SAFETY: as in `dot_iq4_nl`.
    unsafe { dot_iq4_xs_avx2(w.as_ptr(), a.as_ptr(), nb) }
}

/// 16 bytes of indexes as the 32 levels they name: low nibbles (values 0..16), then high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn levels(p: *const u8) -> __m256i {
    // SAFETY: the table is 16 bytes; the caller points `p` at 16 readable bytes.
    let (table, bytes) = unsafe {
        (
            _mm_loadu_si128(IQ4_LEVELS.as_ptr().cast()),
            _mm_loadu_si128(p.cast()),
        )
    };
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_shuffle_epi8(table, _mm_and_si128(bytes, mask));
    let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bytes, 4), mask));
    _mm256_set_m128i(hi, lo)
}

/// Signed bytes by signed bytes, adjacent products summed: 16 i16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pairs_i8(x: __m256i, y: __m256i) -> __m256i {
    // maddubs multiplies unsigned by signed: move x's sign onto y.
    _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq4_nl_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let one = _mm256_set1_epi16(1);
    // Even blocks into one accumulator, odd ones into the other.
    let mut acc = [_mm256_setzero_ps(); 2];
    let pairs = nb / 2 * 2;
    for i in 0..pairs {
        // SAFETY: block `i < nb` of each row is in bounds (checked by the wrapper).
        unsafe {
            let (wb, ab) = (w.add(i * IQ4_NL_BYTES), a.add(i * Q8_0_BYTES));
            let q = levels(wb.add(2));
            let y = _mm256_loadu_si256(ab.add(2).cast());
            let sums = _mm256_madd_epi16(pairs_i8(q, y), one);
            let d = _mm256_set1_ps(f16_at(ab) * f16_at(wb));
            acc[i % 2] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[i % 2]);
        }
    }
    let mut total = hsum(_mm256_add_ps(acc[0], acc[1]));
    // An odd last block, as llama.cpp finishes one: in scalar code.
    for i in pairs..nb {
        // SAFETY: as above.
        unsafe {
            let (wb, ab) = (w.add(i * IQ4_NL_BYTES), a.add(i * Q8_0_BYTES));
            let mut s = 0i32;
            for j in 0..16 {
                let byte = wb.add(2 + j).read();
                let (y0, y1) = (
                    ab.add(2 + j).cast::<i8>().read(),
                    ab.add(18 + j).cast::<i8>().read(),
                );
                s += i32::from(IQ4_LEVELS[usize::from(byte & 0x0F)]) * i32::from(y0)
                    + i32::from(IQ4_LEVELS[usize::from(byte >> 4)]) * i32::from(y1);
            }
            total += f16_at(ab) * f16_at(wb) * s as f32;
        }
    }
    total
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq4_xs_avx2(w: *const u8, a: *const u8, nb: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block `i < nb` of each row is in bounds (checked by the wrapper):
        // d at 0, scales_h at 2, scales_l at 4, quants at 8 (128 bytes, within 136); the
        // activations' f32 scale at 0 and quants at 4 (256 bytes, within 292).
        unsafe {
            let (wb, ab) = (w.add(i * IQ4_XS_BYTES), a.add(i * Q8_K_BYTES));
            let mut high = u16::from_le_bytes([wb.add(2).read(), wb.add(3).read()]);
            let mut sums = [_mm256_setzero_si256(); 2];
            for ib in 0..QK_K / 32 {
                let low = wb.add(4 + ib / 2).read() >> (4 * (ib % 2));
                let scale = i16::from((low & 0x0F) | ((high as u8 & 3) << 4)) - 32;
                high >>= 2;
                let q = levels(wb.add(8 + 16 * ib));
                let y = _mm256_loadu_si256(ab.add(4 + 32 * ib).cast());
                let p = _mm256_madd_epi16(pairs_i8(q, y), _mm256_set1_epi16(scale));
                sums[ib % 2] = _mm256_add_epi32(sums[ib % 2], p);
            }
            let ad = f32_at(ab);
            let d = _mm256_set1_ps(f16_at(wb) * ad);
            let s = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[0], sums[1]));
            acc = _mm256_fmadd_ps(d, s, acc);
        }
    }
    hsum(acc)
}
