//! From the Messages API's stream events (and whole answers) to [`ChatChunk`]s.

use std::collections::HashMap;

use any_core::{ChatChunk, Error, FinishReason, Result, ToolCallDelta};
use serde::Deserialize;
use serde_json::Value;

use super::wire::{ContentBlock, MessagesResponse, WireUsage, finish_reason, status_of_error_type};
use crate::wire::openai::error_from_status;

/// The events this version acts on; every other `type` (including `ping` and kinds added
/// later) is read and skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// What a content block of the stream is.
#[derive(Debug)]
enum Block {
    Text,
    /// A tool call, the n-th of the answer.
    Tool(u32),
    /// The structured answer's tool: its input is the answer's text. `sent` says whether
    /// any of it was streamed yet; `start` is the input given at the block's start.
    Answer {
        sent: bool,
        start: Value,
    },
    Skipped,
}

/// Turns the events of one answer into chunks.
#[derive(Debug)]
pub(super) struct EventMapper {
    format_tool: Option<String>,
    blocks: HashMap<u32, Block>,
    tools: u32,
    answered_by_format_tool: bool,
    usage: WireUsage,
    stopped: bool,
    finished: bool,
}

impl EventMapper {
    pub(super) fn new(format_tool: Option<String>) -> Self {
        EventMapper {
            format_tool,
            blocks: HashMap::new(),
            tools: 0,
            answered_by_format_tool: false,
            usage: WireUsage::default(),
            stopped: false,
            finished: false,
        }
    }

    /// Whether `message_stop` was seen: the answer is complete.
    pub(super) fn is_done(&self) -> bool {
        self.stopped
    }

    /// The chunk (if any) for one event's JSON `data`.
    pub(super) fn event(&mut self, data: &str) -> Result<Option<ChatChunk>> {
        let event: Event = crate::http::parse_json("anthropic", data.as_bytes())?;
        Ok(match event {
            Event::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.usage.merge(u);
                }
                message.model.map(|m| ChatChunk {
                    model: Some(m),
                    ..Default::default()
                })
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::Text { text } => {
                    self.blocks.insert(index, Block::Text);
                    (!text.is_empty()).then(|| ChatChunk::text(text))
                }
                ContentBlock::ToolUse { name, input, .. }
                    if self.format_tool.as_deref() == Some(name.as_str()) =>
                {
                    self.answered_by_format_tool = true;
                    self.blocks.insert(
                        index,
                        Block::Answer {
                            sent: false,
                            start: input,
                        },
                    );
                    None
                }
                ContentBlock::ToolUse { id, name, input } => {
                    let n = self.tools;
                    self.tools += 1;
                    self.blocks.insert(index, Block::Tool(n));
                    // The input at the start is `{}` when the deltas follow; a complete one
                    // (some servers send it whole) is the arguments.
                    let arguments = match &input {
                        Value::Object(o) if o.is_empty() => String::new(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    Some(tool_chunk(n, Some(id), Some(name), arguments))
                }
                ContentBlock::Other => {
                    self.blocks.insert(index, Block::Skipped);
                    None
                }
            },
            Event::ContentBlockDelta { index, delta } => {
                match (self.blocks.get_mut(&index), delta) {
                    (Some(Block::Text), Delta::Text { text }) => Some(ChatChunk::text(text)),
                    (Some(Block::Tool(n)), Delta::InputJson { partial_json }) => {
                        Some(tool_chunk(*n, None, None, partial_json))
                    }
                    (Some(Block::Answer { sent, .. }), Delta::InputJson { partial_json }) => {
                        *sent |= !partial_json.is_empty();
                        Some(ChatChunk::text(partial_json))
                    }
                    (Some(Block::Skipped), _) | (_, Delta::Other) => None,
                    (None, _) => {
                        return Err(Error::InvalidResponse(format!(
                            "anthropic: content_block_delta for block {index}, which never started"
                        )));
                    }
                    (Some(block), delta) => {
                        return Err(Error::InvalidResponse(format!(
                            "anthropic: a {delta:?} for a {block:?} block"
                        )));
                    }
                }
            }
            Event::ContentBlockStop { index } => match self.blocks.get(&index) {
                Some(Block::Answer { sent: false, start }) => {
                    // No deltas: the whole input came with the start.
                    let text = match start {
                        Value::Null => "{}".to_owned(),
                        v => v.to_string(),
                    };
                    Some(ChatChunk::text(text))
                }
                _ => None,
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.merge(u);
                }
                delta.stop_reason.map(|r| {
                    self.finished = true;
                    ChatChunk::finish(self.finish_reason(&r), Some(self.usage.to_usage()))
                })
            }
            Event::MessageStop => {
                self.stopped = true;
                None
            }
            Event::Error { error } => return Err(stream_error(&error)),
            Event::Other => None,
        })
    }

    fn finish_reason(&self, stop_reason: &str) -> FinishReason {
        match finish_reason(stop_reason) {
            // The forced answer tool is how a structured answer ends, unless the model also
            // called real tools.
            FinishReason::ToolCalls if self.answered_by_format_tool && self.tools == 0 => {
                FinishReason::Stop
            }
            other => other,
        }
    }

    /// The chunks of a whole (non-streamed) answer.
    pub(super) fn response(mut self, response: MessagesResponse) -> Vec<ChatChunk> {
        let mut chunks = vec![ChatChunk {
            model: response.model,
            ..Default::default()
        }];
        for block in response.content {
            match block {
                ContentBlock::Text { text } => chunks.push(ChatChunk::text(text)),
                ContentBlock::ToolUse { name, input, .. }
                    if self.format_tool.as_deref() == Some(name.as_str()) =>
                {
                    self.answered_by_format_tool = true;
                    chunks.push(ChatChunk::text(input.to_string()));
                }
                ContentBlock::ToolUse { id, name, input } => {
                    let n = self.tools;
                    self.tools += 1;
                    chunks.push(tool_chunk(n, Some(id), Some(name), input.to_string()));
                }
                ContentBlock::Other => {}
            }
        }
        let usage = response.usage.map(WireUsage::to_usage);
        let reason = response.stop_reason.map(|r| self.finish_reason(&r));
        chunks.push(ChatChunk {
            finish_reason: reason,
            usage,
            ..Default::default()
        });
        chunks
    }
}

fn tool_chunk(
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
) -> ChatChunk {
    ChatChunk {
        tool_calls: vec![ToolCallDelta {
            index,
            id,
            name,
            arguments,
        }],
        ..Default::default()
    }
}

/// The error an `error` event stands for: the same kind as the same error with its status.
fn stream_error(error: &Value) -> Error {
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let body = serde_json::json!({"type": "error", "error": error}).to_string();
    error_from_status(
        "anthropic",
        status_of_error_type(kind),
        &http::HeaderMap::new(),
        body.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format_tool: Option<&str>, events: &[&str]) -> Result<Vec<ChatChunk>> {
        let mut m = EventMapper::new(format_tool.map(Into::into));
        let mut out = Vec::new();
        for e in events {
            out.extend(m.event(e)?);
        }
        Ok(out)
    }

    #[test]
    fn tool_arguments_stream_as_fragments_of_one_call() {
        let chunks = run(
            None,
            &[
                r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Ly"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\"}"}}"#,
                r#"{"type":"content_block_stop","index":1}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        )
        .unwrap();
        let mut acc = any_core::Accumulator::new();
        chunks.into_iter().for_each(|c| acc.push(c));
        let r = acc.finish().unwrap();
        assert_eq!(r.text(), "Let me check.");
        assert_eq!(r.tool_calls()[0].id, "toolu_1");
        assert_eq!(r.tool_calls()[0].arguments, r#"{"city": "Lyon"}"#);
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens),
            (15, 42, Some(5))
        );
    }

    #[test]
    fn the_format_tool_is_the_answer_text() {
        let chunks = run(
            Some("answer"),
            &[
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"answer","input":{}}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"x\":"}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":3}}"#,
            ],
        )
        .unwrap();
        let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(text, r#"{"x":1}"#);
        assert!(chunks.iter().all(|c| c.tool_calls.is_empty()));
        assert_eq!(
            chunks.last().unwrap().finish_reason,
            Some(FinishReason::Stop)
        );
    }

    #[test]
    fn stop_reasons_unknown_events_and_errors() {
        for (reason, want) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other),
        ] {
            let ev = format!(r#"{{"type":"message_delta","delta":{{"stop_reason":"{reason}"}}}}"#);
            let chunks = run(
                None,
                &[
                    r#"{"type":"ping"}"#,
                    r#"{"type":"future_event","x":1}"#,
                    &ev,
                ],
            )
            .unwrap();
            assert_eq!(chunks[0].finish_reason, Some(want), "{reason}");
        }
        let err = run(
            None,
            &[r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#],
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Provider {
                    status: Some(529),
                    ..
                }
            ) && err.is_retryable()
        );
        let err = run(None, &[r#"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"x"}}"#]).unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(m) if m.contains("block 3")));
        let err = run(None, &["{not json"]).unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(m) if m.contains("{not json")));
    }

    #[test]
    fn thinking_blocks_are_skipped() {
        let chunks = run(
            None,
            &[
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"Hi"}}"#,
            ],
        )
        .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "Hi");
    }
}
