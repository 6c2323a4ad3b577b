//! The Chat Completions answer, whole and streamed, and its conversions to and from
//! [`any_core::ChatResponse`] and [`any_core::ChatChunk`].

use any_core::{ChatChunk, ChatResponse, Content, Error, FinishReason, Message, Result};
use serde::{Deserialize, Serialize};

use super::null_default;

/// What identifies one answer on the wire: the `id`, `created` and `model` fields that every
/// chunk of a stream repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: String,
}

/// A whole answer (`"object": "chat.completion"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The answer's id.
    #[serde(default)]
    pub id: String,
    /// `"chat.completion"`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The answers; one, as only `n = 1` is asked for.
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The backend configuration's fingerprint, where the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// One choice of a whole answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Which choice (0).
    #[serde(default)]
    pub index: u32,
    /// The assistant's message.
    pub message: ResponseMessage,
    /// Log-probabilities, when asked for.
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
    /// Why generation ended: `"stop"`, `"length"`, `"tool_calls"`, `"content_filter"`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant's message in a whole answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// `"assistant"`.
    #[serde(default = "assistant")]
    pub role: String,
    /// The text; `null` when the message only calls tools.
    #[serde(default)]
    pub content: Option<String>,
    /// The model's refusal, when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool calls.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
}

fn assistant() -> String {
    "assistant".to_owned()
}

/// A complete tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id.
    pub id: String,
    /// `"function"`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// Which function, with what arguments.
    pub function: FunctionCall,
}

fn function() -> String {
    "function".to_owned()
}

/// A function call's name and arguments (JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as JSON text.
    #[serde(default)]
    pub arguments: String,
}

impl ToolCall {
    pub(crate) fn from_call(c: &any_core::ToolCall) -> Self {
        ToolCall {
            id: c.id.clone(),
            kind: function(),
            function: FunctionCall {
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            },
        }
    }
}

/// One event of a streamed answer (`"object": "chat.completion.chunk"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// The answer's id, the same on every chunk.
    #[serde(default)]
    pub id: String,
    /// `"chat.completion.chunk"`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// The delta of choice 0; empty on the final usage chunk.
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<ChunkChoice>,
    /// Token counts: on the last chunk, when `stream_options.include_usage` asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The backend configuration's fingerprint, where the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// One choice's delta in a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Which choice (0).
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Log-probabilities of this delta's tokens, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
    /// Set on the chunk that ends the choice; `null` before.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `"assistant"`, on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The next piece of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The next piece of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Tool-call fragments.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// A fragment of a tool call: the call at `index` gets its id, type and name once, then its
/// arguments in pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the turn. Some servers leave it out; it then defaults to the
    /// fragment's position in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The call's id, on its first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `"function"`, on its first fragment.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name and the next piece of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// The function's name, on the first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next piece of the arguments' JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Log-probabilities of a choice's tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logprobs {
    /// One entry per generated token.
    #[serde(default, deserialize_with = "null_default")]
    pub content: Vec<TokenLogprob>,
    /// For a refusal's tokens; kept only so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Vec<TokenLogprob>>,
}

/// A token and its log-probability, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// The token's UTF-8 bytes (a token can be part of a character).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position.
    #[serde(default, deserialize_with = "null_default")]
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
    /// The token's UTF-8 bytes.
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u32,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: u32,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u32,
    /// Details about the prompt tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// Details about the prompt tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
}

impl From<any_core::Usage> for Usage {
    fn from(u: any_core::Usage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
            prompt_tokens_details: u.cached_prompt_tokens.map(|c| PromptTokensDetails {
                cached_tokens: Some(c),
            }),
        }
    }
}

impl From<Usage> for any_core::Usage {
    fn from(u: Usage) -> Self {
        any_core::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
        }
    }
}

/// The wire's spelling of a finish reason. [`FinishReason::Other`] has no OpenAI spelling
/// and is sent as `"stop"`, the reason that claims nothing more than "it ended".
pub fn finish_reason_to_wire(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// The vocabulary's finish reason for a wire string; the deprecated `"function_call"` is a
/// tool call, anything unknown is [`FinishReason::Other`].
pub fn finish_reason_from_wire(reason: &str) -> FinishReason {
    match reason {
        "stop" | "eos" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

fn logprobs_to_wire(lp: &[any_core::TokenLogprob]) -> Option<Logprobs> {
    if lp.is_empty() {
        return None;
    }
    let content = lp
        .iter()
        .map(|t| TokenLogprob {
            token: t.token.clone(),
            logprob: t.logprob,
            bytes: Some(t.token.as_bytes().to_vec()),
            top_logprobs: t
                .top
                .iter()
                .map(|a| TopLogprob {
                    token: a.token.clone(),
                    logprob: a.logprob,
                    bytes: Some(a.token.as_bytes().to_vec()),
                })
                .collect(),
        })
        .collect();
    Some(Logprobs {
        content,
        refusal: None,
    })
}

fn logprobs_from_wire(lp: Option<Logprobs>) -> Vec<any_core::TokenLogprob> {
    lp.map(|lp| lp.content)
        .unwrap_or_default()
        .into_iter()
        .map(|t| any_core::TokenLogprob {
            token: t.token,
            id: None,
            logprob: t.logprob,
            top: t
                .top_logprobs
                .into_iter()
                .map(|a| any_core::TopLogprob {
                    token: a.token,
                    id: None,
                    logprob: a.logprob,
                })
                .collect(),
        })
        .collect()
}

/// Checks that a server answered with the one choice asked for.
fn only_choice<T>(choices: Vec<T>, index: impl Fn(&T) -> u32, what: &str) -> Result<Option<T>> {
    let mut out = None;
    for c in choices {
        match index(&c) {
            0 if out.is_none() => out = Some(c),
            i => {
                return Err(Error::InvalidResponse(format!(
                    "the {what} has a second choice (index {i}); one choice (n = 1) was asked for"
                )));
            }
        }
    }
    Ok(out)
}

impl ChatCompletion {
    /// The wire answer for a vocabulary response.
    pub fn from_response(response: &ChatResponse, completion: &Completion) -> Self {
        let message = &response.message;
        let text = message.content.text();
        let message = ResponseMessage {
            role: assistant(),
            content: (!text.is_empty() || message.tool_calls.is_empty()).then(|| text.into_owned()),
            refusal: None,
            tool_calls: message.tool_calls.iter().map(ToolCall::from_call).collect(),
        };
        ChatCompletion {
            id: completion.id.clone(),
            object: "chat.completion".into(),
            created: completion.created,
            model: completion.model.clone(),
            choices: vec![Choice {
                index: 0,
                message,
                logprobs: logprobs_to_wire(&response.logprobs),
                finish_reason: response
                    .finish_reason
                    .map(|r| finish_reason_to_wire(r).to_owned()),
            }],
            usage: response.usage.map(Usage::from),
            system_fingerprint: None,
        }
    }

    /// The vocabulary's response for a wire answer. A refusal with no content becomes the
    /// message's text.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] if there is no choice or more than one.
    pub fn into_response(self) -> Result<ChatResponse> {
        let Some(choice) = only_choice(self.choices, |c| c.index, "response")? else {
            return Err(Error::InvalidResponse(format!(
                "the response `{}` has no choices",
                self.id
            )));
        };
        let m = choice.message;
        let text = match (m.content, m.refusal) {
            (Some(c), _) if !c.is_empty() => c,
            (_, Some(refusal)) => refusal,
            (c, None) => c.unwrap_or_default(),
        };
        let mut message = Message::new(any_core::Role::Assistant, Content::Text(text));
        message.tool_calls = m
            .tool_calls
            .into_iter()
            .map(|c| any_core::ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
            .collect();
        Ok(ChatResponse {
            message,
            finish_reason: choice.finish_reason.as_deref().map(finish_reason_from_wire),
            usage: self.usage.map(Into::into),
            logprobs: logprobs_from_wire(choice.logprobs),
            model: (!self.model.is_empty()).then_some(self.model),
            extensions: Default::default(),
        })
    }
}

impl ChatCompletionChunk {
    fn empty(completion: &Completion) -> Self {
        ChatCompletionChunk {
            id: completion.id.clone(),
            object: "chat.completion.chunk".into(),
            created: completion.created,
            model: completion.model.clone(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
        }
    }

    /// The first chunk of a stream: `{"role": "assistant", "content": ""}`, as OpenAI sends.
    pub fn role(completion: &Completion) -> Self {
        ChatCompletionChunk {
            choices: vec![ChunkChoice {
                delta: Delta {
                    role: Some(assistant()),
                    content: Some(String::new()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..Self::empty(completion)
        }
    }

    /// The chunk for a vocabulary chunk: its text, tool-call fragments, log-probabilities and
    /// finish reason. Usage is not included: on the wire it travels in its own last chunk
    /// ([`ChatCompletionChunk::usage`]), sent only when the client asked.
    pub fn from_chunk(chunk: &ChatChunk, completion: &Completion) -> Self {
        let tool_calls = chunk
            .tool_calls
            .iter()
            .map(|d| ToolCallDelta {
                index: Some(d.index),
                id: d.id.clone(),
                kind: d.id.as_ref().map(|_| function()),
                function: Some(FunctionCallDelta {
                    name: d.name.clone(),
                    arguments: Some(d.arguments.clone()),
                }),
            })
            .collect();
        ChatCompletionChunk {
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: (!chunk.text.is_empty()).then(|| chunk.text.clone()),
                    refusal: None,
                    tool_calls,
                },
                logprobs: logprobs_to_wire(&chunk.logprobs),
                finish_reason: chunk
                    .finish_reason
                    .map(|r| finish_reason_to_wire(r).to_owned()),
            }],
            ..Self::empty(completion)
        }
    }

    /// The last chunk of a stream that asked for usage: no choices, only the counts.
    pub fn usage(usage: any_core::Usage, completion: &Completion) -> Self {
        ChatCompletionChunk {
            usage: Some(usage.into()),
            ..Self::empty(completion)
        }
    }

    /// Whether the chunk says nothing: no choice with content, fragments, log-probabilities or
    /// finish reason, and no usage.
    pub fn is_empty(&self) -> bool {
        self.usage.is_none()
            && self.choices.iter().all(|c| {
                c.finish_reason.is_none()
                    && c.logprobs.is_none()
                    && c.delta.content.as_deref().unwrap_or("").is_empty()
                    && c.delta.refusal.as_deref().unwrap_or("").is_empty()
                    && c.delta.tool_calls.is_empty()
            })
    }

    /// The vocabulary's chunk for this event. A chunk with no choices (the usage chunk, or a
    /// server's preamble) becomes a chunk with only usage, or an empty one.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] for a second choice (only `n = 1` is asked for).
    pub fn into_chunk(self) -> Result<ChatChunk> {
        let mut out = ChatChunk {
            usage: self.usage.map(Into::into),
            model: (!self.model.is_empty()).then_some(self.model),
            ..Default::default()
        };
        let Some(choice) = only_choice(self.choices, |c| c.index, "chunk")? else {
            return Ok(out);
        };
        let d = choice.delta;
        out.text = match (d.content, d.refusal) {
            (Some(c), _) if !c.is_empty() => c,
            (_, Some(r)) => r,
            _ => String::new(),
        };
        out.tool_calls = d
            .tool_calls
            .into_iter()
            .enumerate()
            .map(|(pos, t)| {
                let f = t.function.unwrap_or_default();
                any_core::ToolCallDelta {
                    index: t.index.unwrap_or(pos as u32),
                    id: t.id,
                    name: f.name,
                    arguments: f.arguments.unwrap_or_default(),
                }
            })
            .collect();
        out.logprobs = logprobs_from_wire(choice.logprobs);
        out.finish_reason = choice.finish_reason.as_deref().map(finish_reason_from_wire);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::Accumulator;

    fn completion() -> Completion {
        Completion {
            id: "chatcmpl-1".into(),
            created: 1_700_000_000,
            model: "m".into(),
        }
    }

    // Written from the documented format: two parallel tool calls, usage with cached tokens,
    // a field this version does not know.
    const PARALLEL_TOOLS: &str = r#"{
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1722000000,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "refusal": null, "tool_calls": [
              {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Lyon\"}"}},
              {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}
            ]}, "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 40, "total_tokens": 122,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}},
        "service_tier": "default"
    }"#;

    #[test]
    fn parallel_tool_calls_and_usage_parse() {
        let wire: ChatCompletion = serde_json::from_str(PARALLEL_TOOLS).expect("parses");
        let r = wire.into_response().expect("converts");
        assert_eq!(r.text(), "");
        assert_eq!(r.tool_calls().len(), 2);
        assert_eq!(r.tool_calls()[1].id, "call_b");
        assert_eq!(r.tool_calls()[1].arguments, r#"{"city": "Oslo"}"#);
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        let usage = r.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (82, 40));
        assert_eq!(usage.cached_prompt_tokens, Some(64));
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    }

    #[test]
    fn logprobs_parse_and_round_trip() {
        let body = r#"{"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
              "logprobs": {"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                 "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                                  {"token": "Hello", "logprob": -1.5, "bytes": null}]}],
                 "refusal": null},
              "finish_reason": "stop"}]}"#;
        let r = serde_json::from_str::<ChatCompletion>(body)
            .expect("parses")
            .into_response()
            .expect("converts");
        assert_eq!(r.logprobs.len(), 1);
        assert_eq!(r.logprobs[0].logprob, -0.25);
        assert_eq!(r.logprobs[0].top[1].token, "Hello");
        let wire = ChatCompletion::from_response(&r, &completion());
        let json = serde_json::to_value(&wire).expect("serialises");
        assert_eq!(
            json["choices"][0]["logprobs"]["content"][0]["bytes"][1],
            105
        );
        assert_eq!(
            json["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["logprob"],
            -1.5
        );
        let again = wire.into_response().expect("converts");
        assert_eq!(again.logprobs, r.logprobs);
        assert_eq!(again.text(), "Hi");
    }

    #[test]
    fn a_response_round_trips_with_its_fields_filled() {
        let mut message = Message::assistant("");
        message.tool_calls = vec![any_core::ToolCall::new("c1", "f", "{}")];
        let response = ChatResponse {
            message,
            finish_reason: Some(FinishReason::ToolCalls),
            usage: Some(any_core::Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                cached_prompt_tokens: None,
            }),
            logprobs: vec![],
            model: None,
            extensions: Default::default(),
        };
        let json = serde_json::to_value(ChatCompletion::from_response(&response, &completion()))
            .expect("serialises");
        assert_eq!(json["id"], "chatcmpl-1");
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "m");
        assert_eq!(
            json["choices"][0]["message"]["content"],
            serde_json::Value::Null
        );
        assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(json["usage"]["total_tokens"], 7);
        let back = serde_json::from_value::<ChatCompletion>(json)
            .expect("parses")
            .into_response()
            .expect("converts");
        assert_eq!(back.tool_calls(), response.tool_calls());
        assert_eq!(back.usage, response.usage);
    }

    #[test]
    fn no_choice_or_a_second_choice_is_an_error() {
        let e = serde_json::from_str::<ChatCompletion>(r#"{"id": "r1", "choices": []}"#)
            .expect("parses")
            .into_response()
            .unwrap_err();
        assert!(e.to_string().contains("`r1` has no choices"), "{e}");
        let two = r#"{"choices": [{"index": 0, "message": {"content": "a"}},
                                  {"index": 1, "message": {"content": "b"}}]}"#;
        let e = serde_json::from_str::<ChatCompletion>(two)
            .expect("parses")
            .into_response()
            .unwrap_err();
        assert!(e.to_string().contains("second choice (index 1)"), "{e}");
    }

    // A streamed answer with two parallel tool calls whose argument fragments interleave,
    // then the usage chunk with no choices, as the documented format has it.
    const TOOL_STREAM: &[&str] = &[
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Lyon\"}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#,
    ];

    #[test]
    fn streamed_parallel_tool_calls_accumulate() {
        let mut acc = Accumulator::new();
        for event in TOOL_STREAM {
            let chunk: ChatCompletionChunk = serde_json::from_str(event).expect("parses");
            acc.push(chunk.into_chunk().expect("converts"));
        }
        let r = acc.finish().expect("adds up");
        assert_eq!(r.tool_calls().len(), 2);
        assert_eq!(r.tool_calls()[0].arguments, r#"{"city":"Lyon"}"#);
        assert_eq!(r.tool_calls()[1].name, "time");
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(r.usage.map(|u| u.total_tokens()), Some(15));
    }

    #[test]
    fn chunks_round_trip_through_the_wire() {
        let c = completion();
        let chunks = vec![
            ChatChunk::text("Hel"),
            ChatChunk {
                tool_calls: vec![any_core::ToolCallDelta {
                    index: 0,
                    id: Some("k".into()),
                    name: Some("f".into()),
                    arguments: "{\"a\"".into(),
                }],
                ..Default::default()
            },
            ChatChunk {
                tool_calls: vec![any_core::ToolCallDelta {
                    index: 0,
                    arguments: ":1}".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ChatChunk::finish(FinishReason::ToolCalls, None),
        ];
        let role = ChatCompletionChunk::role(&c);
        let json = serde_json::to_value(&role).expect("serialises");
        assert_eq!(json["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(json["choices"][0]["finish_reason"], serde_json::Value::Null);
        let mut acc = Accumulator::new();
        acc.push(role.into_chunk().expect("converts"));
        for chunk in &chunks {
            let wire = ChatCompletionChunk::from_chunk(chunk, &c);
            let text = serde_json::to_string(&wire).expect("serialises");
            let parsed: ChatCompletionChunk = serde_json::from_str(&text).expect("parses");
            acc.push(parsed.into_chunk().expect("converts"));
        }
        let usage = any_core::Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_prompt_tokens: None,
        };
        let last = ChatCompletionChunk::usage(usage, &c);
        assert!(last.choices.is_empty());
        acc.push(last.into_chunk().expect("converts"));
        let r = acc.finish().expect("adds up");
        assert_eq!(r.text(), "Hel");
        assert_eq!(r.tool_calls()[0].arguments, "{\"a\":1}");
        assert_eq!(r.usage, Some(usage));
        assert_eq!(r.model.as_deref(), Some("m"));
    }

    #[test]
    fn fragments_without_an_index_take_their_position() {
        let event = r#"{"choices":[{"delta":{"tool_calls":[
            {"id":"a","function":{"name":"f","arguments":"{}"}},
            {"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#;
        let chunk = serde_json::from_str::<ChatCompletionChunk>(event)
            .expect("parses")
            .into_chunk()
            .expect("converts");
        assert_eq!(chunk.tool_calls[1].index, 1);
        assert_eq!(chunk.tool_calls[1].name.as_deref(), Some("g"));
    }

    #[test]
    fn finish_reasons_map_both_ways() {
        for r in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(finish_reason_from_wire(finish_reason_to_wire(r)), r);
        }
        assert_eq!(
            finish_reason_from_wire("function_call"),
            FinishReason::ToolCalls
        );
        assert_eq!(finish_reason_from_wire("weird"), FinishReason::Other);
    }
}
