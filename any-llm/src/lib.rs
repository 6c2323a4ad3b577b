//! Model access for any-suite.
//!
//! `any-llm` is where models live. Every model is a [`ChatService`](any_core::ChatService): a
//! `tower::Service` that takes an [`any_core::ChatRequest`] and streams back
//! [`any_core::ChatChunk`]s, so the guardrail, memory, evaluation and agent layers of the
//! family compose over it unchanged.
//!
//! The `local` module is the reference backend, the [`any-llm-local`](any_llm_local) crate
//! re-exported: it reads quantized GGUF files and runs them on the CPU with its own kernels —
//! no C/C++ toolchain, no key, no network.
//!
//! [`wire`] holds the wire formats (the OpenAI Chat Completions format and its error mapping,
//! always compiled), shared by the client providers and the server.
//!
//! Feature flags:
//! - `local` (default): the `local` provider and [`local`], the GGUF backend. Without it
//!   neither the engine, nor its grammar engine (llguidance), nor minijinja is compiled.
//! - `http` (default): the `openai` and `anthropic` providers over reqwest with rustls.
//! - `http2`: HTTP/2 for those providers (negotiated by ALPN).
//! - `server`: `server`, an OpenAI-compatible HTTP server (axum) for any chat service.
#![forbid(unsafe_code)]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "local")]
#[doc(inline)]
pub use any_llm_local as local;
pub mod providers;
mod registry;
pub mod resilience;
#[cfg(feature = "server")]
pub mod server;
pub mod wire;

pub use registry::{
    Capabilities, Protocol, Provider, ProviderInfo, embedder, model, parse_model_id, providers,
};
