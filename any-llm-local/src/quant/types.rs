//! The ggml tensor types: their numbering, block geometry and names.

use std::fmt;

use super::QK_K;

/// A ggml tensor type, numbered as ggml and GGUF number them.
///
/// Every id that ggml has assigned to a live type is known here by name, so an error can say
/// "unsupported type IQ2_XS" instead of "unknown type 17". Only some of them have dequantize and
/// dot-product code in this crate: see [`GgmlType::is_supported`].
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32 weights: one f16 scale, 4-bit quants offset by 8.
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit quants.
    Q4_1,
    /// 32 weights: f16 scale, 5-bit quants offset by 16.
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit quants.
    Q5_1,
    /// 32 weights: f16 scale, 8-bit signed quants.
    Q8_0,
    /// 32 weights: f16 scale, f16 `d * sum(q)`, 8-bit signed quants (an activation format).
    Q8_1,
    /// 256 weights in 16 sub-blocks with 4-bit scales and mins, 2-bit quants.
    Q2_K,
    /// 256 weights in 16 sub-blocks with 6-bit scales, 3-bit quants.
    Q3_K,
    /// 256 weights in 8 sub-blocks with 6-bit scales and mins, 4-bit quants.
    Q4_K,
    /// 256 weights in 8 sub-blocks with 6-bit scales and mins, 5-bit quants.
    Q5_K,
    /// 256 weights in 16 sub-blocks with 8-bit scales, 6-bit quants.
    Q6_K,
    /// 256 values: f32 scale, 8-bit quants and 16 partial sums (an activation format).
    Q8_K,
    /// Importance-matrix 2-bit type (not supported here).
    IQ2_XXS,
    /// Importance-matrix 2-bit type (not supported here).
    IQ2_XS,
    /// Importance-matrix 3-bit type (not supported here).
    IQ3_XXS,
    /// Importance-matrix 1-bit type (not supported here).
    IQ1_S,
    /// 32 weights: f16 scale, 4-bit indexes into 16 non-linear levels.
    IQ4_NL,
    /// Importance-matrix 3-bit type (not supported here).
    IQ3_S,
    /// Importance-matrix 2-bit type (not supported here).
    IQ2_S,
    /// 256 weights in 8 groups with 6-bit scales, 4-bit indexes into 16 non-linear levels.
    IQ4_XS,
    /// 8-bit integer (not supported here).
    I8,
    /// 16-bit integer (not supported here).
    I16,
    /// 32-bit integer (not supported here).
    I32,
    /// 64-bit integer (not supported here).
    I64,
    /// 64-bit float (not supported here).
    F64,
    /// Importance-matrix 1-bit type (not supported here).
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary type (not supported here).
    TQ1_0,
    /// Ternary type (not supported here).
    TQ2_0,
    /// Microscaling 4-bit float (not supported here).
    MXFP4,
    /// NVIDIA 4-bit float (not supported here).
    NVFP4,
    /// 1-bit type (not supported here).
    Q1_0,
}

/// Values per block of the 32-value families (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): ggml's
/// `QK4_0`, `QK8_0` and kin.
pub(crate) const QK: usize = 32;

// Bytes per block of each quantized type, as ggml lays them out: the scales first, then the
// packed values. The table below and the kernels take them from here.
/// Bytes of a Q4_0 block: an f16 scale, 16 bytes of nibbles.
pub(crate) const Q4_0_BYTES: usize = 18;
/// Bytes of a Q4_1 block: f16 scale and minimum, 16 bytes of nibbles.
pub(crate) const Q4_1_BYTES: usize = 20;
/// Bytes of a Q5_0 block: an f16 scale, 4 bytes of fifth bits, 16 bytes of nibbles.
pub(crate) const Q5_0_BYTES: usize = 22;
/// Bytes of a Q5_1 block: f16 scale and minimum, 4 bytes of fifth bits, 16 of nibbles.
pub(crate) const Q5_1_BYTES: usize = 24;
/// Bytes of a Q8_0 block: an f16 scale, 32 signed bytes.
pub(crate) const Q8_0_BYTES: usize = 34;
/// Bytes of a Q8_1 block: f16 scale and scaled sum, 32 signed bytes.
pub(crate) const Q8_1_BYTES: usize = 36;
/// Bytes of a Q4_K super-block: f16 scale and minimum, 12 bytes of sub-block scales, 128 of
/// nibbles.
pub(crate) const Q4_K_BYTES: usize = 144;
/// Bytes of a Q5_K super-block: as Q4_K, with 32 bytes of fifth bits.
pub(crate) const Q5_K_BYTES: usize = 176;
/// Bytes of a Q6_K super-block: 128 bytes of low nibbles, 64 of high bits, 16 scales, an f16.
pub(crate) const Q6_K_BYTES: usize = 210;
/// Bytes of a Q8_K block: an f32 scale, 256 signed bytes, 16 sums of 16 (i16).
pub(crate) const Q8_K_BYTES: usize = 4 + QK_K + 32;

/// `(type, id, name, block size, bytes per block)`: the one table the methods read.
const TABLE: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", QK, Q4_0_BYTES),
    (GgmlType::Q4_1, 3, "Q4_1", QK, Q4_1_BYTES),
    (GgmlType::Q5_0, 6, "Q5_0", QK, Q5_0_BYTES),
    (GgmlType::Q5_1, 7, "Q5_1", QK, Q5_1_BYTES),
    (GgmlType::Q8_0, 8, "Q8_0", QK, Q8_0_BYTES),
    // 36 as in ggml's `block_q8_1` (two f16 then 32 quants); the `gguf` Python package still
    // says 40, from when `d` and `s` were f32.
    (GgmlType::Q8_1, 9, "Q8_1", QK, Q8_1_BYTES),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", QK_K, Q4_K_BYTES),
    (GgmlType::Q5_K, 13, "Q5_K", QK_K, Q5_K_BYTES),
    (GgmlType::Q6_K, 14, "Q6_K", QK_K, Q6_K_BYTES),
    (GgmlType::Q8_K, 15, "Q8_K", QK_K, Q8_K_BYTES),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
    (GgmlType::NVFP4, 40, "NVFP4", 64, 36),
    (GgmlType::Q1_0, 41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The types this crate can dequantize and take dot products of.
    pub const SUPPORTED: [GgmlType; 17] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ];

    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        // Every variant has exactly one row; the unit test `table_covers_every_variant` holds
        // this invariant.
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every GgmlType has a table row")
    }

    /// The type with ggml id `id`, or `None` if ggml assigns no live type to it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The type named `name` (`"Q4_K"`, case-sensitive as ggml writes it).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.2 == name).map(|r| r.0)
    }

    /// ggml's numeric id, as stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// ggml's name for the type (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Values per block (1 for plain float and integer types).
    pub fn block_size(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().4
    }

    /// Bytes taken by `n` values, or `None` if `n` is not a multiple of [`block_size`].
    ///
    /// [`block_size`]: GgmlType::block_size
    pub fn row_size(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_size()) {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }

    /// Whether this crate has dequantize and dot-product code for the type.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Whether the type is quantized in blocks (block size above 1).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// The activation format llama.cpp pairs with this weight type in a dot product, or `None`
    /// for types this crate does not support.
    ///
    /// Q4_0, Q5_0, Q8_0 and IQ4_NL take Q8_0; Q4_1 and Q5_1 take Q8_1 (whose stored sum pays
    /// for their minimum); the K-quants and IQ4_XS take Q8_K (whose partial sums pay for the
    /// K-quants' sub-block minimums); the float types take themselves. The activation types
    /// pair with themselves.
    pub fn vec_dot_type(self) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match self {
            F32 => F32,
            F16 => F16,
            BF16 => BF16,
            Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Q8_0,
            Q4_1 | Q5_1 | Q8_1 => Q8_1,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ4_XS => Q8_K,
            _ => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_variant_once() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert_ne!(a.0, b.0, "type listed twice");
                assert_ne!(a.1, b.1, "id listed twice");
                assert_ne!(a.2, b.2, "name listed twice");
            }
            assert_eq!(GgmlType::from_id(a.1), Some(a.0));
            assert_eq!(GgmlType::from_name(a.2), Some(a.0));
        }
        for t in GgmlType::SUPPORTED {
            assert!(t.vec_dot_type().is_some(), "{t}");
        }
    }

    #[test]
    fn geometry_matches_ggml() {
        assert_eq!(GgmlType::Q4_K.block_size(), 256);
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q8_1.type_size(), 36);
        assert_eq!(GgmlType::Q4_0.row_size(576), Some(18 * 18));
        assert_eq!(GgmlType::Q4_0.row_size(33), None);
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(99), None);
        assert_eq!(GgmlType::IQ2_XS.to_string(), "IQ2_XS");
        assert!(!GgmlType::IQ2_XS.is_supported());
        assert_eq!(GgmlType::Q5_1.vec_dot_type(), Some(GgmlType::Q8_1));
        assert_eq!(GgmlType::Q6_K.vec_dot_type(), Some(GgmlType::Q8_K));
    }
}
