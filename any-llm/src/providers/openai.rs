//! Any OpenAI-compatible Chat Completions server (`POST {base}/chat/completions`,
//! `POST {base}/embeddings`, `GET {base}/models`), built on the wire types of
//! [`crate::wire::openai`].
//!
//! OpenAI itself and every server that speaks its format — vLLM, llama.cpp server,
//! llamafile, Ollama, LM Studio, Mistral, Groq, Together, DeepSeek, OpenRouter, Fireworks,
//! xAI — are reached by this one client; what differs between them (address, key variable,
//! capabilities) is a row of [`crate::providers()`], not code.
//!
//! Streaming reads the server-sent events with [`crate::http::sse`], so chunks split anywhere by
//! the network do not matter; it asks for usage in the last chunk
//! (`stream_options.include_usage`) and also takes usage from wherever a server puts it (a
//! chunk with choices, Groq's `x_groq`). Tool-call fragments are addressed by their
//! `index` and may interleave; chunks with no choices, empty deltas and unknown fields are
//! tolerated; an `{"error": ...}` event mid-stream is the same typed error as the same
//! error before the stream. A stream that ends without `[DONE]` and without a finish reason
//! is an error (it was cut), not a short answer.
//!
//! ```no_run
//! use any_core::ChatServiceExt;
//!
//! # #[tokio::main] async fn main() -> any_core::Result<()> {
//! // A llama.cpp server on its default port, no key needed.
//! let model = any_llm::model("llamacpp:qwen2.5-0.5b")?;
//! println!("{}", model.complete("Name a colour.").await?);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{ChatChunk, ChatRequest, ChatStream, EmbedRequest, EmbedResponse, Error, Result};
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;

use super::Connection;
use crate::http::{parse_json, read_json, sse_events};
use crate::wire::openai::error_from_status;
use crate::wire::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingRequest,
    EmbeddingResponse, ModelList, StreamOptions,
};

/// A chat model behind an OpenAI-compatible server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    inner: Arc<Inner>,
}

/// An embedding model behind an OpenAI-compatible server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenAiEmbed {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    connection: Connection,
    headers: HeaderMap,
    model: String,
    stream: bool,
    stream_usage: bool,
    sampling_extensions: bool,
}

impl Inner {
    fn new(connection: Connection, model: String) -> Result<Self> {
        let mut headers = connection.headers.clone();
        if let Some(key) = connection.api_key.as_deref().filter(|k| !k.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                Error::InvalidRequest("the API key is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Inner {
            connection,
            headers,
            model,
            stream: true,
            stream_usage: true,
            sampling_extensions: true,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.connection.base_url)
    }

    fn provider(&self) -> &str {
        &self.connection.provider
    }
}

impl OpenAiChat {
    /// `model` over `connection` (its base URL ends with the API version, as in
    /// `https://api.openai.com/v1`). The key, if any, is sent as a bearer token.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] if the key is not a valid header value.
    pub fn new(connection: Connection, model: impl Into<String>) -> Result<Self> {
        Ok(OpenAiChat {
            inner: Arc::new(Inner::new(connection, model.into())?),
        })
    }

    /// Streams answers (the default) or asks for whole ones (yielded as one chunk).
    pub fn streaming(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.inner).stream = on;
        self
    }

    /// Whether to send `stream_options.include_usage` (default on; a server that rejects the
    /// option needs it off).
    pub fn stream_usage(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.inner).stream_usage = on;
        self
    }

    /// Whether the server accepts `top_k`, `min_p` and `repetition_penalty` (vLLM,
    /// llama.cpp and most local servers do; OpenAI itself does not). When off, those
    /// parameters are left out of requests and a warning is logged.
    pub fn sampling_extensions(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.inner).sampling_extensions = on;
        self
    }

    /// The model asked for when a request names none.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The models the server lists (`GET {base}/models`).
    ///
    /// # Errors
    /// The HTTP failure's kind, or [`Error::InvalidResponse`] for a body that is not a
    /// model list.
    pub async fn list_models(&self) -> Result<ModelList> {
        let inner = &self.inner;
        let response = inner
            .connection
            .client
            .get(inner.provider(), &inner.url("models"), &inner.headers)
            .await?;
        read_json(inner.provider(), response).await
    }
}

impl OpenAiEmbed {
    /// The embedding `model` over `connection`.
    ///
    /// # Errors
    /// As [`OpenAiChat::new`].
    pub fn new(connection: Connection, model: impl Into<String>) -> Result<Self> {
        Ok(OpenAiEmbed {
            inner: Arc::new(Inner::new(connection, model.into())?),
        })
    }
}

impl tower::Service<ChatRequest> for OpenAiChat {
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

impl tower::Service<EmbedRequest> for OpenAiEmbed {
    type Response = EmbedResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<EmbedResponse>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbedRequest) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.embed(request).await })
    }
}

impl Inner {
    fn body(&self, request: &ChatRequest) -> ChatCompletionRequest {
        let mut body = ChatCompletionRequest::from_chat_request(request);
        if body.model.is_none() {
            body.model = Some(self.model.clone());
        }
        if !self.sampling_extensions {
            for (name, set) in [
                ("top_k", body.top_k.take().is_some()),
                ("min_p", body.min_p.take().is_some()),
                (
                    "repetition_penalty",
                    body.repetition_penalty.take().is_some(),
                ),
            ] {
                if set {
                    tracing::warn!(
                        provider = self.provider(),
                        parameter = name,
                        "the server does not accept this parameter; it is not sent"
                    );
                }
            }
        }
        if self.stream {
            body.stream = Some(true);
            if self.stream_usage {
                body.stream_options = Some(StreamOptions {
                    include_usage: Some(true),
                });
            }
        }
        body
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatStream> {
        request.validate()?;
        let body = self.body(&request);
        let provider = self.provider();
        let response = self
            .connection
            .client
            .post_json(
                provider,
                &self.url("chat/completions"),
                &self.headers,
                &body,
            )
            .await?;
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            // A whole answer: asked for, or from a server that does not stream.
            let completion: ChatCompletion = read_json(provider, response).await?;
            return Ok(ChatStream::from_response(completion.into_response()?));
        }
        let events = sse_events(provider, response).boxed();
        let state = StreamState {
            events,
            provider: provider.to_owned(),
            finished: false,
            ended: false,
        };
        let chunks = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next_chunk().await?;
            Some((item, state))
        });
        Ok(ChatStream::new(chunks))
    }

    async fn embed(&self, request: EmbedRequest) -> Result<EmbedResponse> {
        if request.inputs.is_empty() {
            return Err(Error::InvalidRequest("no texts to embed".into()));
        }
        let n = request.inputs.len();
        let mut body = EmbeddingRequest::from_embed_request(&request);
        if body.model.is_none() {
            body.model = Some(self.model.clone());
        }
        let provider = self.provider();
        let response = self
            .connection
            .client
            .post_json(provider, &self.url("embeddings"), &self.headers, &body)
            .await?;
        let wire: EmbeddingResponse = read_json(provider, response).await?;
        let out = wire.into_embed_response()?;
        if out.embeddings.len() != n {
            return Err(Error::InvalidResponse(format!(
                "{provider}: asked for {n} embeddings, got {}",
                out.embeddings.len()
            )));
        }
        Ok(out)
    }
}

struct StreamState {
    events: futures_util::stream::BoxStream<'static, Result<crate::http::sse::SseEvent>>,
    provider: String,
    /// A finish reason was seen: the answer is complete even without `[DONE]`.
    finished: bool,
    ended: bool,
}

impl StreamState {
    /// The next chunk worth passing on, `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<ChatChunk>> {
        if self.ended {
            return None;
        }
        loop {
            let Some(event) = self.events.next().await else {
                self.ended = true;
                if self.finished {
                    return None;
                }
                return Some(Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: the event stream ended before [DONE] or a finish reason",
                        self.provider
                    ),
                ))));
            };
            let result = event.and_then(|e| self.chunk(&e.data));
            match result {
                Ok(Some(chunk)) => return Some(Ok(chunk)),
                Ok(None) if self.ended => return None,
                Ok(None) => continue,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The chunk of one event's data, if it says anything.
    fn chunk(&mut self, data: &str) -> Result<Option<ChatChunk>> {
        let data = data.trim();
        if data == "[DONE]" {
            self.ended = true;
            return Ok(None);
        }
        if data.is_empty() {
            return Ok(None);
        }
        let value: Value = parse_json(&self.provider, data.as_bytes())?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null())
            && value.get("choices").is_none()
        {
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500) as u16;
            return Err(error_from_status(
                &self.provider,
                status,
                &HeaderMap::new(),
                data.as_bytes(),
            ));
        }
        // Groq reports the last chunk's usage under `x_groq`.
        let groq_usage = value.get("x_groq").and_then(|x| x.get("usage")).cloned();
        let mut wire: ChatCompletionChunk = serde_json::from_value(value)
            .map_err(|e| crate::http::invalid_response(&self.provider, &e, data.as_bytes()))?;
        if wire.usage.is_none()
            && let Some(usage) = groq_usage
        {
            wire.usage = serde_json::from_value(usage).ok();
        }
        let chunk = wire.into_chunk()?;
        if chunk.finish_reason.is_some() {
            self.finished = true;
        }
        let says_something = !chunk.text.is_empty()
            || !chunk.tool_calls.is_empty()
            || chunk.finish_reason.is_some()
            || chunk.usage.is_some()
            || !chunk.logprobs.is_empty();
        Ok(says_something.then_some(chunk))
    }
}

/// The chunks a stream body decodes to (the `fuzzing` feature's entry point): its events
/// through the same state as a live stream, up to the first error.
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_stream(body: &[u8]) -> Vec<Result<ChatChunk>> {
    use futures_util::FutureExt;
    let events: Vec<Result<crate::http::sse::SseEvent>> = crate::http::sse::decode_all(body)
        .into_iter()
        .map(Ok)
        .collect();
    let mut state = StreamState {
        events: futures_util::stream::iter(events).boxed(),
        provider: "fuzz".into(),
        finished: false,
        ended: false,
    };
    let mut out = Vec::new();
    // The events are all there: every poll is ready.
    while let Some(Some(item)) = state.next_chunk().now_or_never() {
        out.push(item);
    }
    out
}

/// A whole (not streamed) answer's body decoded (the `fuzzing` feature's entry point).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_response(body: &[u8]) -> Result<any_core::ChatResponse> {
    parse_json::<ChatCompletion>("fuzz", body)?.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::sse::SseEvent;

    async fn run(events: &[&str]) -> Vec<Result<ChatChunk>> {
        let items: Vec<Result<SseEvent>> = events
            .iter()
            .map(|d| {
                Ok(SseEvent {
                    event: "message".into(),
                    data: (*d).into(),
                    id: None,
                    retry: None,
                })
            })
            .collect();
        let mut state = StreamState {
            events: futures_util::stream::iter(items).boxed(),
            provider: "test".into(),
            finished: false,
            ended: false,
        };
        let mut out = Vec::new();
        while let Some(item) = state.next_chunk().await {
            out.push(item);
        }
        out
    }

    #[tokio::test]
    async fn usage_from_x_groq_and_no_done() {
        let out = run(&[
            r#"{"id":"1","choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
            r#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}}"#,
        ])
        .await;
        assert_eq!(out.len(), 1);
        let chunk = out[0].as_ref().unwrap();
        assert_eq!(chunk.text, "hi");
        assert_eq!(chunk.usage.unwrap().prompt_tokens, 3);
    }

    #[tokio::test]
    async fn error_events_and_cut_streams() {
        let out = run(&[
            r#"{"id":"1","choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"error":{"message":"model overloaded","type":"server_error","code":503}}"#,
        ])
        .await;
        assert!(
            matches!(&out[1], Err(Error::Provider { status: Some(503), message, .. }) if message == "model overloaded")
        );
        let out = run(&[r#"{"id":"1","choices":[{"index":0,"delta":{"content":"a"}}]}"#]).await;
        assert!(
            matches!(&out[1], Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
        let out = run(&[r#"{"choices": 7}"#]).await;
        assert!(
            matches!(&out[0], Err(Error::InvalidResponse(m)) if m.contains("choices") && m.contains("7")),
            "{out:?}"
        );
    }
}
