//! The Messages API's wire format, and the request built from a [`ChatRequest`].

use any_core::{
    ChatRequest, Content, ContentPart, Error, FinishReason, Message, ResponseFormat, Result, Role,
    ToolChoice, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The tool that carries a structured answer when `response_format` asks for JSON: the
/// Messages API has no JSON mode, so (as Anthropic documents) the schema becomes a tool's
/// `input_schema`, the tool is forced, and its input is the answer.
pub(super) const DEFAULT_FORMAT_TOOL: &str = "json_answer";

/// The request body.
#[derive(Debug, Serialize)]
pub(super) struct MessagesRequest {
    pub(super) model: String,
    pub(super) max_tokens: u32,
    pub(super) messages: Vec<WireMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) system: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) top_k: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) stream: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct WireMessage {
    pub(super) role: &'static str,
    pub(super) content: Vec<Value>,
}

/// The request body for `req`, and the name of the tool carrying a structured answer, if
/// `response_format` asked for one.
pub(super) fn build_request(
    model: &str,
    default_max_tokens: u32,
    req: &ChatRequest,
    stream: bool,
) -> Result<(MessagesRequest, Option<String>)> {
    if req.logprobs.is_some() {
        return Err(Error::Unsupported(
            "anthropic: the Messages API does not return log-probabilities".into(),
        ));
    }
    let s = &req.sampling;
    for (name, set) in [
        ("min_p", s.min_p.is_some()),
        ("seed", s.seed.is_some()),
        ("repetition_penalty", s.repetition_penalty.is_some()),
        ("frequency_penalty", s.frequency_penalty.is_some()),
        ("presence_penalty", s.presence_penalty.is_some()),
    ] {
        if set {
            tracing::warn!(
                parameter = name,
                "anthropic: the Messages API has no such parameter; it is not sent"
            );
        }
    }
    let mut system = Vec::new();
    let mut messages: Vec<WireMessage> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System => {
                let text = m.text();
                if !text.is_empty() {
                    system.push(text.into_owned());
                }
                continue;
            }
            Role::User => ("user", content_blocks(&m.content)?),
            Role::Assistant => ("assistant", assistant_blocks(m)?),
            Role::Tool => {
                let Some(id) = &m.tool_call_id else {
                    return Err(Error::InvalidRequest(format!(
                        "message {i} is a tool result without the tool_call_id it answers"
                    )));
                };
                let text = m.text();
                let mut block = json!({"type": "tool_result", "tool_use_id": id});
                if !text.is_empty() {
                    block["content"] = Value::String(text.into_owned());
                }
                ("user", vec![block])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // The API wants user and assistant turns to alternate: consecutive turns of one role
        // (a tool result then a user's question, say) become one turn.
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(WireMessage {
                role,
                content: blocks,
            }),
        }
    }
    if messages.is_empty() {
        return Err(Error::InvalidRequest(
            "the request has no user or assistant message (the Messages API needs one)".into(),
        ));
    }
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut tool = json!({"name": t.name, "input_schema": t.parameters});
            if let Some(d) = &t.description {
                tool["description"] = Value::String(d.clone());
            }
            tool
        })
        .collect();
    let mut tool_choice = match &req.tool_choice {
        None if req.tools.is_empty() => None,
        None | Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool { name }) => Some(json!({"type": "tool", "name": name})),
    };
    let format_tool = match &req.response_format {
        ResponseFormat::Text => None,
        format => {
            let (name, schema) = match format {
                ResponseFormat::JsonSchema { name, schema, .. } => {
                    (tool_name(name, &req.tools), schema.clone())
                }
                _ => (
                    tool_name(DEFAULT_FORMAT_TOOL, &req.tools),
                    json!({"type": "object"}),
                ),
            };
            tools.push(json!({
                "name": name,
                "description": "Give the final answer: its input is the whole answer, in the required format.",
                "input_schema": schema,
            }));
            tool_choice = Some(match &req.tool_choice {
                // With tools of the caller's own, the model may still call them; otherwise
                // it must answer through the format tool.
                _ if req.tools.is_empty() => json!({"type": "tool", "name": name}),
                Some(ToolChoice::Tool { .. }) => tool_choice.unwrap_or(json!({"type": "any"})),
                _ => json!({"type": "any"}),
            });
            Some(name)
        }
    };
    if req.parallel_tool_calls == Some(false)
        && let Some(choice) = tool_choice.as_mut()
        && choice["type"] != "none"
    {
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    let request = MessagesRequest {
        model: req.model.clone().unwrap_or_else(|| model.to_owned()),
        max_tokens: s.max_tokens.unwrap_or(default_max_tokens),
        messages,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        tools,
        tool_choice,
        stop_sequences: s.stop.clone(),
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        stream,
    };
    Ok((request, format_tool))
}

/// A tool name the API accepts (`^[a-zA-Z0-9_-]{1,64}$`) made from `name`, distinct from
/// the caller's own tools.
fn tool_name(name: &str, tools: &[any_core::ToolSpec]) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    if out.is_empty() {
        out = DEFAULT_FORMAT_TOOL.to_owned();
    }
    while tools.iter().any(|t| t.name == out) {
        out.push_str("_out");
    }
    out
}

fn content_blocks(content: &Content) -> Result<Vec<Value>> {
    match content {
        Content::Text(t) if t.is_empty() => Ok(Vec::new()),
        Content::Text(t) => Ok(vec![json!({"type": "text", "text": t})]),
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| !matches!(p, ContentPart::Text { text } if text.is_empty()))
            .map(|p| match p {
                ContentPart::Text { text } => Ok(json!({"type": "text", "text": text})),
                ContentPart::Image { url, .. } => image_block(url),
            })
            .collect(),
    }
}

fn image_block(url: &str) -> Result<Value> {
    let Some(data_url) = url.strip_prefix("data:") else {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    };
    let Some((meta, data)) = data_url.split_once(',') else {
        return Err(Error::InvalidRequest(format!(
            "image data URL has no comma: {:?}",
            crate::wire::openai::quote_body(url)
        )));
    };
    let Some(media_type) = meta.strip_suffix(";base64") else {
        return Err(Error::InvalidRequest(format!(
            "image data URL must be base64 (data:<type>;base64,...), found data:{meta},..."
        )));
    };
    Ok(json!({
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": data}
    }))
}

fn assistant_blocks(m: &Message) -> Result<Vec<Value>> {
    let mut blocks = content_blocks(&m.content)?;
    for call in &m.tool_calls {
        let input: Value = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.arguments).map_err(|e| {
                Error::InvalidRequest(format!(
                    "the arguments of tool call `{}` ({}) are not JSON: {e}",
                    call.name, call.id
                ))
            })?
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Ok(blocks)
}

/// A whole (non-streamed) answer.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesResponse {
    #[serde(default)]
    pub(super) model: Option<String>,
    pub(super) content: Vec<ContentBlock>,
    #[serde(default)]
    pub(super) stop_reason: Option<String>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

/// One content block of an answer, whole (in a response) or as a stream's
/// `content_block_start` opens it (text and input then empty, filled by deltas); kinds this
/// version does not use (thinking, server tool results, ...) are read and skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

/// Token counts as the API reports them: `input_tokens` leaves out the cached ones.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) input_tokens: Option<u32>,
    #[serde(default)]
    pub(super) output_tokens: Option<u32>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u32>,
}

impl WireUsage {
    /// Later counts replace earlier ones (`message_delta` repeats the running totals).
    pub(super) fn merge(&mut self, later: WireUsage) {
        let keep = |a: &mut Option<u32>, b: Option<u32>| {
            if b.is_some() {
                *a = b;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
    }

    pub(super) fn to_usage(self) -> Usage {
        let cached = self.cache_read_input_tokens;
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0)
                + self.cache_creation_input_tokens.unwrap_or(0)
                + cached.unwrap_or(0),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_prompt_tokens: cached,
        }
    }
}

/// The finish reason a `stop_reason` stands for.
pub(super) fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

/// The HTTP status an error event's type stands for, so a streamed error maps to the same
/// kind as the same error before the stream.
pub(super) fn status_of_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::{ToolCall, ToolSpec};

    #[test]
    fn system_is_hoisted_and_turns_alternate() {
        let req = ChatRequest::builder()
            .system("Be brief.")
            .user("What is the weather?")
            .message(Message::assistant_tool_calls(vec![
                ToolCall::new("t1", "weather", r#"{"city":"Lyon"}"#),
                ToolCall::new("t2", "weather", r#"{"city":"Nice"}"#),
            ]))
            .message(Message::tool("t1", "12°C"))
            .message(Message::tool("t2", "18°C"))
            .user("And tomorrow?")
            .system("Use Celsius.")
            .tool(ToolSpec::new(
                "weather",
                "Weather",
                json!({"type": "object"}),
            ))
            .build();
        let (body, format) = build_request("claude-x", 4096, &req, true).unwrap();
        assert!(format.is_none());
        assert_eq!(body.system.as_deref(), Some("Be brief.\n\nUse Celsius."));
        let roles: Vec<_> = body.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        let last = &body.messages[2].content;
        assert_eq!(last.len(), 3);
        assert_eq!(last[0]["type"], "tool_result");
        assert_eq!(last[0]["tool_use_id"], "t1");
        assert_eq!(last[1]["tool_use_id"], "t2");
        assert_eq!(last[2]["text"], "And tomorrow?");
        assert_eq!(body.messages[1].content[1]["input"]["city"], "Nice");
        assert_eq!(body.tool_choice, Some(json!({"type": "auto"})));
        assert_eq!(body.max_tokens, 4096);
    }

    #[test]
    fn tool_choices_and_parallel_calls() {
        let base = || {
            ChatRequest::builder().user("hi").tool(ToolSpec::new(
                "a",
                "A",
                json!({"type": "object"}),
            ))
        };
        let choice = |req: ChatRequest| build_request("m", 1, &req, false).unwrap().0.tool_choice;
        assert_eq!(
            choice(base().tool_choice(ToolChoice::Required).build()),
            Some(json!({"type": "any"}))
        );
        assert_eq!(
            choice(
                base()
                    .tool_choice(ToolChoice::None)
                    .parallel_tool_calls(false)
                    .build()
            ),
            Some(json!({"type": "none"}))
        );
        assert_eq!(
            choice(
                base()
                    .tool_choice(ToolChoice::Tool { name: "a".into() })
                    .parallel_tool_calls(false)
                    .build()
            ),
            Some(json!({"type": "tool", "name": "a", "disable_parallel_tool_use": true}))
        );
    }

    #[test]
    fn a_json_schema_becomes_a_forced_tool() {
        let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}});
        let req = ChatRequest::builder()
            .user("give x")
            .response_format(ResponseFormat::JsonSchema {
                name: "my answer".into(),
                schema: schema.clone(),
                strict: true,
            })
            .build();
        let (body, format) = build_request("m", 1, &req, false).unwrap();
        assert_eq!(format.as_deref(), Some("my_answer"));
        assert_eq!(body.tools[0]["input_schema"], schema);
        assert_eq!(
            body.tool_choice,
            Some(json!({"type": "tool", "name": "my_answer"}))
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let req = ChatRequest::new(vec![Message {
            role: Role::Tool,
            ..Message::user("result")
        }]);
        let err = build_request("m", 1, &req, false).unwrap_err();
        assert!(err.to_string().contains("tool_call_id"), "{err}");
        let req = ChatRequest::new(vec![Message::assistant_tool_calls(vec![ToolCall::new(
            "c",
            "f",
            "{not json",
        )])]);
        let err = build_request("m", 1, &req, false).unwrap_err();
        assert!(err.to_string().contains("`f`"), "{err}");
        let req = ChatRequest::builder()
            .system("only a system prompt")
            .build();
        assert!(build_request("m", 1, &req, false).is_err());
        let req = ChatRequest::builder().user("x").logprobs(1).build();
        assert!(matches!(
            build_request("m", 1, &req, false),
            Err(Error::Unsupported(_))
        ));
    }

    #[test]
    fn images_become_url_or_base64_sources() {
        let req = ChatRequest::new(vec![Message::user(vec![
            ContentPart::Text {
                text: "what is it?".into(),
            },
            ContentPart::Image {
                url: "data:image/png;base64,AAAA".into(),
                detail: None,
            },
            ContentPart::Image {
                url: "https://example.org/cat.jpg".into(),
                detail: None,
            },
        ])]);
        let (body, _) = build_request("m", 1, &req, false).unwrap();
        let c = &body.messages[0].content;
        assert_eq!(
            c[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(c[2]["source"]["type"], "url");
    }
}
