//! The agent's spans exported through OpenTelemetry (feature `otel`).
//!
//! Every run emits `tracing` spans named after the OpenTelemetry GenAI semantic conventions:
//! `invoke_agent {name}` around the run, a `chat {model}` child for each model call (span
//! kind client) and an `execute_tool {tool}` child for each tool call (status error when it
//! failed), with their `gen_ai.*` attributes. [`layer`] turns them into OpenTelemetry spans
//! for any tracer provider: the caller chooses the exporter (OTLP over HTTP or gRPC, stdout,
//! a vendor's) and its batching; this crate only depends on the OpenTelemetry API and
//! `tracing-opentelemetry`. They are OpenTelemetry 0.33 and `tracing-opentelemetry` 0.34:
//! take the provider from `opentelemetry_sdk` 0.33, and an exporter of the same release.
//!
//! ```
//! use any_agent::Agent;
//! use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_core::Result<()> {
//! // Any exporter: `opentelemetry_otlp::SpanExporter` in a service, an in-memory one here.
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder()
//!     .with_simple_exporter(exporter.clone())
//!     .build();
//! let subscriber = tracing_subscriber::registry().with(any_agent::otel::layer(&provider));
//! tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
//!
//! let model = tower::service_fn(|_req: ChatRequest| async move {
//!     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text("Hello.")]))
//! });
//! let agent = Agent::builder(model).name("greeter").build()?;
//! agent.complete("Say hello.").await?;
//!
//! let spans = exporter.get_finished_spans().expect("the exporter is alive");
//! assert!(spans.iter().any(|s| s.name == "invoke_agent greeter"));
//! # Ok(())
//! # }
//! ```

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{Tracer, TracerProvider};
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// A `tracing` layer that exports this crate's spans (`invoke_agent`, `chat`,
/// `execute_tool`) as OpenTelemetry spans through a tracer of `provider`, with the
/// instrumentation scope `any-agent` and this crate's version.
///
/// Only the agent's spans pass (the crate's `tracing` target, at INFO and above); the spans
/// carry their `gen_ai.*` attributes and no others (no source locations, thread ids or
/// busy/idle times). Spans of your own, or of the model and tool code, need a
/// `tracing_opentelemetry` layer of their own. Add the layer to a
/// [`tracing_subscriber::Registry`] (or any subscriber with span lookup), and keep the
/// provider alive and shut it down at exit, so that batched spans are flushed.
pub fn layer<S, P>(provider: &P) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    P: TracerProvider,
    P::Tracer: Tracer + Send + Sync + 'static,
    <P::Tracer as Tracer>::Span: Send + Sync,
{
    let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    OpenTelemetryLayer::new(provider.tracer_with_scope(scope))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(Targets::new().with_target("any_agent", Level::INFO))
}
