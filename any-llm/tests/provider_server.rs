//! Our `openai` provider against our own OpenAI-compatible server, over real HTTP on
//! loopback: the two halves of the wire format meet. The real default model answers chat,
//! JSON Schema, forced tool calls and embeddings; errors come back as the typed kinds.

mod support;

use any_core::{
    ChatRequest, ChatServiceExt, EmbedRequest, Error, FinishReason, Message, ResponseFormat,
    ToolChoice, ToolSpec,
};
use any_llm::Provider;
use any_llm::server::Server;
use serde_json::json;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// A server with the real model on a free port, and the base URL to reach it; the server
/// stops when the sender is dropped.
async fn start(api_key: Option<&str>) -> (String, oneshot::Sender<()>) {
    let model = support::shared_model().clone();
    let mut builder = Server::builder()
        .chat(model.clone())
        .embeddings(model)
        .models(["local"]);
    if let Some(key) = api_key {
        builder = builder.api_key(key);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(builder.build().serve(listener, async {
        stopped.await.ok();
    }));
    (format!("http://{addr}/v1"), stop)
}

fn provider(base: &str) -> Provider {
    Provider::named("openai")
        .expect("a known provider")
        .base_url(base)
        .api_key("sk-test")
}

#[tokio::test]
async fn chat_streaming_and_whole_agree_through_provider_and_server() {
    let (base, _stop) = start(Some("sk-test")).await;
    let svc = provider(&base).model("local").expect("a service");
    let request = ChatRequest::builder()
        .message(Message::user("What is the capital of Japan?"))
        .temperature(0.0)
        .max_tokens(12)
        .build();
    let whole = svc.clone().chat(request.clone()).await.expect("an answer");
    assert!(whole.text().contains("Tokyo"), "{}", whole.text());
    assert!(whole.usage.is_some_and(|u| u.prompt_tokens > 0));

    // The same request streamed arrives in several chunks that add up to the same answer.
    let stream = svc.stream(request).await.expect("a stream");
    let streamed = stream.collect_response().await.expect("collects");
    assert_eq!(streamed.text(), whole.text());
    assert_eq!(streamed.finish_reason, whole.finish_reason);
}

#[tokio::test]
async fn json_schema_and_forced_tool_calls_cross_the_wire() {
    let (base, _stop) = start(None).await;
    let svc = provider(&base).model("local").expect("a service");
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": false
    });
    let request = ChatRequest::builder()
        .message(Message::user("Which city is the capital of Japan?"))
        .max_tokens(48)
        .response_format(ResponseFormat::JsonSchema {
            name: "city".into(),
            schema: schema.clone(),
            strict: true,
        })
        .build();
    let answer = svc.clone().chat(request).await.expect("an answer");
    let value: serde_json::Value = serde_json::from_str(answer.text()).expect("JSON");
    let compiled = any_core::schema::Schema::compile(&schema).expect("compiles");
    assert!(compiled.is_valid(&value), "{value}");

    let weather = ToolSpec::new(
        "weather",
        "The weather in a city",
        json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
               "required": ["city"], "additionalProperties": false}),
    );
    let request = ChatRequest::builder()
        .message(Message::user("What is the weather in Oslo?"))
        .tool(weather)
        .tool_choice(ToolChoice::Required)
        .max_tokens(48)
        .build();
    let answer = svc.chat(request).await.expect("an answer");
    assert_eq!(answer.finish_reason, Some(FinishReason::ToolCalls));
    let call = &answer.message.tool_calls[0];
    assert_eq!(call.name, "weather");
    let args: serde_json::Value = serde_json::from_str(&call.arguments).expect("JSON arguments");
    assert!(args["city"].is_string(), "{args}");
}

#[tokio::test]
async fn embeddings_cross_the_wire_unchanged() {
    let (base, _stop) = start(None).await;
    let embed = provider(&base).embedder("local").expect("an embedder");
    let texts = vec!["a cat sat".to_owned(), "the stock market fell".to_owned()];
    let remote = embed
        .oneshot(EmbedRequest::new(texts.clone()))
        .await
        .expect("embeddings");
    let direct = support::shared_model()
        .clone()
        .oneshot(EmbedRequest::new(texts))
        .await
        .expect("embeddings");
    assert_eq!(remote.embeddings.len(), 2);
    for (r, d) in remote.embeddings.iter().zip(&direct.embeddings) {
        assert_eq!(r, d, "f32 values survive the JSON round trip exactly");
    }
}

#[tokio::test]
async fn server_errors_arrive_as_typed_errors() {
    let (base, _stop) = start(Some("sk-right")).await;
    let request = ChatRequest::builder().message(Message::user("hi")).build();

    let wrong_key = Provider::named("openai")
        .unwrap()
        .base_url(&base)
        .api_key("sk-wrong")
        .model("local")
        .unwrap();
    let err = wrong_key.chat(request.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err:?}");

    let unknown = provider(&base).api_key("sk-right").model("gpt-9").unwrap();
    let err = unknown.chat(request).await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound(_)), "{err:?}");
    assert!(err.to_string().contains("gpt-9"), "{err}");

    let long = "word ".repeat(20_000);
    let svc = provider(&base).api_key("sk-right").model("local").unwrap();
    let err = svc
        .chat(ChatRequest::builder().message(Message::user(long)).build())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ContextLengthExceeded { .. }),
        "{err:?}"
    );
}
