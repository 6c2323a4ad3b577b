//! What can go wrong reading or writing a GGUF file.

use std::path::PathBuf;

use crate::quant::GgmlType;

/// A `Result` whose error is [`GgufError`].
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// Why a GGUF file could not be read or written, or a metadata value not used as asked.
///
/// Every message names what it was reading and what it expected and found, so a user with a
/// broken file can tell which part is broken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, mapped or written.
    #[error("GGUF file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path names a directory, a device, a FIFO or a socket: nothing a model is read
    /// from (and a FIFO would block the open until a writer came).
    #[error("GGUF file {}: {found}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead: `a directory`, `a FIFO`, `a device`, ...
        found: &'static str,
    },
    /// The file does not start with `GGUF`.
    #[error(
        "not a GGUF file: expected magic bytes 47 47 55 46 (\"GGUF\"), found {}",
        hex(found)
    )]
    BadMagic {
        /// The first (up to four) bytes of the file.
        found: Vec<u8>,
    },
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {found}: this reader supports versions 2 and 3")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The file ends in the middle of something.
    #[error(
        "GGUF file truncated: reading {what} at offset {offset} needs {needed} bytes, \
         the file has {file_size}"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file's length.
        file_size: u64,
    },
    /// A count cannot be right: the rest of the file is too short to hold that many items.
    #[error(
        "GGUF {what}: count {count} is impossible, the {remaining} bytes left at offset \
         {offset} hold at most {max}"
    )]
    AbsurdCount {
        /// What was being counted.
        what: String,
        /// The count in the file.
        count: u64,
        /// The largest count the remaining bytes could hold.
        max: u64,
        /// Bytes left in the file.
        remaining: u64,
        /// Where the items start.
        offset: u64,
    },
    /// A string is not UTF-8.
    #[error("GGUF {what} at offset {offset}: expected a UTF-8 string, found invalid bytes")]
    InvalidUtf8 {
        /// What the string is.
        what: String,
        /// Where its bytes start.
        offset: u64,
    },
    /// A metadata value has a type number GGUF does not define.
    #[error("GGUF metadata key {key}: unknown value type {found} (expected 0..=12)")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type number.
        found: u32,
    },
    /// A bool byte other than 0 or 1.
    #[error("GGUF metadata key {key}: expected a bool byte 0 or 1, found {found}")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte.
        found: u8,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_NESTING`](super::MAX_ARRAY_NESTING).
    #[error("GGUF metadata key {key}: arrays nested deeper than {max} levels")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },
    /// Two metadata entries with one key.
    #[error("GGUF metadata key {key} appears more than once")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// Two tensors with one name.
    #[error("GGUF tensor {tensor} appears more than once")]
    DuplicateTensor {
        /// The tensor.
        tensor: String,
    },
    /// A tensor type number that ggml does not define.
    #[error("GGUF tensor {tensor}: unknown ggml type {id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type number.
        id: u32,
    },
    /// More dimensions than ggml allows.
    #[error("GGUF tensor {tensor}: expected at most 4 dimensions, found {found}")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The number of dimensions.
        found: u32,
    },
    /// The shape does not fit the type's blocks.
    #[error(
        "GGUF tensor {tensor}: type {ty} packs {block_size} values per block, so the first \
         dimension must be a multiple of {block_size}; found dims {dims:?}"
    )]
    ShapeMismatch {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// The type's block size.
        block_size: usize,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// The tensor's byte size does not fit in memory arithmetic.
    #[error("GGUF tensor {tensor}: dims {dims:?} of type {ty} give a byte size that overflows")]
    SizeOverflow {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// Its dimensions.
        dims: Vec<u64>,
    },
    /// A tensor's data offset is not aligned.
    #[error(
        "GGUF tensor {tensor}: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor.
        tensor: String,
        /// Its offset within the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's data lies (partly) past the end of the file.
    #[error(
        "GGUF tensor {tensor}: data bytes {start}..{end} lie outside the file ({file_size} bytes)"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// First byte, from the start of the file.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The file's length.
        file_size: u64,
    },
    /// `general.alignment` is not a positive power of two.
    #[error("GGUF metadata key general.alignment: expected a power of two, found {found}")]
    BadAlignment {
        /// What the file says.
        found: String,
    },
    /// A required metadata key is absent.
    #[error("GGUF metadata key {key} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value is not of the type asked for.
    #[error("GGUF metadata key {key}: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// Data handed to [`GgufWriter::add_tensor`](super::GgufWriter::add_tensor) is not the
    /// size its shape and type need.
    #[error(
        "GGUF tensor {tensor}: dims {dims:?} of type {ty} need {expected} bytes, found {found}"
    )]
    TensorSizeMismatch {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
        /// Its dimensions.
        dims: Vec<u64>,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "an empty file".to_owned();
    }
    let mut s = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The typed error stays reachable as the [`any_core::Error::Model`]'s
/// [`source`](std::error::Error::source), so a caller can downcast to it.
impl From<GgufError> for any_core::Error {
    fn from(err: GgufError) -> Self {
        any_core::Error::model_with_source(err.to_string(), err)
    }
}
