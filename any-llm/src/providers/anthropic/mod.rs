//! Anthropic's Messages API (`POST /v1/messages`), as a [`ChatService`](any_core::ChatService).
//!
//! What maps to what:
//!
//! - **System prompt**: every system message, wherever it stands, joins the top-level
//!   `system` (separated by blank lines).
//! - **Turns**: the API wants user and assistant turns to alternate, so consecutive messages
//!   of one role are merged into one turn; tool results (role `tool`) are `tool_result`
//!   blocks of a user turn, an assistant's tool calls are `tool_use` blocks.
//! - **Tools**: [`ToolSpec`](any_core::ToolSpec)s become tools with `input_schema`;
//!   [`ToolChoice`](any_core::ToolChoice) `Auto`/`None`/`Required`/`Tool` become
//!   `auto`/`none`/`any`/`tool`; `parallel_tool_calls: false` sets
//!   `disable_parallel_tool_use`.
//! - **Sampling**: `max_tokens` is required by the API: when the request has none,
//!   [`AnthropicChat::DEFAULT_MAX_TOKENS`] (4096, within every current model's output
//!   limit) is sent. `stop`, `temperature`, `top_p` and `top_k` are sent as they are;
//!   `min_p`, `seed` and the penalties have no counterpart and are not sent (a warning is
//!   logged); asking for log-probabilities is [`Error::Unsupported`](any_core::Error).
//! - **Structured output**: the API has no JSON mode; as Anthropic documents, a
//!   `response_format` JSON Schema becomes a tool whose `input_schema` is the schema, that
//!   tool is forced, and its input comes back as the answer's text (plain JSON mode uses the
//!   schema `{"type": "object"}`). If the request also has tools of its own, the model must
//!   call one of them or the answer tool.
//! - **Answers**: text blocks are text, `tool_use` blocks are tool calls (their
//!   `input_json_delta` fragments stream as argument fragments), thinking blocks are
//!   skipped; stop reasons `end_turn`/`stop_sequence` are `Stop`, `max_tokens` is `Length`,
//!   `tool_use` is `ToolCalls`, `refusal` is `ContentFilter`; usage counts cached prompt
//!   tokens (`cache_read_input_tokens`) and adds them, with cache writes, to the prompt
//!   tokens. An `error` event mid-stream is the same error kind as the same error before it
//!   (`overloaded_error` is a retryable 529).
//!
//! ```no_run
//! use any_core::ChatServiceExt;
//!
//! # #[tokio::main] async fn main() -> any_core::Result<()> {
//! // ANTHROPIC_API_KEY from the environment; ANTHROPIC_BASE_URL if set.
//! let claude = any_llm::model("anthropic:claude-3-5-haiku-latest")?;
//! println!("{}", claude.complete("Say hello in French.").await?);
//! # Ok(()) }
//! ```

mod stream;
mod wire;

use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{ChatRequest, ChatStream, Error, Result};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};

use super::Connection;
use crate::http::{read_json, sse_events};
use stream::EventMapper;
use wire::{MessagesResponse, build_request};

/// A Claude model behind the Messages API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    connection: Connection,
    headers: HeaderMap,
    model: String,
    max_tokens: u32,
    stream: bool,
}

impl AnthropicChat {
    /// The API's address when neither an argument nor `ANTHROPIC_BASE_URL` gives one.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The `anthropic-version` header sent.
    pub const API_VERSION: &'static str = "2023-06-01";
    /// `max_tokens` when the request does not set it (the API requires one).
    pub const DEFAULT_MAX_TOKENS: u32 = 4096;

    /// `model` over `connection` (its base URL without `/v1`).
    ///
    /// # Errors
    /// [`Error::Authentication`] if the connection has no API key; [`Error::InvalidRequest`]
    /// if the key or an extra header is not a valid header value.
    pub fn new(connection: Connection, model: impl Into<String>) -> Result<Self> {
        let Some(key) = connection.api_key.as_deref() else {
            return Err(Error::Authentication(format!(
                "{}: no API key; set ANTHROPIC_API_KEY or pass one",
                connection.provider
            )));
        };
        let mut headers = connection.headers.clone();
        let mut key = HeaderValue::from_str(key)
            .map_err(|_| Error::InvalidRequest("the API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers
            .entry("anthropic-version")
            .or_insert(HeaderValue::from_static(Self::API_VERSION));
        Ok(AnthropicChat {
            inner: Arc::new(Inner {
                connection,
                headers,
                model: model.into(),
                max_tokens: Self::DEFAULT_MAX_TOKENS,
                stream: true,
            }),
        })
    }

    /// Sets the `max_tokens` sent when a request does not say.
    pub fn default_max_tokens(mut self, n: u32) -> Self {
        Arc::make_mut(&mut self.inner).max_tokens = n.max(1);
        self
    }

    /// Streams answers (the default) or asks for whole ones (still yielded as a
    /// [`ChatStream`], of one chunk).
    pub fn streaming(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.inner).stream = on;
        self
    }

    /// The model asked for when a request names none.
    pub fn model(&self) -> &str {
        &self.inner.model
    }
}

impl tower::Service<ChatRequest> for AnthropicChat {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.chat(request).await })
    }
}

impl Inner {
    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        request.validate()?;
        let (body, format_tool) =
            build_request(&self.model, self.max_tokens, &request, self.stream)?;
        let url = format!("{}/v1/messages", self.connection.base_url);
        let provider = self.connection.provider.as_str();
        let response = self
            .connection
            .client
            .post_json(provider, &url, &self.headers, &body)
            .await?;
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // A whole answer (asked for, or a server that does not stream).
            let message: MessagesResponse = read_json(provider, response).await?;
            return Ok(ChatStream::from_chunks(
                EventMapper::new(format_tool).response(message),
            ));
        }
        let events = sse_events(provider, response).boxed();
        let provider = provider.to_owned();
        let state = (events, EventMapper::new(format_tool), false);
        let chunks = futures_util::stream::unfold(state, move |(mut events, mut mapper, ended)| {
            let provider = provider.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    let Some(event) = events.next().await else {
                        if mapper.is_done() {
                            return None;
                        }
                        let err = Error::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{provider}: the event stream ended before message_stop"),
                        ));
                        return Some((Err(err), (events, mapper, true)));
                    };
                    let result = event.and_then(|e| mapper.event(&e.data));
                    match result {
                        Ok(Some(chunk)) => return Some((Ok(chunk), (events, mapper, false))),
                        Ok(None) if mapper.is_done() => return None,
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), (events, mapper, true))),
                    }
                }
            }
        });
        Ok(ChatStream::new(chunks))
    }
}

/// The chunks a stream body decodes to (the `fuzzing` feature's entry point): each event
/// through the mapper a live stream uses, up to the first error or `message_stop`.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_stream(
    body: &[u8],
    format_tool: Option<&str>,
) -> Vec<Result<any_core::ChatChunk>> {
    let mut mapper = EventMapper::new(format_tool.map(Into::into));
    let mut out = Vec::new();
    for event in crate::http::sse::decode_all(body) {
        match mapper.event(&event.data) {
            Ok(chunk) => out.extend(chunk.map(Ok)),
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
        if mapper.is_done() {
            break;
        }
    }
    out
}

/// A whole (not streamed) answer's body decoded (the `fuzzing` feature's entry point).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_response(
    body: &[u8],
    format_tool: Option<&str>,
) -> Result<Vec<any_core::ChatChunk>> {
    let message: MessagesResponse = crate::http::parse_json("fuzz", body)?;
    Ok(EventMapper::new(format_tool.map(Into::into)).response(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_message(bytes: &[u8]) -> Result<MessagesResponse> {
        crate::http::parse_json("anthropic", bytes)
    }

    #[test]
    fn whole_answers_with_unknown_fields_and_blocks() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"thinking","thinking":"..."},{"type":"text","text":"Hi","citations":null},
                       {"type":"tool_use","id":"t1","name":"f","input":{"a":1}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":3,"output_tokens":4,"service_tier":"standard"}}"#;
        let chunks = EventMapper::new(None).response(parse_message(body).unwrap());
        let mut acc = any_core::Accumulator::new();
        chunks.into_iter().for_each(|c| acc.push(c));
        let r = acc.finish().unwrap();
        assert_eq!(r.text(), "Hi");
        assert_eq!(r.tool_calls()[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.usage.unwrap().total_tokens(), 7);
        let err = parse_message(br#"{"content": "not a list"}"#).unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(m) if m.contains("not a list")));
    }
}
