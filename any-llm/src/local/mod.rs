//! The local backend: quantized GGUF models on the CPU.
//!
//! Modules, from the file up: [`gguf`] reads the container, [`quant`] knows the block formats,
//! [`tokenizer`] and [`template`] turn chats into token ids.

pub mod fetch;
pub mod gguf;
pub mod quant;
pub mod template;
pub mod tokenizer;
