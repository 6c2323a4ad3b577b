//! Model access for any-suite.
//!
//! `any-llm` is where models live. Every model is a [`ChatService`](any_core::ChatService): a
//! `tower::Service` that takes an [`any_core::ChatRequest`] and streams back
//! [`any_core::ChatChunk`]s, so the guardrail, memory, evaluation and agent layers of the
//! family compose over it unchanged.
//!
//! The [`local`] module is the reference backend: it reads quantized GGUF files and runs them on
//! the CPU with its own kernels — no C/C++ toolchain, no key, no network.
//!
//! [`wire`] holds the wire formats (the OpenAI Chat Completions format, always compiled),
//! shared by the client providers and the server.
//!
//! Feature flags:
//! - `server`: `server`, an OpenAI-compatible HTTP server (axum) for any chat service.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code)]

#[cfg(feature = "http")]
pub mod http;
pub mod local;
pub mod providers;
mod registry;
pub mod resilience;
#[cfg(feature = "server")]
pub mod server;
pub mod sse;
pub mod wire;

pub use registry::{
    Capabilities, Protocol, Provider, ProviderInfo, embedder, model, parse_model_id, providers,
};
