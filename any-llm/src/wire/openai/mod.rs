//! The OpenAI Chat Completions wire format, as spoken by OpenAI and by the many servers that
//! call themselves "OpenAI-compatible" (vLLM, llama.cpp server, Ollama, LM Studio, ...).
//!
//! | JSON | type | converts to / from |
//! |---|---|---|
//! | `POST /v1/chat/completions` body | [`ChatCompletionRequest`] | [`any_core::ChatRequest`] |
//! | its answer | [`ChatCompletion`] | [`any_core::ChatResponse`] |
//! | one `data:` event of a streamed answer | [`ChatCompletionChunk`] | [`any_core::ChatChunk`] |
//! | `POST /v1/embeddings` body and answer | [`EmbeddingRequest`], [`EmbeddingResponse`] | [`any_core::EmbedRequest`], [`any_core::EmbedResponse`] |
//! | `GET /v1/models` answer | [`ModelList`] | — |
//! | `{"error": {...}}` with an HTTP status | [`ErrorResponse`], [`ErrorObject`] | [`any_core::Error`] |
//!
//! Parsing is tolerant in the ways real servers need: unknown fields are ignored, optional
//! fields may be missing or `null`, message content may be a string or an array of parts,
//! `stop` a string or a list. What is genuinely malformed (a message without a role, content
//! that is a number, an unknown tool-choice string) is an error that says what was expected
//! and quotes what was found. Everything the format can say that the vocabulary cannot
//! (several choices, token-id inputs) is refused with an error rather than dropped.
//!
//! ```
//! use any_llm::wire::openai::ChatCompletionRequest;
//!
//! let body = r#"{
//!     "model": "local",
//!     "messages": [
//!         {"role": "system", "content": "Be brief."},
//!         {"role": "user", "content": [{"type": "text", "text": "Hi!"}]}
//!     ],
//!     "stop": "\n",
//!     "max_completion_tokens": 16,
//!     "some_vendor_field": true
//! }"#;
//! let wire: ChatCompletionRequest = serde_json::from_str(body)?;
//! let request = wire.into_chat_request()?;
//! assert_eq!(request.messages[1].text(), "Hi!");
//! assert_eq!(request.sampling.stop, ["\n"]);
//! assert_eq!(request.sampling.max_tokens, Some(16));
//!
//! // And back, as a client provider sends it.
//! let again = ChatCompletionRequest::from_chat_request(&request);
//! assert_eq!(again.model.as_deref(), Some("local"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod base64;
mod embeddings;
mod error;
mod models;
mod request;
mod response;

pub use embeddings::{
    EmbeddingData, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
    EmbeddingVector, EncodingFormat,
};
#[cfg(feature = "http")]
pub(crate) use error::quote as quote_body;
pub use error::{ErrorObject, ErrorResponse, error_from_status, retry_after};
pub use models::{Model, ModelList};
pub use request::{
    ChatCompletionRequest, ContentPart, FunctionDefinition, FunctionName, ImageUrl,
    JsonSchemaFormat, MessageContent, RequestMessage, ResponseFormat, Role, StopSequences,
    StreamOptions, Tool, ToolChoice,
};
pub use response::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, Completion, Delta, FunctionCall,
    FunctionCallDelta, Logprobs, PromptTokensDetails, ResponseMessage, TokenLogprob, ToolCall,
    ToolCallDelta, TopLogprob, Usage, finish_reason_from_wire, finish_reason_to_wire,
};

use serde::{Deserialize, Deserializer};

/// Reads a field whose `null` means the same as its absence.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What kind of JSON value `v` is, for error messages.
fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value as V;
    match v {
        V::Null => "null",
        V::Bool(_) => "a boolean",
        V::Number(_) => "a number",
        V::String(_) => "a string",
        V::Array(_) => "an array",
        V::Object(_) => "an object",
    }
}

/// `v` as JSON text, cut short for an error message.
fn quote(v: &serde_json::Value) -> String {
    let s = v.to_string();
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
