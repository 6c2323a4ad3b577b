//! GGUF metadata: an ordered map from keys to typed values, with getters whose errors name the
//! key.

use std::collections::HashMap;
use std::fmt;

use super::error::{GgufError, Result};

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
    fn as_integer(&self) -> Option<i128> {
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
    fn describe(&self) -> String {
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

/// The metadata of a GGUF file: keys in file order, each with one value.
///
/// Getters come in two kinds: `get_*` for keys a model needs (a missing key is
/// [`GgufError::MissingKey`]) and `get_opt_*` for keys with a default (a missing key is
/// `Ok(None)`). Both fail with [`GgufError::WrongType`] when the value has another type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`.
    ///
    /// # Errors
    ///
    /// [`GgufError::DuplicateKey`] if the key is already present.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<()> {
        let key = key.into();
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value.into()));
        Ok(())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn required(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T> {
        let v = self.required(key)?;
        v.as_integer()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| wrong(key, expected, v))
    }
}

fn wrong(key: &str, expected: &'static str, found: &MetadataValue) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.describe(),
    }
}

/// Generates a `get_opt_*` twin for a `get_*` getter: missing is `Ok(None)`.
macro_rules! optional {
    ($(#[$doc:meta] $opt:ident => $req:ident -> $t:ty;)*) => {
        impl Metadata {$(
            #[$doc]
            ///
            /// # Errors
            ///
            /// [`GgufError::WrongType`] if the key holds another type.
            pub fn $opt(&self, key: &str) -> Result<Option<$t>> {
                if self.contains_key(key) {
                    self.$req(key).map(Some)
                } else {
                    Ok(None)
                }
            }
        )*}
    };
}

impl Metadata {
    /// A string value.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.required(key)? {
            MetadataValue::String(s) => Ok(s),
            v => Err(wrong(key, "a string", v)),
        }
    }

    /// An integer of any GGUF width whose value fits a `u32`.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`] (also for a negative or too large
    /// value).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.integer(key, "an integer that fits u32")
    }

    /// An integer of any GGUF width whose value fits a `u64`.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.integer(key, "an integer that fits u64")
    }

    /// An integer of any GGUF width whose value fits an `i32`.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_i32(&self, key: &str) -> Result<i32> {
        self.integer(key, "an integer that fits i32")
    }

    /// An `f32` value (an `f64` is narrowed, as llama.cpp's converters sometimes write one).
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match *self.required(key)? {
            MetadataValue::F32(v) => Ok(v),
            MetadataValue::F64(v) => Ok(v as f32),
            ref v => Err(wrong(key, "an f32", v)),
        }
    }

    /// A bool value.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match *self.required(key)? {
            MetadataValue::Bool(v) => Ok(v),
            ref v => Err(wrong(key, "a bool", v)),
        }
    }

    /// An array value of any element type.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray> {
        match self.required(key)? {
            MetadataValue::Array(a) => Ok(a),
            v => Err(wrong(key, "an array", v)),
        }
    }

    /// An array of strings.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        match self.required(key)? {
            MetadataValue::Array(MetadataArray::String(v)) => Ok(v),
            v => Err(wrong(key, "an array of string", v)),
        }
    }

    /// An array of `f32`.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        match self.required(key)? {
            MetadataValue::Array(MetadataArray::F32(v)) => Ok(v),
            v => Err(wrong(key, "an array of f32", v)),
        }
    }

    /// An array of `i32`.
    ///
    /// # Errors
    ///
    /// [`GgufError::MissingKey`] or [`GgufError::WrongType`].
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32]> {
        match self.required(key)? {
            MetadataValue::Array(MetadataArray::I32(v)) => Ok(v),
            v => Err(wrong(key, "an array of i32", v)),
        }
    }
}

optional! {
    /// [`get_str`](Metadata::get_str), with a missing key as `None`.
    get_opt_str => get_str -> &str;
    /// [`get_u32`](Metadata::get_u32), with a missing key as `None`.
    get_opt_u32 => get_u32 -> u32;
    /// [`get_u64`](Metadata::get_u64), with a missing key as `None`.
    get_opt_u64 => get_u64 -> u64;
    /// [`get_i32`](Metadata::get_i32), with a missing key as `None`.
    get_opt_i32 => get_i32 -> i32;
    /// [`get_f32`](Metadata::get_f32), with a missing key as `None`.
    get_opt_f32 => get_f32 -> f32;
    /// [`get_bool`](Metadata::get_bool), with a missing key as `None`.
    get_opt_bool => get_bool -> bool;
    /// [`get_array`](Metadata::get_array), with a missing key as `None`.
    get_opt_array => get_array -> &MetadataArray;
    /// [`get_str_array`](Metadata::get_str_array), with a missing key as `None`.
    get_opt_str_array => get_str_array -> &[String];
    /// [`get_f32_array`](Metadata::get_f32_array), with a missing key as `None`.
    get_opt_f32_array => get_f32_array -> &[f32];
    /// [`get_i32_array`](Metadata::get_i32_array), with a missing key as `None`.
    get_opt_i32_array => get_i32_array -> &[i32];
}

impl fmt::Display for MetadataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_getters_accept_any_width_that_fits() {
        let mut m = Metadata::new();
        m.insert("a", 7u8).unwrap();
        m.insert("b", -1i32).unwrap();
        m.insert("c", u64::MAX).unwrap();
        m.insert("s", "x").unwrap();
        assert_eq!(m.get_u32("a").unwrap(), 7);
        assert_eq!(m.get_i32("b").unwrap(), -1);
        let e = m.get_u32("b").unwrap_err().to_string();
        assert_eq!(
            e,
            "GGUF metadata key b: expected an integer that fits u32, found i32 -1"
        );
        assert!(m.get_u32("c").is_err());
        assert_eq!(m.get_u64("c").unwrap(), u64::MAX);
        let e = m.get_u32("s").unwrap_err().to_string();
        assert!(e.contains("found string \"x\""), "{e}");
        assert_eq!(
            m.get_str("nope").unwrap_err().to_string(),
            "GGUF metadata key nope is missing"
        );
        assert_eq!(m.get_opt_u32("nope").unwrap(), None);
        assert!(m.get_opt_u32("s").is_err());
        assert!(matches!(
            m.insert("a", 1u8),
            Err(GgufError::DuplicateKey { .. })
        ));
    }
}
