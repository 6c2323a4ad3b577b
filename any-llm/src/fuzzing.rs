//! Entry points for the fuzz targets (`fuzz/` in the repository), behind the `fuzzing`
//! feature: the providers' response decoders, which are otherwise reached only through a
//! live HTTP response. Not a public API: hidden from the docs and free to change.

use any_core::{ChatChunk, ChatResponse, Result};

/// An OpenAI-compatible event-stream body (the bytes of a `text/event-stream` response) to
/// the chunks the provider would yield, its last item the error that ended it, if any.
pub fn openai_stream(body: &[u8]) -> Vec<Result<ChatChunk>> {
    crate::providers::openai::decode_stream(body)
}

/// An OpenAI-compatible whole answer (a `chat.completion` JSON body) to a response.
///
/// # Errors
/// As the provider: a body that is not a chat completion, or one that says nothing usable.
pub fn openai_response(body: &[u8]) -> Result<ChatResponse> {
    crate::providers::openai::decode_response(body)
}

/// An Anthropic Messages event-stream body to the chunks the provider would yield;
/// `format_tool` names the tool that carries a structured answer, as for a request with a
/// JSON response format.
pub fn anthropic_stream(body: &[u8], format_tool: Option<&str>) -> Vec<Result<ChatChunk>> {
    crate::providers::anthropic::decode_stream(body, format_tool)
}

/// An Anthropic whole answer (a `message` JSON body) to its chunks.
///
/// # Errors
/// As the provider: a body that is not a message.
pub fn anthropic_response(body: &[u8], format_tool: Option<&str>) -> Result<Vec<ChatChunk>> {
    crate::providers::anthropic::decode_response(body, format_tool)
}
