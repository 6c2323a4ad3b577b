//! What comes back: streamed [`ChatChunk`]s and the [`ChatResponse`] they add up to.

use serde::{Deserialize, Serialize};

use crate::{Extensions, Message, Role, ToolCall};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model finished its answer, or a stop sequence was reached.
    Stop,
    /// `max_tokens` (or the context window) was reached.
    Length,
    /// The model asked for tool calls.
    ToolCalls,
    /// A provider's or a guardrail's filter withheld content.
    ContentFilter,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens served from a cache (a reused prefix), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u32>,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// The token's id, where the service knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Natural-log probability.
    pub logprob: f32,
}

/// A generated token, its log-probability, and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// The token's id, where the service knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Natural-log probability of this token.
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopLogprob>,
}

/// A piece of a tool call, as streams deliver them: the call at `index` gets its id and name
/// once and its arguments in fragments, possibly interleaved with other calls' fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of this turn (0, 1, ...).
    pub index: u32,
    /// The call's id, on the delta that starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool's name, on the delta that starts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next fragment of the arguments' JSON text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
}

/// One piece of a streamed answer.
///
/// Every field may be empty: a chunk can carry only text, only tool-call fragments, or only
/// the finish reason and usage at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The next piece of the answer's text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
    /// Set on the chunk that ends the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Token counts, usually on the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Log-probabilities of the tokens in `text`, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// The model that produced it, where the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Typed values a layer attaches (a guardrail's warnings, say); merged into the
    /// response's extensions. Not serialised.
    #[serde(skip)]
    pub extensions: Extensions,
}

impl ChatChunk {
    /// A chunk of text.
    pub fn text(text: impl Into<String>) -> Self {
        ChatChunk {
            text: text.into(),
            ..Default::default()
        }
    }

    /// A chunk that ends the answer.
    pub fn finish(reason: FinishReason, usage: Option<Usage>) -> Self {
        ChatChunk {
            finish_reason: Some(reason),
            usage,
            ..Default::default()
        }
    }
}

/// A whole answer: the assistant's message, why it ended, and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant's message: its text and any tool calls.
    pub message: Message,
    /// Why generation ended (`None` if the stream ended without saying).
    pub finish_reason: Option<FinishReason>,
    /// Token counts, where the service reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Log-probabilities of the generated tokens, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// The model that answered, where the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Typed values that layers attached on the way up. Not serialised.
    #[serde(skip)]
    pub extensions: Extensions,
}

impl ChatResponse {
    /// The answer's text.
    pub fn text(&self) -> &str {
        match &self.message.content {
            crate::Content::Text(t) => t,
            // The accumulator only builds text content; parts come from hand-built responses.
            crate::Content::Parts(_) => "",
        }
    }

    /// The tool calls the model asked for.
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.message.tool_calls
    }
}

/// Turns a stream of [`ChatChunk`]s into a [`ChatResponse`]: concatenates text, reassembles
/// tool calls from fragments (interleaved across calls, split anywhere), keeps the last
/// finish reason and usage, and merges chunk extensions.
///
/// Every service's stream is collected by this one type, so streaming and non-streaming
/// answers cannot drift apart.
///
/// ```
/// use any_core::{Accumulator, ChatChunk, FinishReason, ToolCallDelta};
///
/// let mut acc = Accumulator::new();
/// let delta = |index, id: Option<&str>, name: Option<&str>, args: &str| ToolCallDelta {
///     index,
///     id: id.map(Into::into),
///     name: name.map(Into::into),
///     arguments: args.into(),
/// };
/// acc.push(ChatChunk { tool_calls: vec![delta(0, Some("a"), Some("add"), "{\"x\":")], ..Default::default() });
/// acc.push(ChatChunk { tool_calls: vec![delta(1, Some("b"), Some("neg"), "{\"y\"")], ..Default::default() });
/// acc.push(ChatChunk { tool_calls: vec![delta(0, None, None, "1}"), delta(1, None, None, ":2}")], ..Default::default() });
/// acc.push(ChatChunk::finish(FinishReason::ToolCalls, None));
/// let response = acc.finish()?;
/// assert_eq!(response.tool_calls()[0].arguments, "{\"x\":1}");
/// assert_eq!(response.tool_calls()[1].arguments, "{\"y\":2}");
/// # Ok::<(), any_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Accumulator {
    text: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    logprobs: Vec<TokenLogprob>,
    model: Option<String>,
    extensions: Extensions,
}

#[derive(Debug)]
struct PartialCall {
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Adds the next chunk.
    pub fn push(&mut self, chunk: ChatChunk) {
        self.text.push_str(&chunk.text);
        for delta in chunk.tool_calls {
            let call = match self.calls.iter_mut().position(|c| c.index == delta.index) {
                Some(i) => &mut self.calls[i],
                None => {
                    self.calls.push(PartialCall {
                        index: delta.index,
                        id: None,
                        name: None,
                        arguments: String::new(),
                    });
                    self.calls.last_mut().expect("just pushed")
                }
            };
            if let Some(id) = delta.id.filter(|s| !s.is_empty()) {
                call.id = Some(id);
            }
            if let Some(name) = delta.name.filter(|s| !s.is_empty()) {
                // Some servers repeat the name on every fragment; a name split into fragments
                // is not a thing any known protocol does.
                call.name = Some(name);
            }
            call.arguments.push_str(&delta.arguments);
        }
        if chunk.finish_reason.is_some() {
            self.finish_reason = chunk.finish_reason;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        self.logprobs.extend(chunk.logprobs);
        self.extensions.extend(chunk.extensions);
    }

    /// The response the chunks add up to.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`](crate::Error::InvalidResponse) if a tool call never got a
    /// name.
    pub fn finish(mut self) -> crate::Result<ChatResponse> {
        self.calls.sort_by_key(|c| c.index);
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for c in self.calls {
            let Some(name) = c.name else {
                return Err(crate::Error::InvalidResponse(format!(
                    "tool call {} ended without a name (arguments {:?})",
                    c.index, c.arguments
                )));
            };
            let id = c.id.unwrap_or_else(|| format!("call_{}", c.index));
            // An empty argument string means "no arguments": normalise to an empty object so
            // that every consumer can parse it.
            let arguments = if c.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                c.arguments
            };
            tool_calls.push(ToolCall {
                id,
                name,
                arguments,
            });
        }
        let mut message = Message::new(Role::Assistant, self.text);
        message.tool_calls = tool_calls;
        Ok(ChatResponse {
            message,
            finish_reason: self.finish_reason,
            usage: self.usage,
            logprobs: self.logprobs,
            model: self.model,
            extensions: self.extensions,
        })
    }
}
