//! GGUF metadata values: the type numbers, scalar values and typed arrays.

use std::fmt;

/// A metadata value type, numbered as GGUF numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataType {
    /// `u8`
    U8,
    /// `i8`
    I8,
    /// `u16`
    U16,
    /// `i16`
    I16,
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `f32`
    F32,
    /// `bool` (one byte, 0 or 1)
    Bool,
    /// UTF-8 string with a `u64` length
    String,
    /// Array: element type, `u64` count, elements
    Array,
    /// `u64`
    U64,
    /// `i64`
    I64,
    /// `f64`
    F64,
}

impl MetadataType {
    /// The type with GGUF number `id`.
    pub fn from_id(id: u32) -> Option<MetadataType> {
        use MetadataType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// GGUF's number for the type.
    pub fn id(self) -> u32 {
        use MetadataType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// A lower-case name for messages (`"u32"`, `"string"`).
    pub fn name(self) -> &'static str {
        use MetadataType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes one value of the type takes at least in a file (a string's or array's header).
    pub(super) fn min_size(self) -> u64 {
        use MetadataType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// A string.
    String(String),
    /// An array, stored by element type.
    Array(MetadataArray),
}

/// A metadata array, stored as one typed `Vec` so that a 49 152-entry vocabulary is one
/// allocation per string, not one enum per element.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataArray {
    /// `u8` elements.
    U8(Vec<u8>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `u16` elements.
    U16(Vec<u16>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `u64` elements.
    U64(Vec<u64>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// String elements.
    String(Vec<String>),
    /// Array elements, each with its own element type.
    Array(Vec<MetadataArray>),
}

impl MetadataValue {
    /// The value's GGUF type.
    pub fn value_type(&self) -> MetadataType {
        match self {
            MetadataValue::U8(_) => MetadataType::U8,
            MetadataValue::I8(_) => MetadataType::I8,
            MetadataValue::U16(_) => MetadataType::U16,
            MetadataValue::I16(_) => MetadataType::I16,
            MetadataValue::U32(_) => MetadataType::U32,
            MetadataValue::I32(_) => MetadataType::I32,
            MetadataValue::U64(_) => MetadataType::U64,
            MetadataValue::I64(_) => MetadataType::I64,
            MetadataValue::F32(_) => MetadataType::F32,
            MetadataValue::F64(_) => MetadataType::F64,
            MetadataValue::Bool(_) => MetadataType::Bool,
            MetadataValue::String(_) => MetadataType::String,
            MetadataValue::Array(_) => MetadataType::Array,
        }
    }

    /// The value as an `i128` if it is an integer of any width.
    pub(super) fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => v.into(),
            MetadataValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Describes the value for an error message: its type, and the value itself when short.
    pub(super) fn describe(&self) -> String {
        match self {
            MetadataValue::String(s) if s.len() <= 40 => format!("string {s:?}"),
            MetadataValue::String(s) => format!("string of {} bytes", s.len()),
            MetadataValue::Array(a) => a.describe(),
            MetadataValue::Bool(v) => format!("bool {v}"),
            MetadataValue::F32(v) => format!("f32 {v}"),
            MetadataValue::F64(v) => format!("f64 {v}"),
            other => match other.as_integer() {
                Some(i) => format!("{} {i}", other.value_type().name()),
                None => other.value_type().name().to_owned(),
            },
        }
    }
}

impl MetadataArray {
    /// The element type.
    pub fn element_type(&self) -> MetadataType {
        match self {
            MetadataArray::U8(_) => MetadataType::U8,
            MetadataArray::I8(_) => MetadataType::I8,
            MetadataArray::U16(_) => MetadataType::U16,
            MetadataArray::I16(_) => MetadataType::I16,
            MetadataArray::U32(_) => MetadataType::U32,
            MetadataArray::I32(_) => MetadataType::I32,
            MetadataArray::U64(_) => MetadataType::U64,
            MetadataArray::I64(_) => MetadataType::I64,
            MetadataArray::F32(_) => MetadataType::F32,
            MetadataArray::F64(_) => MetadataType::F64,
            MetadataArray::Bool(_) => MetadataType::Bool,
            MetadataArray::String(_) => MetadataType::String,
            MetadataArray::Array(_) => MetadataType::Array,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetadataArray::U8(v) => v.len(),
            MetadataArray::I8(v) => v.len(),
            MetadataArray::U16(v) => v.len(),
            MetadataArray::I16(v) => v.len(),
            MetadataArray::U32(v) => v.len(),
            MetadataArray::I32(v) => v.len(),
            MetadataArray::U64(v) => v.len(),
            MetadataArray::I64(v) => v.len(),
            MetadataArray::F32(v) => v.len(),
            MetadataArray::F64(v) => v.len(),
            MetadataArray::Bool(v) => v.len(),
            MetadataArray::String(v) => v.len(),
            MetadataArray::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn describe(&self) -> String {
        format!("array of {} {}", self.len(), self.element_type().name())
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for MetadataValue {
            fn from(v: $t) -> Self {
                MetadataValue::$v(v)
            }
        }
        impl From<Vec<$t>> for MetadataValue {
            fn from(v: Vec<$t>) -> Self {
                MetadataValue::Array(MetadataArray::$v(v))
            }
        }
        impl From<Vec<$t>> for MetadataArray {
            fn from(v: Vec<$t>) -> Self {
                MetadataArray::$v(v)
            }
        }
    )*};
}

from_scalar!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool, String => String,
);

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::String(v.to_owned())
    }
}

impl From<Vec<&str>> for MetadataValue {
    fn from(v: Vec<&str>) -> Self {
        MetadataValue::Array(MetadataArray::String(
            v.into_iter().map(str::to_owned).collect(),
        ))
    }
}

impl From<MetadataArray> for MetadataValue {
    fn from(v: MetadataArray) -> Self {
        MetadataValue::Array(v)
    }
}

impl From<Vec<MetadataArray>> for MetadataValue {
    fn from(v: Vec<MetadataArray>) -> Self {
        MetadataValue::Array(MetadataArray::Array(v))
    }
}

impl fmt::Display for MetadataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
