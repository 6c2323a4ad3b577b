//! Agents for any-suite: typed tools and the agent loop, itself a chat service.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`].
//!
//! - [`Tool`]: a function the model may call, with typed arguments (`Deserialize +
//!   JsonSchema`: the schema the model sees is derived, never hand-written) and typed output;
//!   [`tool_fn`] makes one from an async closure; [`DynTool`] is the type-erased form for
//!   tools known only at run time.
//! - [`Toolbox`]: tools with unique names; every call's arguments are validated against the
//!   schema, and a violation, failure, timeout or panic becomes a [`ToolError`] the model
//!   reads and can correct — never a crashed loop.
//! - [`Agent`]: model → tool calls (run concurrently, bounded) → results → model, until a
//!   final answer or a [`Limits`] limit (steps, tokens, wall time). It is a
//!   [`ChatService`](any_core::ChatService): it streams its final answer and composes with
//!   guards, memory, evaluation and the server; [`Agent::run_typed`] returns a checked Rust
//!   value; [`Agent::into_tool`] makes it another agent's tool.
//! - [`AgentTrace`]: every model and tool call with inputs, outputs, usage and durations, as
//!   JSON; `tracing` spans named after the OpenTelemetry GenAI conventions (`invoke_agent`,
//!   `chat`, `execute_tool`, with `gen_ai.*` attributes).
//! - [`Hook`]: code before and after each model call and tool call that can inspect, rewrite,
//!   refuse or stop.
//!
//! Feature flags: `mcp` — tools from MCP servers over stdio ([`mcp`]), on the official
//! Rust SDK (`rmcp`); `mcp-http` — MCP servers over streamable HTTP too; `mcp-server` —
//! tools, or a whole agent, served to MCP clients over stdio (`mcp::McpToolServer`); `otel`
//! — the spans exported through OpenTelemetry with any tracer provider and exporter
//! (`otel::layer`). Runs need a tokio runtime with its timer (tool time limits and the
//! run's wall-time limit).
//!
//! ```
//! use any_agent::{Agent, ToolError, tool_fn};
//! use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Arguments of `lookup`.
//! #[derive(Deserialize, JsonSchema)]
//! struct Lookup {
//!     /// A country.
//!     country: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_core::Result<()> {
//! // Any chat service can drive an agent; this stand-in just answers.
//! let model = tower::service_fn(|_req: ChatRequest| async move {
//!     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text("Tokyo.")]))
//! });
//! let agent = Agent::builder(model)
//!     .name("geo")
//!     .tool(tool_fn("capital", "The capital of a country.", |a: Lookup| async move {
//!         Ok::<_, ToolError>(format!("capital of {}", a.country))
//!     }))
//!     .max_steps(4)
//!     .build()?;
//! assert_eq!(agent.complete("Capital of Japan?").await?, "Tokyo.");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod agent;
mod error;
mod hook;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "otel")]
pub mod otel;
mod tool;
mod toolbox;
mod trace;

pub use agent::{Agent, AgentBuilder, AgentTask, AgentTool, Limits};
pub use error::AgentError;
pub use hook::{Flow, Hook};
pub use tool::{DynTool, FnTool, Tool, ToolError, ToolFuture, tool_fn};
pub use toolbox::{DEFAULT_TOOL_TIMEOUT, Toolbox};
pub use trace::{AgentTrace, TraceStep};
