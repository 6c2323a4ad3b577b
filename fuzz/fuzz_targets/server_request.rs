//! Arbitrary request bodies to the OpenAI-compatible server's routes, in process through its
//! real router (body limits, JSON decoding, validation, model resolution): every answer is
//! a success or a 4xx with an OpenAI error body, never a 5xx or a panic. The chat service
//! behind it prepares the request as the local backend does before generating (the prompt
//! through the default model's template and tokenizer, the grammar of a JSON schema or of
//! tool calls), then echoes the last message instead of running the model.
#![no_main]

use std::sync::OnceLock;

use any_core::{ChatChunk, ChatRequest, ChatStream, EmbedRequest, EmbedResponse, Error};
use any_core::{ResponseFormat, ToolChoice};
use any_llm::server::Server;
use any_suite_fuzz::{grammar, model};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// The preparation of a request the local backend makes: errors are its answers.
fn prepare(req: &ChatRequest) -> Result<String, Error> {
    model().encode_prompt(req)?;
    if let ResponseFormat::JsonSchema { schema, .. } = &req.response_format {
        grammar().json_schema(schema)?;
    }
    if !req.tools.is_empty() && !matches!(req.tool_choice, Some(ToolChoice::None)) {
        grammar().tool_call_or_text(&req.tools)?;
    }
    Ok(req
        .messages
        .last()
        .map(|m| m.content.text().into_owned())
        .unwrap_or_default())
}

fn router() -> &'static axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let chat = tower::service_fn(|req: ChatRequest| async move {
            let text = prepare(&req)?;
            Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk {
                text,
                finish_reason: Some(any_core::FinishReason::Stop),
                ..Default::default()
            }]))
        });
        let embed = tower::service_fn(|req: EmbedRequest| async move {
            Ok::<_, Error>(EmbedResponse {
                embeddings: req.inputs.iter().map(|_| vec![0.0; 4]).collect(),
                ..Default::default()
            })
        });
        Server::builder()
            .chat(chat)
            .embeddings(embed)
            .max_body_bytes(64 << 10)
            .build()
            .into_router()
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let path = if route & 1 == 0 {
        "/v1/chat/completions"
    } else {
        "/v1/embeddings"
    };
    let content_type = if route & 2 == 0 {
        "application/json"
    } else {
        "application/json; charset=utf-8"
    };
    let request = http::Request::post(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap_or_else(|e| panic!("request: {e}"));
    let (status, body) = runtime().block_on(async {
        let response = router()
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, body)
    });
    let body = body.unwrap_or_else(|e| panic!("{status}: the body could not be read: {e}"));
    assert!(
        !status.is_server_error(),
        "{status} for {:?}: {}",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&body)
    );
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status}: an error body that is not JSON ({e})"));
        assert!(error["error"]["message"].is_string(), "{status}: {error}");
    }
});
