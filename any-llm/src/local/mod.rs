//! The local backend: quantized GGUF models on the CPU.
