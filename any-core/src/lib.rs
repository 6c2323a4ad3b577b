//! The vocabulary of any-suite.
//!
//! any-suite is a family of small crates for owning your AI stack: a model, guardrails,
//! memory, evaluation and agents, each defined by one trait and composed as `tower` layers
//! over any model — a hosted API, a self-hosted server, or the built-in local backend.
//!
//! | crate | what it holds |
//! |---|---|
//! | `any-core` (this one) | requests, streamed responses, errors, the [`ChatService`] shape |
//! | `any-llm` | providers and the local GGUF backend |
//! | `any-guard` | guardrails and the guard layer |
//! | `any-memory` | memory stores and the memory layer |
//! | `any-eval` | datasets, metrics, runners, reports |
//! | `any-agent` | tools and the agent loop |
//!
//! Everything speaks the types of this crate. A model is a [`ChatService`]: a
//! `tower::Service<ChatRequest, Response = ChatStream, Error = Error>`. Every service streams;
//! [`ChatServiceExt::chat`] collects the stream into a [`ChatResponse`] with the one
//! [`Accumulator`] of the family. [`ChatServiceExt::chat_typed`] asks for a Rust type and
//! returns one, checked against its JSON Schema by the [`schema`] module.
//!
//! Feature flags: `schema` (default) — JSON Schema validation ([`Schema`], `chat_typed`), on
//! the `jsonschema` crate. An adapter author who only implements [`ChatService`] can turn it
//! off (`default-features = false`) and compile little more than tower, serde and futures.
//!
//! ```
//! use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_core::Result<()> {
//! // Any function from request to stream is a chat service.
//! let model = tower::service_fn(|req: ChatRequest| async move {
//!     let n = req.messages.len();
//!     Ok::<_, Error>(ChatStream::from_chunks(vec![
//!         ChatChunk::text(format!("{n} message(s)")),
//!         ChatChunk::finish(FinishReason::Stop, None),
//!     ]))
//! });
//! let request = ChatRequest::builder().system("Be brief.").user("Hi!").build();
//! let response = model.chat(request).await?;
//! assert_eq!(response.text(), "2 message(s)");
//! assert_eq!(response.finish_reason, Some(FinishReason::Stop));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod embed;
mod error;
mod message;
mod request;
mod response;
pub mod schema;
mod service;
mod stream;
mod tool;
mod verdict;

pub use embed::{EmbedRequest, EmbedResponse, cosine_similarity};
pub use error::{BoxError, Error, Result};
pub use message::{Content, ContentPart, Message, Role, ToolCall};
pub use request::{
    ChatRequest, ChatRequestBuilder, MAX_STOP_BYTES, MAX_STOP_SEQUENCES, ResponseFormat, Sampling,
    SessionId, UserId,
};
pub use response::{
    Accumulator, ChatChunk, ChatResponse, FinishReason, TokenLogprob, ToolCallDelta, TopLogprob,
    Usage,
};
#[cfg(feature = "schema")]
pub use schema::Schema;
pub use schema::Violation;
pub use service::{
    BoxChatService, BoxEmbedService, ChatFuture, ChatService, ChatServiceExt, EmbedService,
    EmbedServiceExt,
};
pub use stream::{BoxedChunks, ChatStream};
pub use tool::{ToolChoice, ToolSpec, schema_value};
pub use verdict::{Span, Verdict};

/// Typed values that travel with requests and responses (`http::Extensions`).
pub use http::Extensions;

// The README's code is compiled and run with this crate's doc tests, so it cannot rot
// (`scripts/test` checks that the repository's README shows the same code).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
