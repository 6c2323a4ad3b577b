//! Quantized block formats: the ggml type table, dequantization, activation quantization and
//! dot products, as scalar reference code.
//!
//! Everything here works on rows of raw bytes exactly as they sit in a GGUF file. The SIMD
//! kernels elsewhere in the backend reuse the block layouts defined here and are tested against
//! these scalar functions.

mod types;

pub use types::GgmlType;
