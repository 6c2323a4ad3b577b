//! The agent's spans exported through OpenTelemetry (feature `otel`) to the SDK's in-memory
//! exporter: names, parents and GenAI attributes as a collector receives them.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// The span named `name`, which must be the only one.
fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let mut found = spans.iter().filter(|s| s.name == name);
    let one = found.next().unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        panic!("no span `{name}` in {names:?}")
    });
    assert!(found.next().is_none(), "two spans named `{name}`");
    one
}

/// The attribute `key` of `span`, as text.
fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "current_thread")]
async fn spans_export_through_opentelemetry_with_their_genai_attributes() {
    // ANCHOR: setup
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(any_agent::otel::layer(&provider));
    let _guard = tracing::subscriber::set_default(subscriber);
    // ANCHOR_END: setup
    // A second live dispatcher, so that no other test's thread fixes these callsites'
    // interest (see `spans_follow_the_genai_conventions`).
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());

    let (model, mut handle) = scripted();
    let broken = tool_fn("broken", "Always fails.", |_l: Label| async move {
        Err::<String, _>(ToolError::failed("out of order"))
    });
    let agent = Agent::builder(model)
        .name("calc")
        .tool(add_tool())
        .tool(broken)
        .build()
        .unwrap();
    let mut stream = agent.stream("Add 1 and 2.").await.unwrap();
    let play = async {
        let turn = calls(&[
            ("c9", "add", r#"{"a": 1, "b": 2}"#),
            ("c10", "broken", r#"{"label": "x"}"#),
        ]);
        reply(&mut handle, turn).await;
        reply(&mut handle, answer(&["3"])).await;
    };
    let read = async { while stream.next().await.is_some() {} };
    tokio::join!(play, read);
    drop(stream);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 5, "{spans:#?}");

    let run = span(&spans, "invoke_agent calc");
    assert_eq!(run.parent_span_id, SpanId::INVALID);
    assert_eq!(run.instrumentation_scope.name(), "any-agent");
    assert_eq!(
        attr(run, "gen_ai.operation.name").as_deref(),
        Some("invoke_agent")
    );
    assert_eq!(attr(run, "gen_ai.agent.name").as_deref(), Some("calc"));
    let trace_id = run.span_context.trace_id();
    for s in &spans {
        assert_eq!(s.span_context.trace_id(), trace_id, "{}", s.name);
        if s.name != run.name {
            assert_eq!(s.parent_span_id, run.span_context.span_id(), "{}", s.name);
        }
        // The conventions' attributes and nothing of tracing's own.
        for kv in &s.attributes {
            let key = kv.key.as_str();
            assert!(
                key.starts_with("gen_ai.") || key == "error.type",
                "{}: {key}",
                s.name
            );
        }
    }

    let chats: Vec<&SpanData> = spans.iter().filter(|s| s.name == "chat").collect();
    assert_eq!(chats.len(), 2);
    let by_usage = |input: &str| {
        chats
            .iter()
            .find(|s| attr(s, "gen_ai.usage.input_tokens").as_deref() == Some(input))
            .unwrap_or_else(|| panic!("no chat span with {input} input tokens"))
    };
    let (first, second) = (by_usage("10"), by_usage("20"));
    for (chat, output, finish) in [(first, "5", "tool_calls"), (second, "3", "stop")] {
        assert_eq!(chat.span_kind, SpanKind::Client);
        assert_eq!(attr(chat, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(
            attr(chat, "gen_ai.usage.output_tokens").as_deref(),
            Some(output)
        );
        assert_eq!(
            attr(chat, "gen_ai.response.finish_reasons").as_deref(),
            Some(finish)
        );
    }
    assert!(first.end_time <= second.start_time);

    let add = span(&spans, "execute_tool add");
    assert_eq!(add.span_kind, SpanKind::Internal);
    assert_eq!(
        attr(add, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(attr(add, "gen_ai.tool.name").as_deref(), Some("add"));
    assert_eq!(attr(add, "gen_ai.tool.call.id").as_deref(), Some("c9"));
    assert_eq!(add.status, Status::Unset);
    assert!(first.end_time <= add.start_time && add.end_time <= second.start_time);
    let broken = span(&spans, "execute_tool broken");
    assert_eq!(attr(broken, "gen_ai.tool.call.id").as_deref(), Some("c10"));
    assert_eq!(attr(broken, "error.type").as_deref(), Some("failed"));
    assert!(
        matches!(broken.status, Status::Error { .. }),
        "{:?}",
        broken.status
    );
}
