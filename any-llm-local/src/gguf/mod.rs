//! The GGUF container: a memory-mapped reader and a small writer.
//!
//! A GGUF file is a header (magic `GGUF`, version, counts), typed metadata (`key -> value`),
//! tensor infos (name, dimensions innermost first, ggml type, offset) and, aligned to
//! `general.alignment` (default 32), the tensor data. This module reads versions 2 and 3,
//! little-endian, validating everything a corrupt file could get wrong before handing out a
//! byte of tensor data; [`GgufWriter`] writes version 3.
//!
//! ```no_run
//! use any_llm_local::gguf::GgufFile;
//! # fn main() -> Result<(), any_llm_local::gguf::GgufError> {
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let arch = file.metadata().get_str("general.architecture")?;
//! let tokens = file.metadata().get_str_array("tokenizer.ggml.tokens")?;
//! if let Some(t) = file.tensor("token_embd.weight") {
//!     println!("{arch}: {} tokens, embeddings {:?} as {}", tokens.len(), t.dims, t.ty);
//!     let _bytes: &[u8] = file.tensor_data(t);
//! }
//! # Ok(()) }
//! ```

mod error;
mod metadata;
mod parse;
mod value;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

pub use error::{GgufError, Result};
pub use metadata::Metadata;
pub use value::{MetadataArray, MetadataType, MetadataValue};
pub use writer::GgufWriter;

use crate::quant::GgmlType;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The tensor-data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor has.
pub const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest before the file is taken as corrupt.
pub const MAX_ARRAY_NESTING: usize = 16;

/// Where a tensor's data is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as GGUF stores them: a `[576, 49152]`
    /// embedding has 49 152 rows of 576 values.
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    byte_len: usize,
}

impl TensorInfo {
    fn new(name: String, dims: Vec<u64>, ty: GgmlType, offset: u64) -> Result<Self> {
        let byte_len = tensor_byte_len(&name, &dims, ty)?;
        Ok(Self {
            name,
            dims,
            ty,
            offset,
            byte_len,
        })
    }

    /// Number of values (the product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        // Bounded by the byte length check at construction, so it cannot overflow.
        self.dims.iter().product()
    }

    /// Bytes the data takes.
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }

    /// Values per row (the first dimension).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
}

/// Bytes a tensor of `dims` and `ty` takes, or the shape error the reader reports.
fn tensor_byte_len(name: &str, dims: &[u64], ty: GgmlType) -> Result<usize> {
    let first = dims.first().copied().unwrap_or(1);
    let block = ty.block_size() as u64;
    if first % block != 0 {
        return Err(GgufError::ShapeMismatch {
            tensor: name.to_owned(),
            ty,
            block_size: ty.block_size(),
            dims: dims.to_vec(),
        });
    }
    let overflow = || GgufError::SizeOverflow {
        tensor: name.to_owned(),
        ty,
        dims: dims.to_vec(),
    };
    let mut bytes = (first / block)
        .checked_mul(ty.type_size() as u64)
        .ok_or_else(overflow)?;
    let mut elements = first;
    for &d in dims.iter().skip(1) {
        bytes = bytes.checked_mul(d).ok_or_else(overflow)?;
        elements = elements.checked_mul(d).ok_or_else(overflow)?;
    }
    usize::try_from(bytes).map_err(|_| overflow())
}

#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated GGUF file: its metadata, its tensor infos and (mapped) its bytes.
///
/// Opening checks the whole header and that every tensor's data lies inside the file, so the
/// accessors afterwards cannot fail.
#[derive(Debug)]
pub struct GgufFile {
    bytes: Bytes,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl GgufFile {
    /// Maps and validates the file at `path`.
    ///
    /// The file is memory-mapped, not read: opening a model costs milliseconds and its pages
    /// load as they are touched. Like every mmap-based loader, this requires that the file is
    /// not modified or truncated while the `GgufFile` is alive.
    ///
    /// # Errors
    ///
    /// [`GgufError::Io`] if the file cannot be opened or mapped, or the error describing what
    /// is wrong with its contents.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        // Checked before opening: opening a FIFO blocks until something writes to it.
        let kind = std::fs::metadata(path).map_err(io)?.file_type();
        if !kind.is_file() {
            return Err(GgufError::NotAFile {
                path: path.to_owned(),
                found: file_kind(kind),
            });
        }
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // Mapping an empty file fails on some platforms; it is not GGUF either way.
        if len == 0 {
            return Self::from_bytes(Vec::new());
        }
        let map = map_file(&file).map_err(io)?;
        Self::build(Bytes::Mapped(map))
    }

    /// Validates a GGUF file held in memory.
    ///
    /// # Errors
    ///
    /// The error describing what is wrong with the contents.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::build(Bytes::Owned(bytes))
    }

    fn build(bytes: Bytes) -> Result<Self> {
        let p = parse::parse(bytes.as_slice())?;
        let by_name = p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            bytes,
            version: p.version,
            metadata: p.metadata,
            tensors: p.tensors,
            by_name,
            alignment: p.alignment,
            data_offset: p.data_offset,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor data alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The raw data of `t`, which must come from this file's [`tensors`](Self::tensors).
    ///
    /// # Panics
    ///
    /// If `t` describes data outside this file (a `TensorInfo` from another file).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        // Opening checked these bounds for every tensor of this file without overflow.
        let start = (self.data_offset + t.offset) as usize;
        self.as_bytes()
            .get(start..start + t.byte_len)
            .expect("TensorInfo passed to tensor_data belongs to this GgufFile")
    }
}

impl GgufFile {
    /// Tells the kernel that `t`'s pages of a mapped file are not needed now (the caller keeps
    /// its own copy), so they leave the process's resident memory; reading them again loads
    /// them again from the file. Nothing for a file read into memory.
    #[allow(unsafe_code)]
    pub(crate) fn release_pages(&self, t: &TensorInfo) {
        if let Bytes::Mapped(m) = &self.bytes {
            let start = (self.data_offset + t.offset) as usize;
            // SAFETY: the map is private and read-only, so dropping its pages loses nothing:
            // a later read faults the file's unchanged bytes back in. memmap2 widens the
            // range to whole pages. An error only means the pages stay resident.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, t.byte_len)
            };
        }
    }
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and lives inside the `GgufFile` that owns it. Changing or
    // truncating a model file while it is open is undefined behaviour for every mmap-based
    // loader; like llama.cpp we document that model files must not be modified while in use.
    unsafe { Mmap::map(file) }
}

/// What a path that is not a regular file is, for the error naming it.
fn file_kind(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "something other than a file"
    }
}
