//! A reader for `.safetensors` files: the weights of a Hugging Face model.
//!
//! The format is an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the tensors' raw little-endian bytes. The sentence
//! encoder reads its weights from here directly rather than from a converted GGUF copy: the
//! file is what sentence-transformers itself loads, so there is no conversion step to
//! commit, rerun or get wrong, and the format takes a page to read.
//!
//! ```
//! use any_llm_local::safetensors::{Dtype, Safetensors};
//!
//! // One tensor `w` of two f32 values.
//! let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
//! let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
//! bytes.extend_from_slice(header);
//! bytes.extend_from_slice(&1.5f32.to_le_bytes());
//! bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
//!
//! let file = Safetensors::from_bytes(bytes)?;
//! let w = file.tensor("w")?;
//! assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[2][..]));
//! assert_eq!(w.to_f32()?, vec![1.5, -2.0]);
//! # Ok::<(), any_llm_local::safetensors::SafetensorsError>(())
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};

/// What can be wrong with a safetensors file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Shorter than its own header says.
    #[error("truncated safetensors file: {0}")]
    Truncated(String),
    /// The header is not the JSON the format describes.
    #[error("bad safetensors header: {0}")]
    BadHeader(String),
    /// A tensor's entry is inconsistent (its byte range does not fit its shape or the file).
    #[error("safetensors tensor {name}: {reason}")]
    BadTensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No tensor of that name.
    #[error("safetensors file has no tensor {0}")]
    Missing(String),
    /// A tensor of a type this reader does not convert.
    #[error("safetensors tensor {name}: expected F32, F16 or BF16, found {dtype}")]
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// Its dtype as the file names it.
        dtype: String,
    },
}

/// A `Result` with [`SafetensorsError`].
pub type Result<T> = std::result::Result<T, SafetensorsError>;

/// The largest header accepted: real headers are kilobytes, and a corrupt length must not
/// make us allocate gigabytes.
const MAX_HEADER: u64 = 100 << 20;

/// The element types of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// Any integer or boolean type (kept, not converted): its name and byte width.
    Other(&'static str, usize),
}

impl Dtype {
    fn parse(name: &str) -> Option<Dtype> {
        Some(match name {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::Other("F64", 8),
            "I64" => Dtype::Other("I64", 8),
            "U64" => Dtype::Other("U64", 8),
            "I32" => Dtype::Other("I32", 4),
            "U32" => Dtype::Other("U32", 4),
            "I16" => Dtype::Other("I16", 2),
            "U16" => Dtype::Other("U16", 2),
            "I8" => Dtype::Other("I8", 1),
            "U8" => Dtype::Other("U8", 1),
            "BOOL" => Dtype::Other("BOOL", 1),
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::Other(_, n) => n,
        }
    }

    /// The name the format uses.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::Other(n, _) => n,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A safetensors file held in memory, its header checked.
#[derive(Debug)]
pub struct Safetensors {
    bytes: Vec<u8>,
    data_start: usize,
    tensors: BTreeMap<String, Entry>,
}

/// One tensor of a [`Safetensors`] file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [u8],
}

impl TensorView<'_> {
    /// Its element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Its shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        self.shape
    }

    /// Its raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data
    }

    /// Its values as f32 (row-major), widening F16 and BF16 exactly.
    ///
    /// # Errors
    /// [`SafetensorsError::UnsupportedDtype`] for integer and F64 tensors.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let d = self.data;
        Ok(match self.dtype {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::Other(name, _) => {
                return Err(SafetensorsError::UnsupportedDtype {
                    name: self.name.to_owned(),
                    dtype: name.to_owned(),
                });
            }
        })
    }
}

impl Safetensors {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// [`SafetensorsError::Io`] if it cannot be read; otherwise as [`Safetensors::from_bytes`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| SafetensorsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(bytes)
    }

    /// Checks the header of a file's bytes: every tensor's dtype known, its byte range inside
    /// the data and exactly the size of its shape.
    ///
    /// # Errors
    /// [`SafetensorsError::Truncated`] when the file is shorter than its header says,
    /// [`SafetensorsError::BadHeader`] when the header is not a JSON object of tensor
    /// entries, [`SafetensorsError::BadTensor`] naming the tensor whose entry is wrong.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let Some(len) = bytes.get(..8) else {
            return Err(SafetensorsError::Truncated(format!(
                "{} bytes, fewer than the 8 of the header length",
                bytes.len()
            )));
        };
        let header_len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        if header_len > MAX_HEADER {
            return Err(SafetensorsError::BadHeader(format!(
                "header length {header_len} bytes is past the {MAX_HEADER} this reader accepts"
            )));
        }
        let data_start = 8 + header_len as usize;
        let Some(header) = bytes.get(8..data_start) else {
            return Err(SafetensorsError::Truncated(format!(
                "the header is {header_len} bytes but the file has {} after the length",
                bytes.len() - 8
            )));
        };
        let header: serde_json::Value = serde_json::from_slice(header)
            .map_err(|e| SafetensorsError::BadHeader(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(map) = header else {
            return Err(SafetensorsError::BadHeader(
                "expected a JSON object of tensors".into(),
            ));
        };
        let data_len = bytes.len() - data_start;
        let mut tensors = BTreeMap::new();
        for (name, v) in map {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&name, &v, data_len)?;
            tensors.insert(name, entry);
        }
        Ok(Safetensors {
            bytes,
            data_start,
            tensors,
        })
    }

    /// The names of its tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor `name`.
    ///
    /// # Errors
    /// [`SafetensorsError::Missing`] if there is none.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, e) = self
            .tensors
            .get_key_value(name)
            .ok_or_else(|| SafetensorsError::Missing(name.to_owned()))?;
        Ok(TensorView {
            name: key,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.bytes[self.data_start + e.start..self.data_start + e.end],
        })
    }
}

fn parse_entry(name: &str, v: &serde_json::Value, data_len: usize) -> Result<Entry> {
    let bad = |reason: String| SafetensorsError::BadTensor {
        name: name.to_owned(),
        reason,
    };
    let dtype_name = v["dtype"].as_str().ok_or_else(|| bad("no dtype".into()))?;
    let dtype =
        Dtype::parse(dtype_name).ok_or_else(|| bad(format!("unknown dtype {dtype_name}")))?;
    let shape = v["shape"]
        .as_array()
        .ok_or_else(|| bad("no shape".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad("a shape dimension is not a count".into()))?;
    let offsets = v["data_offsets"]
        .as_array()
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
        .ok_or_else(|| bad("data_offsets is not two byte offsets".into()))?;
    let (start, end) = (offsets.0 as usize, offsets.1 as usize);
    if start > end || end > data_len {
        return Err(SafetensorsError::Truncated(format!(
            "tensor {name} spans bytes {start}..{end} of the data, which has {data_len}"
        )));
    }
    let want = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    if end - start != want {
        return Err(bad(format!(
            "shape {shape:?} of {} needs {want} bytes, the entry spans {}",
            dtype.name(),
            end - start
        )));
    }
    Ok(Entry {
        dtype,
        shape,
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_f16_and_bf16_and_skips_metadata() {
        let mut data = Vec::new();
        data.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        data.extend_from_slice(&bf16::from_f32(-3.0).to_le_bytes());
        let h = r#"{"__metadata__":{"format":"pt"},
            "a":{"dtype":"F16","shape":[1,1],"data_offsets":[0,2]},
            "b":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]}}"#;
        let st = Safetensors::from_bytes(file(h, &data)).unwrap();
        assert_eq!(st.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(st.tensor("a").unwrap().to_f32().unwrap(), [0.5]);
        assert_eq!(st.tensor("b").unwrap().to_f32().unwrap(), [-3.0]);
        assert!(matches!(
            st.tensor("c"),
            Err(SafetensorsError::Missing(n)) if n == "c"
        ));
    }

    #[test]
    fn corrupt_files_name_what_is_wrong() {
        let e = Safetensors::from_bytes(vec![1, 2, 3]).unwrap_err();
        assert!(matches!(e, SafetensorsError::Truncated(_)), "{e}");

        let mut short = file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 4],
        );
        let e = Safetensors::from_bytes(short.clone()).unwrap_err();
        assert!(e.to_string().contains("tensor a spans bytes 0..8"), "{e}");
        short.truncate(20);
        let e = Safetensors::from_bytes(short).unwrap_err();
        assert!(matches!(e, SafetensorsError::Truncated(_)), "{e}");

        let e = Safetensors::from_bytes(file("[1,2]", &[])).unwrap_err();
        assert!(matches!(e, SafetensorsError::BadHeader(_)), "{e}");
        let e = Safetensors::from_bytes(file("{not json", &[])).unwrap_err();
        assert!(matches!(e, SafetensorsError::BadHeader(_)), "{e}");

        let h = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        let e = Safetensors::from_bytes(file(h, &[0; 8])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "safetensors tensor w: shape [3] of F32 needs 12 bytes, the entry spans 8"
        );
        let h = r#"{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
        let e = Safetensors::from_bytes(file(h, &[0])).unwrap_err();
        assert!(e.to_string().contains("unknown dtype Q4"), "{e}");

        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let e = Safetensors::from_bytes(huge).unwrap_err();
        assert!(matches!(e, SafetensorsError::BadHeader(_)), "{e}");
    }

    #[test]
    fn integer_tensors_are_kept_but_not_converted() {
        let h = r#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
        let st = Safetensors::from_bytes(file(h, &7i64.to_le_bytes())).unwrap();
        let t = st.tensor("ids").unwrap();
        assert_eq!(t.bytes(), 7i64.to_le_bytes());
        let e = t.to_f32().unwrap_err();
        assert_eq!(
            e.to_string(),
            "safetensors tensor ids: expected F32, F16 or BF16, found I64"
        );
    }
}
