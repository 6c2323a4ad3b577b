//! The Anthropic provider against a loopback server that speaks the documented Messages
//! wire format: real HTTP on 127.0.0.1, the server checking what it receives.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use any_core::{
    ChatRequest, ChatServiceExt, Error, FinishReason, Message, ResponseFormat, ToolCall, ToolSpec,
};
use any_llm::http::HttpClient;
use any_llm::providers::Connection;
use any_llm::providers::anthropic::AnthropicChat;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// What the server received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// Splits `text` into pieces of 1, 2, 3, ... bytes, so events arrive cut everywhere.
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

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e))
        .collect()
}

fn reply(status: u16, content_type: &str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

fn error_reply(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    reply(status, "application/json", Body::from(body.to_string()))
}

async fn messages(State(log): State<Log>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).expect("the client sends JSON");
    log.lock().unwrap().push(Received {
        headers: headers.clone(),
        body: body.clone(),
    });
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("test-key") {
        return error_reply(401, "authentication_error", "invalid x-api-key");
    }
    // The scenario is chosen by the model's name.
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null,
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 8, "output_tokens": 1}}});
    match model.as_str() {
        "whole" => {
            let message = json!({"id": "msg_2", "type": "message", "role": "assistant",
                "model": "whole", "content": [{"type": "text", "text": "Bonjour !"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 9, "output_tokens": 3}});
            reply(200, "application/json", Body::from(message.to_string()))
        }
        "tools" => reply(
            200,
            "text/event-stream",
            ragged(sse(&[
                start,
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "ping"}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking — "}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "météo."}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":\"Nice\"}"}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Lyon\"}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
                json!({"type": "message_stop"}),
            ])),
        ),
        "format" => {
            let tool = body["tool_choice"]["name"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            reply(
                200,
                "text/event-stream",
                ragged(sse(&[
                    start,
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_f", "name": tool, "input": {}}}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"answer\": "}}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "42}"}}),
                    json!({"type": "content_block_stop", "index": 0}),
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
                    json!({"type": "message_stop"}),
                ])),
            )
        }
        "overloaded" => error_reply(529, "overloaded_error", "Overloaded"),
        "limited" => {
            let mut r = error_reply(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            );
            r.headers_mut().insert("retry-after", "7".parse().unwrap());
            r
        }
        "too-long" => error_reply(
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        "missing" => error_reply(404, "not_found_error", "model: missing"),
        "mid-stream-error" => reply(
            200,
            "text/event-stream",
            ragged(sse(&[
                start,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ])),
        ),
        "truncated" => reply(
            200,
            "text/event-stream",
            ragged(sse(&[
                start,
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "half an"}}),
            ])),
        ),
        "garbage" => reply(
            200,
            "application/json",
            Body::from("<html>proxy error</html>"),
        ),
        other => error_reply(
            400,
            "invalid_request_error",
            &format!("unknown test model {other}"),
        ),
    }
}

/// A loopback Messages server; returns its base URL and the log of what it received.
async fn server() -> (String, Log) {
    let log = Log::default();
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(messages))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn claude(base: &str, model: &str) -> AnthropicChat {
    let connection = Connection::new(
        "anthropic",
        base,
        Some("test-key".into()),
        HttpClient::shared().unwrap(),
    );
    AnthropicChat::new(connection, model).unwrap()
}

#[tokio::test]
async fn sends_the_documented_request_shape() {
    let (base, log) = server().await;
    let request = ChatRequest::builder()
        .system("You are terse.")
        .user("Weather in Lyon and Nice?")
        .tool(ToolSpec::new(
            "weather",
            "Current weather",
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        ))
        .temperature(0.2)
        .top_k(40)
        .stop("###")
        .build();
    claude(&base, "tools").chat(request).await.unwrap();
    let received = log.lock().unwrap()[0].clone();
    assert_eq!(received.headers["anthropic-version"], "2023-06-01");
    assert_eq!(received.headers["content-type"], "application/json");
    let b = &received.body;
    assert_eq!(b["model"], "tools");
    assert_eq!(b["max_tokens"], 4096);
    assert_eq!(b["stream"], true);
    assert_eq!(b["system"], "You are terse.");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Weather in Lyon and Nice?"}]}])
    );
    assert_eq!(b["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(b["tool_choice"], json!({"type": "auto"}));
    assert_eq!(b["stop_sequences"], json!(["###"]));
    assert_eq!(b["top_k"], 40);
    assert!((b["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
}

#[tokio::test]
async fn streams_text_and_interleaved_tool_calls() {
    let (base, _) = server().await;
    let model = claude(&base, "tools");
    let response = model.chat("weather?").await.unwrap();
    assert_eq!(response.text(), "Checking — météo.");
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0],
        ToolCall::new("toolu_a", "weather", r#"{"city":"Lyon"}"#)
    );
    assert_eq!(
        calls[1],
        ToolCall::new("toolu_b", "weather", r#"{"city":"Nice"}"#)
    );
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    let usage = response.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (20, 30));
    assert_eq!(usage.cached_prompt_tokens, Some(8));
    assert_eq!(response.model.as_deref(), Some("tools"));

    // The tool results go back as tool_result blocks of one user turn.
    let (base, log) = server().await;
    let followup = ChatRequest::new(vec![
        Message::user("weather?"),
        Message::assistant_tool_calls(calls.to_vec()),
        Message::tool("toolu_a", "12°C"),
        Message::tool("toolu_b", "18°C"),
    ]);
    claude(&base, "whole").chat(followup).await.unwrap();
    let body = log.lock().unwrap()[0].body.clone();
    assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["messages"][1]["content"][1]["input"],
        json!({"city": "Nice"})
    );
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_a", "content": "12°C"})
    );
}

#[tokio::test]
async fn whole_answers_when_not_streaming() {
    let (base, log) = server().await;
    let model = claude(&base, "whole")
        .streaming(false)
        .default_max_tokens(100);
    let response = model.chat("Say hello in French").await.unwrap();
    assert_eq!(response.text(), "Bonjour !");
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    assert_eq!(response.usage.unwrap().total_tokens(), 12);
    let body = log.lock().unwrap()[0].body.clone();
    assert_eq!(body["max_tokens"], 100);
    assert!(body.get("stream").is_none());
}

#[tokio::test]
async fn json_schema_output_through_the_forced_tool() {
    let (base, log) = server().await;
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]});
    let request = ChatRequest::builder()
        .user("6 times 7?")
        .response_format(ResponseFormat::JsonSchema {
            name: "Answer".into(),
            schema: schema.clone(),
            strict: true,
        })
        .build();
    let response = claude(&base, "format").chat(request).await.unwrap();
    let parsed: Value = serde_json::from_str(response.text()).unwrap();
    assert_eq!(parsed, json!({"answer": 42}));
    assert!(response.tool_calls().is_empty());
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
    let body = log.lock().unwrap()[0].body.clone();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "Answer"})
    );
    assert_eq!(body["tools"][0]["input_schema"], schema);
}

#[tokio::test]
async fn http_errors_become_typed_errors() {
    let (base, _) = server().await;
    let err = claude(&base, "overloaded").chat("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Provider { status: Some(529), message, .. } if message == "Overloaded")
    );
    assert!(err.is_retryable());
    let err = claude(&base, "limited").chat("x").await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("per-minute rate limit"));
    let err = claude(&base, "too-long").chat("x").await.unwrap_err();
    assert!(matches!(
        err,
        Error::ContextLengthExceeded {
            requested: Some(210000),
            limit: Some(200000),
            ..
        }
    ));
    let err = claude(&base, "missing").chat("x").await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound(m) if m.contains("missing")));
    let connection = Connection::new(
        "anthropic",
        &base,
        Some("wrong".into()),
        HttpClient::shared().unwrap(),
    );
    let err = AnthropicChat::new(connection, "whole")
        .unwrap()
        .chat("x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authentication(m) if m.contains("invalid x-api-key")));
    let connection = Connection::new("anthropic", &base, None, HttpClient::shared().unwrap());
    let err = AnthropicChat::new(connection, "whole").unwrap_err();
    assert!(matches!(err, Error::Authentication(m) if m.contains("ANTHROPIC_API_KEY")));
}

#[tokio::test]
async fn broken_answers_are_errors_that_say_what_was_wrong() {
    let (base, _) = server().await;
    let err = claude(&base, "mid-stream-error")
        .chat("x")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Provider {
            status: Some(529),
            ..
        }
    ));
    // A stream cut before message_stop is not taken for a whole answer.
    let mut stream = claude(&base, "truncated").stream("x").await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap().model.as_deref(),
        Some("truncated")
    );
    assert_eq!(stream.next().await.unwrap().unwrap().text, "half an");
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("before message_stop") && err.is_retryable(),
        "{err}"
    );
    assert!(stream.next().await.is_none());
    let err = claude(&base, "garbage").chat("x").await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(m) if m.contains("<html>proxy error</html>")));
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_io_error() {
    // Bind and drop a listener: its port is (for the moment) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = claude(&format!("http://127.0.0.1:{port}"), "whole")
        .chat("x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    assert!(err.is_retryable());
}
