//! GGUF metadata: an ordered map from keys to typed values, with getters whose errors name the
//! key.

use std::collections::HashMap;

use super::error::{GgufError, Result};
use super::value::{MetadataArray, MetadataValue};

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
