//! Writing GGUF files.

use std::io::Write;
use std::path::Path;

use super::error::{GgufError, Result};
use super::metadata::Metadata;
use super::value::{MetadataArray, MetadataValue};
use super::{DEFAULT_ALIGNMENT, MAGIC, tensor_byte_len};
use crate::quant::GgmlType;

/// Builds a GGUF (version 3) file: metadata in insertion order, then tensor infos, then the
/// tensor data, each tensor aligned to `general.alignment` (32 unless set).
///
/// ```
/// use any_llm_local::gguf::{GgufFile, GgufWriter};
/// use any_llm_local::quant::GgmlType;
/// # fn main() -> Result<(), any_llm_local::gguf::GgufError> {
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", "llama")?;
/// w.add_tensor("bias", &[4], GgmlType::F32, [0u8; 16].to_vec())?;
/// let file = GgufFile::from_bytes(w.to_bytes())?;
/// assert_eq!(file.metadata().get_str("general.architecture")?, "llama");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry. Setting `general.alignment` (a `u32` power of two) changes the
    /// alignment the tensor data is written with.
    ///
    /// # Errors
    ///
    /// [`GgufError::DuplicateKey`], or [`GgufError::BadAlignment`] for an unusable
    /// `general.alignment`.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<&mut Self> {
        let key = key.into();
        let value = value.into();
        if key == "general.alignment"
            && !matches!(value, MetadataValue::U32(a) if a.is_power_of_two())
        {
            return Err(GgufError::BadAlignment {
                found: format!("{value:?}"),
            });
        }
        self.metadata.insert(key, value)?;
        Ok(self)
    }

    /// Adds a tensor with its raw data (`dims` innermost first, as GGUF stores them).
    ///
    /// # Errors
    ///
    /// [`GgufError::DuplicateTensor`], a shape error as the reader would report it, or
    /// [`GgufError::TensorSizeMismatch`] if `data` is not the size the shape and type need.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.0 == name) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        let expected = tensor_byte_len(&name, dims, ty)?;
        if data.len() != expected {
            return Err(GgufError::TensorSizeMismatch {
                tensor: name,
                ty,
                dims: dims.to_vec(),
                expected,
                found: data.len(),
            });
        }
        self.tensors.push((name, dims.to_vec(), ty, data));
        Ok(self)
    }

    fn alignment(&self) -> usize {
        match self.metadata.get("general.alignment") {
            Some(MetadataValue::U32(a)) => *a as usize,
            _ => DEFAULT_ALIGNMENT as usize,
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            put_str(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + data.len()).next_multiple_of(align);
        }
        for (_, _, _, data) in &self.tensors {
            out.resize(out.len().next_multiple_of(align), 0);
            out.extend_from_slice(data);
        }
        out
    }

    /// Writes the file to `w`.
    ///
    /// # Errors
    ///
    /// The writer's I/O error.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        w.write_all(&self.to_bytes())
    }

    /// Writes the file to `path`.
    ///
    /// # Errors
    ///
    /// [`GgufError::Io`].
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetadataValue) {
    match v {
        MetadataValue::U8(x) => out.push(*x),
        MetadataValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetadataValue::Bool(x) => out.push(u8::from(*x)),
        MetadataValue::String(s) => put_str(out, s),
        MetadataValue::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &MetadataArray) {
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetadataArray::U8(v) => out.extend_from_slice(v),
        MetadataArray::I8(v) => le!(v),
        MetadataArray::U16(v) => le!(v),
        MetadataArray::I16(v) => le!(v),
        MetadataArray::U32(v) => le!(v),
        MetadataArray::I32(v) => le!(v),
        MetadataArray::U64(v) => le!(v),
        MetadataArray::I64(v) => le!(v),
        MetadataArray::F32(v) => le!(v),
        MetadataArray::F64(v) => le!(v),
        MetadataArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetadataArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetadataArray::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
    }
}
