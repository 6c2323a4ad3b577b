//! Parsing the GGUF header, metadata and tensor infos from bytes.
//!
//! Every read is bounds-checked and every count is checked against the bytes left before
//! anything is allocated for it, so a corrupt file is an error, never a panic or a huge
//! allocation.

use std::collections::HashSet;

use super::error::{GgufError, Result};
use super::metadata::Metadata;
use super::value::{MetadataArray, MetadataType, MetadataValue};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_NESTING, MAX_DIMS, TensorInfo};
use crate::quant::GgmlType;

/// What the header says, before it is attached to its bytes.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) metadata: Metadata,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_size: self.buf.len() as u64,
            });
        }
        // `n <= remaining`, which is a usize, so the cast is lossless.
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what is left.
    fn check_count(&self, count: u64, min_size: u64, what: impl FnOnce() -> String) -> Result<()> {
        let max = self.remaining() / min_size.max(1);
        if count > max {
            return Err(GgufError::AbsurdCount {
                what: what(),
                count,
                max,
                remaining: self.remaining(),
                offset: self.pos as u64,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(|| format!("the length of {}", what()))?;
        let offset = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: what(),
            offset,
        })
    }
}

pub(super) fn parse(buf: &[u8]) -> Result<Parsed> {
    if buf.len() < 4 || buf[..4] != MAGIC {
        return Err(GgufError::BadMagic {
            found: buf[..buf.len().min(4)].to_vec(),
        });
    }
    let mut c = Cursor { buf, pos: 4 };
    let version = c.u32(|| "the version".into())?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { found: version });
    }
    let n_tensors = c.u64(|| "the tensor count".into())?;
    let n_kv = c.u64(|| "the metadata count".into())?;

    // A key-value pair is at least a key length, a type and one byte.
    c.check_count(n_kv, 8 + 4 + 1, || "metadata".into())?;
    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let ty = c.u32(|| format!("the value type of metadata key {key}"))?;
        let ty = MetadataType::from_id(ty).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            found: ty,
        })?;
        let value = read_value(&mut c, &key, ty)?;
        metadata.insert(key, value)?;
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(MetadataValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => {
            return Err(GgufError::BadAlignment {
                found: format!("{other:?}"),
            });
        }
    };

    // A tensor info is at least a name length, a dimension count, a type and an offset.
    c.check_count(n_tensors, 8 + 4 + 4 + 8, || "tensor infos".into())?;
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("the name of tensor #{i}"))?;
        let n_dims = c.u32(|| format!("the dimension count of tensor {name}"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                found: n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(|| format!("dimension {d} of tensor {name}"))?);
        }
        let id = c.u32(|| format!("the type of tensor {name}"))?;
        let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: name.clone(),
            id,
        })?;
        let offset = c.u64(|| format!("the data offset of tensor {name}"))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        tensors.push(TensorInfo::new(name, dims, ty, offset)?);
    }

    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    let file_size = buf.len() as u64;
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.byte_len() as u64));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_size => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_size,
                });
            }
        }
    }

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

fn read_value(c: &mut Cursor<'_>, key: &str, ty: MetadataType) -> Result<MetadataValue> {
    let what = || format!("the value of metadata key {key}");
    Ok(match ty {
        MetadataType::U8 => MetadataValue::U8(c.array::<1>(what)?[0]),
        MetadataType::I8 => MetadataValue::I8(i8::from_le_bytes(c.array(what)?)),
        MetadataType::U16 => MetadataValue::U16(u16::from_le_bytes(c.array(what)?)),
        MetadataType::I16 => MetadataValue::I16(i16::from_le_bytes(c.array(what)?)),
        MetadataType::U32 => MetadataValue::U32(u32::from_le_bytes(c.array(what)?)),
        MetadataType::I32 => MetadataValue::I32(i32::from_le_bytes(c.array(what)?)),
        MetadataType::U64 => MetadataValue::U64(u64::from_le_bytes(c.array(what)?)),
        MetadataType::I64 => MetadataValue::I64(i64::from_le_bytes(c.array(what)?)),
        MetadataType::F32 => MetadataValue::F32(f32::from_le_bytes(c.array(what)?)),
        MetadataType::F64 => MetadataValue::F64(f64::from_le_bytes(c.array(what)?)),
        MetadataType::Bool => MetadataValue::Bool(bool_byte(key, c.array::<1>(what)?[0])?),
        MetadataType::String => MetadataValue::String(c.string(&what)?),
        MetadataType::Array => MetadataValue::Array(read_array(c, key, 1)?),
    })
}

fn bool_byte(key: &str, b: u8) -> Result<bool> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(GgufError::InvalidBool {
            key: key.to_owned(),
            found,
        }),
    }
}

/// Reads `count` little-endian numbers of `N` bytes in one bounds check.
fn numbers<const N: usize, T>(
    c: &mut Cursor<'_>,
    count: u64,
    key: &str,
    from: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    let bytes = c.take(count * N as u64, || format!("the elements of array {key}"))?;
    Ok(bytes
        .chunks_exact(N)
        .map(|b| {
            let mut a = [0; N];
            a.copy_from_slice(b);
            from(a)
        })
        .collect())
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<MetadataArray> {
    if depth > MAX_ARRAY_NESTING {
        return Err(GgufError::NestingTooDeep {
            key: key.to_owned(),
            max: MAX_ARRAY_NESTING,
        });
    }
    let ty = c.u32(|| format!("the element type of array {key}"))?;
    let ty = MetadataType::from_id(ty).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        found: ty,
    })?;
    let count = c.u64(|| format!("the length of array {key}"))?;
    c.check_count(count, ty.min_size(), || {
        format!("array {key} of {}", ty.name())
    })?;
    // From here `count * min_size <= remaining`, so neither the products below nor the
    // allocations can be larger than the file.
    Ok(match ty {
        MetadataType::U8 => MetadataArray::U8(numbers(c, count, key, |[b]| b)?),
        MetadataType::I8 => MetadataArray::I8(numbers(c, count, key, i8::from_le_bytes)?),
        MetadataType::U16 => MetadataArray::U16(numbers(c, count, key, u16::from_le_bytes)?),
        MetadataType::I16 => MetadataArray::I16(numbers(c, count, key, i16::from_le_bytes)?),
        MetadataType::U32 => MetadataArray::U32(numbers(c, count, key, u32::from_le_bytes)?),
        MetadataType::I32 => MetadataArray::I32(numbers(c, count, key, i32::from_le_bytes)?),
        MetadataType::U64 => MetadataArray::U64(numbers(c, count, key, u64::from_le_bytes)?),
        MetadataType::I64 => MetadataArray::I64(numbers(c, count, key, i64::from_le_bytes)?),
        MetadataType::F32 => MetadataArray::F32(numbers(c, count, key, f32::from_le_bytes)?),
        MetadataType::F64 => MetadataArray::F64(numbers(c, count, key, f64::from_le_bytes)?),
        MetadataType::Bool => {
            let bytes = numbers(c, count, key, |[b]| b)?;
            MetadataArray::Bool(
                bytes
                    .into_iter()
                    .map(|b| bool_byte(key, b))
                    .collect::<Result<_>>()?,
            )
        }
        MetadataType::String => {
            let mut v = Vec::with_capacity(count as usize);
            for i in 0..count {
                v.push(c.string(&|| format!("element {i} of array {key}"))?);
            }
            MetadataArray::String(v)
        }
        MetadataType::Array => {
            let mut v = Vec::with_capacity(count as usize);
            for _ in 0..count {
                v.push(read_array(c, key, depth + 1)?);
            }
            MetadataArray::Array(v)
        }
    })
}
