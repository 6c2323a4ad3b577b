//! The OpenAI-compatible provider against a loopback server replying with responses shaped
//! as the Chat Completions documentation shows them: real HTTP on 127.0.0.1, the server
//! checking what it receives.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use any_core::{
    ChatRequest, ChatServiceExt, EmbedRequest, EmbedServiceExt, Error, FinishReason,
    ResponseFormat, ToolCall, ToolSpec,
};
use any_llm::Provider;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

type Log = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// Pieces of 1 to 7 bytes, so events and UTF-8 sequences arrive cut everywhere.
fn ragged(text: String) -> Body {
    let bytes = text.into_bytes();
    let mut pieces = Vec::new();
    let (mut at, mut n) = (0, 1);
    while at < bytes.len() {
        let end = (at + n).min(bytes.len());
        pieces.push(Ok::<_, std::io::Error>(bytes[at..end].to_vec()));
        at = end;
        n = n % 7 + 1;
    }
    Body::from_stream(futures_util::stream::iter(pieces))
}

fn sse(chunks: &[Value], done: bool) -> String {
    let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if done {
        out.push_str("data: [DONE]\n\n");
    }
    out
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "system_fingerprint": "fp", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

fn reply(status: u16, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

fn error(status: u16, message: &str, kind: &str, code: Value) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    reply(status, "application/json", Body::from(body.to_string()))
}

async fn completions(State(log): State<Log>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).expect("the client sends JSON");
    log.lock().unwrap().push((headers.clone(), body.clone()));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
        return error(
            401,
            "Incorrect API key provided: sk-wr***",
            "invalid_request_error",
            json!("invalid_api_key"),
        );
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let stream =
        |chunks: &[Value], done| reply(200, "text/event-stream", ragged(sse(chunks, done)));
    match model.as_str() {
        "text" => stream(
            &[
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"content": "Bonjour, "}), Value::Null),
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": []}),
                chunk(json!({"content": "le monde 🌍"}), Value::Null),
                chunk(json!({}), json!("stop")),
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15,
                        "prompt_tokens_details": {"cached_tokens": 8}}}),
            ],
            true,
        ),
        "tools" => stream(
            &[
                chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
                    Value::Null,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
                    Value::Null,
                ),
                chunk(
                    json!({"tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\""}}]}),
                    Value::Null,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Lyon\"}"}},
                                            {"index": 1, "function": {"arguments": ": \"Oslo\"}"}}]}),
                    Value::Null,
                ),
                chunk(json!({}), json!("tool_calls")),
            ],
            true,
        ),
        // Asked to stream, answers whole: tolerated.
        "whole" => {
            let completion = json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "whole",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"answer\": 42}", "refusal": null},
                    "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}});
            reply(200, "application/json", Body::from(completion.to_string()))
        }
        "mid-error" => stream(
            &[
                chunk(json!({"content": ""}), Value::Null),
                json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": 500}}),
            ],
            false,
        ),
        "cut" => stream(&[chunk(json!({"content": "half"}), Value::Null)], false),
        "bad-json" => reply(
            200,
            "text/event-stream",
            Body::from("data: {\"choices\": [{\"delta\": \n\n"),
        ),
        "limited" => {
            let mut r = error(
                429,
                "Rate limit reached for requests",
                "requests",
                json!("rate_limit_exceeded"),
            );
            r.headers_mut()
                .insert("retry-after-ms", "1500".parse().unwrap());
            r.headers_mut().insert("retry-after", "2".parse().unwrap());
            r
        }
        "too-long" => error(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "invalid_request_error",
            json!("context_length_exceeded"),
        ),
        "gone" => error(
            404,
            "The model `gone` does not exist or you do not have access to it.",
            "invalid_request_error",
            json!("model_not_found"),
        ),
        "broken" => error(500, "internal failure", "server_error", Value::Null),
        other => error(
            400,
            &format!("unknown test model {other}"),
            "invalid_request_error",
            Value::Null,
        ),
    }
}

async fn embeddings(State(log): State<Log>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap();
    log.lock().unwrap().push((headers, body.clone()));
    let n = body["input"].as_array().map_or(0, Vec::len);
    // Indices in reverse order: the client must put them back in input order.
    let data: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [i as f32, 1.0, -0.5]}))
        .collect();
    let answer = json!({"object": "list", "data": data, "model": "embed-small",
        "usage": {"prompt_tokens": 7, "total_tokens": 7}});
    reply(200, "application/json", Body::from(answer.to_string()))
}

async fn models() -> Response {
    let list = json!({"object": "list", "data": [
        {"id": "text", "object": "model", "created": 1, "owned_by": "test"},
        {"id": "tools", "object": "model", "created": 2, "owned_by": "test", "extra": true}]});
    reply(200, "application/json", Body::from(list.to_string()))
}

async fn server() -> (String, Log) {
    let log = Log::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .route("/v1/embeddings", axum::routing::post(embeddings))
        .route("/v1/models", axum::routing::get(models))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), log)
}

fn provider(base: &str) -> Provider {
    Provider::openai().base_url(base).api_key("sk-test")
}

#[tokio::test]
async fn streams_text_with_usage_in_the_last_chunk() {
    let (base, log) = server().await;
    let model = provider(&base)
        .header("x-trace", "t-1")
        .model("text")
        .unwrap();
    let request = ChatRequest::builder()
        .system("Be brief.")
        .user("Say hello")
        .temperature(0.3)
        .max_tokens(20)
        .stop("\n\n")
        .top_k(5)
        .build();
    let response = model.chat(request).await.unwrap();
    assert_eq!(response.text(), "Bonjour, le monde 🌍");
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    let usage = response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_prompt_tokens
        ),
        (11, 4, Some(8))
    );

    let (headers, body) = log.lock().unwrap()[0].clone();
    assert_eq!(headers["x-trace"], "t-1");
    assert_eq!(body["model"], "text");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(body["max_tokens"], 20);
    assert_eq!(body["stop"], json!(["\n\n"]));
    // OpenAI itself rejects top_k: its row leaves it out.
    assert!(body.get("top_k").is_none(), "{body}");
}

#[tokio::test]
async fn parallel_tool_calls_split_across_chunks() {
    let (base, log) = server().await;
    let model = provider(&base).model("tools").unwrap();
    let request = ChatRequest::builder()
        .user("Weather in Lyon and Oslo?")
        .tool(ToolSpec::new(
            "weather",
            "Current weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        ))
        .parallel_tool_calls(true)
        .build();
    let response = model.chat(request).await.unwrap();
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        response.tool_calls(),
        [
            ToolCall::new("call_a", "weather", r#"{"city": "Lyon"}"#),
            ToolCall::new("call_b", "weather", r#"{"city": "Oslo"}"#)
        ]
    );
    let body = log.lock().unwrap()[0].1.clone();
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "weather");
    assert_eq!(body["parallel_tool_calls"], true);
}

#[tokio::test]
async fn json_schema_is_sent_and_whole_answers_are_tolerated() {
    let (base, log) = server().await;
    let model = provider(&base).model("whole").unwrap();
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]});
    let request = ChatRequest::builder()
        .user("6 x 7?")
        .response_format(ResponseFormat::JsonSchema {
            name: "Answer".into(),
            schema: schema.clone(),
            strict: true,
        })
        .build();
    let response = model.chat(request).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(response.text()).unwrap(),
        json!({"answer": 42})
    );
    assert_eq!(response.usage.unwrap().total_tokens(), 11);
    let body = log.lock().unwrap()[0].1.clone();
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "Answer");
    assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);

    let request = ChatRequest::builder()
        .user("json please")
        .response_format(ResponseFormat::Json)
        .build();
    model.chat(request).await.unwrap();
    assert_eq!(
        log.lock().unwrap()[1].1["response_format"],
        json!({"type": "json_object"})
    );
}

#[tokio::test]
async fn http_errors_become_typed_errors() {
    let (base, _) = server().await;
    let ask = |name: &'static str| {
        let base = base.clone();
        async move {
            provider(&base)
                .model(name)
                .unwrap()
                .chat("x")
                .await
                .unwrap_err()
        }
    };
    let err = ask("limited").await;
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
    let err = ask("too-long").await;
    assert!(
        matches!(
            err,
            Error::ContextLengthExceeded {
                requested: Some(9000),
                limit: Some(8192),
                ..
            }
        ),
        "{err:?}"
    );
    let err = ask("gone").await;
    assert!(matches!(err, Error::ModelNotFound(m) if m.contains("`gone` does not exist")));
    let err = ask("broken").await;
    assert!(
        matches!(&err, Error::Provider { status: Some(500), message, provider } if message == "internal failure" && provider == "openai")
    );
    assert!(err.is_retryable());
    let err = Provider::openai()
        .base_url(&base)
        .api_key("sk-wrong")
        .model("text")
        .unwrap()
        .chat("x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authentication(m) if m.contains("Incorrect API key")));
    // Without a key the server refuses: the provider does not invent one.
    let err = Provider::openai()
        .base_url(&base)
        .model("text")
        .unwrap()
        .chat("x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authentication(_)));
}

#[tokio::test]
async fn broken_streams_are_errors() {
    let (base, _) = server().await;
    let err = provider(&base)
        .model("mid-error")
        .unwrap()
        .chat("x")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Provider {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    let mut stream = provider(&base)
        .model("cut")
        .unwrap()
        .stream("x")
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().text, "half");
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("before [DONE]"), "{err}");
    let err = provider(&base)
        .model("bad-json")
        .unwrap()
        .chat("x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse(m) if m.contains("choices") && m.contains("delta")),
        "{err:?}"
    );
}

#[tokio::test]
async fn embeddings_come_back_in_input_order() {
    let (base, log) = server().await;
    let embedder = provider(&base).embedder("embed-small").unwrap();
    let vectors = embedder.embed(["first", "second", "third"]).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0][0], 0.0);
    assert_eq!(vectors[2][0], 2.0);
    let response = embedder
        .oneshot(EmbedRequest {
            dimensions: Some(3),
            ..EmbedRequest::new(["a"])
        })
        .await
        .unwrap();
    assert_eq!(response.usage.unwrap().prompt_tokens, 7);
    let body = log.lock().unwrap()[0].1.clone();
    assert_eq!(body["model"], "embed-small");
    assert_eq!(body["input"], json!(["first", "second", "third"]));
}

#[tokio::test]
async fn the_model_list_and_a_row_of_the_table() {
    let (base, log) = server().await;
    let connection = provider(&base).connection().unwrap();
    let chat = any_llm::providers::openai::OpenAiChat::new(connection, "text").unwrap();
    let list = chat.list_models().await.unwrap();
    let ids: Vec<_> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["text", "tools"]);
    // vLLM's row sends the sampling parameters OpenAI would refuse.
    let vllm = Provider::named("vllm")
        .unwrap()
        .base_url(&base)
        .api_key("sk-test")
        .model("text")
        .unwrap();
    vllm.chat(ChatRequest::builder().user("x").top_k(5).min_p(0.1).build())
        .await
        .unwrap();
    let body = log.lock().unwrap()[0].1.clone();
    assert_eq!(body["top_k"], 5);
}
