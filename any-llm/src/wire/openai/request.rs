//! The Chat Completions request body and its conversions to and from [`any_core::ChatRequest`].

use any_core::{ChatRequest, Content, Error, Message, Result, Sampling, ToolSpec, UserId};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::{kind, null_default, quote};
use crate::wire::openai::response::ToolCall;

/// The body of `POST /v1/chat/completions`.
///
/// Besides OpenAI's own parameters it carries `top_k`, `min_p` and `repetition_penalty`,
/// which vLLM, llama.cpp server and others accept; they are only serialised when set, and a
/// client talking to a server that rejects them clears them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model id. OpenAI requires it; a server serving one model may do without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Tools the model may call.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tools: Vec<Tool>,
    /// Whether and which tool to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling (not OpenAI; vLLM, llama.cpp and others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Min-p sampling (not OpenAI; vLLM, llama.cpp and others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Multiplicative repetition penalty (not OpenAI; vLLM, llama.cpp and others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// The most tokens to generate (the older name, accepted everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The most tokens to generate (the newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Seed for reproducible sampling. The wire's signed integer maps to the vocabulary's
    /// `u64` bit for bit, so every value round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Frequency penalty, in `[-2, 2]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Presence penalty, in `[-2, 2]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Whether to return the chosen tokens' log-probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many alternatives per token to return with `logprobs` (0 to 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    /// How many choices to generate; only 1 is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Whether to stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Options for a streamed answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// An id for the end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Biases by token id (`{"50256": -100}`). Read so that it is refused rather than
    /// silently ignored: keys must be token ids and values in -100..=100, and a non-empty
    /// map is unsupported (the vocabulary has no logit bias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<serde_json::Map<String, Value>>,
}

/// Options for a streamed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send token counts in one last chunk with no choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `stop`: one string or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopSequences {
    /// The sequences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

/// Who a [`RequestMessage`] is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// System instructions.
    System,
    /// System instructions, under the name OpenAI's newer models use.
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMessage {
    /// Who it is from.
    pub role: Role,
    /// What it says; may be `null` on an assistant message that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// A participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tool calls an assistant message made.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    /// On a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An assistant's refusal, when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// Message content: a string, or an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts, in order.
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for MessageContent {
    // By hand rather than `untagged`, so that bad content says what it was.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(MessageContent::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let shown = quote(&item);
                    serde_json::from_value(item)
                        .map_err(|e| D::Error::custom(format!("content part {i} ({shown}): {e}")))
                })
                .collect::<std::result::Result<_, _>>()
                .map(MessageContent::Parts),
            other => Err(D::Error::custom(format!(
                "message content must be a string or an array of parts, found {}: {}",
                kind(&other),
                quote(&other)
            ))),
        }
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (or `data:` URL).
    ImageUrl {
        /// Where the image is.
        image_url: ImageUrl,
    },
    /// A refusal, in an assistant message.
    Refusal {
        /// What the model said instead of answering.
        refusal: String,
    },
    /// Audio input: understood, but nothing in the vocabulary carries it.
    InputAudio {
        /// The audio object as sent.
        input_audio: Value,
    },
    /// A file input: understood, but nothing in the vocabulary carries it.
    File {
        /// The file object as sent.
        file: Value,
    },
}

/// An image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `"low"`, `"high"` or `"auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A tool the model may call. Only `"type": "function"` tools exist in Chat Completions'
/// vocabulary here; another type is refused at conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `"function"`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments; missing means "no arguments".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the provider must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"`, or
/// `{"type": "function", "function": {"name": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No tool call.
    None,
    /// The model decides.
    Auto,
    /// At least one tool call.
    Required,
    /// A call of this function.
    Function(FunctionName),
}

/// A function named in a [`ToolChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionName {
    /// The function's name.
    pub name: String,
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(f) => {
                json!({"type": "function", "function": {"name": f.name}}).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => match s.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                other => Err(D::Error::custom(format!(
                    "tool_choice must be \"none\", \"auto\", \"required\" or a function object, found \"{other}\""
                ))),
            },
            Value::Object(o) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str);
                match (o.get("type").and_then(Value::as_str), name) {
                    (Some("function") | None, Some(name)) => {
                        Ok(ToolChoice::Function(FunctionName { name: name.into() }))
                    }
                    _ => Err(D::Error::custom(format!(
                        "tool_choice object must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, found {}",
                        quote(&v)
                    ))),
                }
            }
            other => Err(D::Error::custom(format!(
                "tool_choice must be a string or an object, found {}: {}",
                kind(other),
                quote(other)
            ))),
        }
    }
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The schema of a [`ResponseFormat::JsonSchema`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema; missing means any JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Whether the schema must be followed exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The most alternatives per token OpenAI allows for `top_logprobs`.
const MAX_TOP_LOGPROBS: u8 = 20;

impl ChatCompletionRequest {
    /// Whether the answer is to be streamed.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streamed answer should end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options.and_then(|o| o.include_usage) == Some(true)
    }

    /// The vocabulary's request for this body: what a server hands its chat service. The
    /// `user` becomes a [`UserId`] extension; `stream` and `stream_options` are the server's
    /// business and are not part of the result.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] naming the parameter for what the vocabulary cannot carry
    /// (`n` other than 1, audio or file content, a non-function tool, `top_logprobs` over
    /// 20), and for what [`ChatRequest::validate`] rejects.
    pub fn into_chat_request(self) -> Result<ChatRequest> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if let Some(n) = self.n
            && n != 1
        {
            return bad(format!("n must be 1 (one choice per request), found {n}"));
        }
        let logprobs = match (self.logprobs, self.top_logprobs) {
            (_, Some(top)) if top > MAX_TOP_LOGPROBS => {
                return bad(format!(
                    "top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, found {top}"
                ));
            }
            (Some(true), top) => Some(top.unwrap_or(0)),
            (_, Some(top)) if top > 0 => {
                return bad(format!("top_logprobs ({top}) needs logprobs to be true"));
            }
            _ => None,
        };
        if let Some(bias) = &self.logit_bias {
            for (key, value) in bias {
                if key.parse::<u32>().is_err() {
                    return bad(format!(
                        "logit_bias keys must be token ids (non-negative integers), found {key:?}"
                    ));
                }
                if !value
                    .as_f64()
                    .is_some_and(|v| (-100.0..=100.0).contains(&v))
                {
                    return bad(format!(
                        "logit_bias[{key:?}] must be a number between -100 and 100, found {value}"
                    ));
                }
            }
            if !bias.is_empty() {
                return Err(Error::Unsupported(
                    "logit_bias is not supported by this server".into(),
                ));
            }
        }
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.into_message()
                    .map_err(|e| Error::InvalidRequest(format!("messages[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let tools = self
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                if t.kind != "function" {
                    return Err(Error::InvalidRequest(format!(
                        "tools[{i}] has type \"{}\"; only \"function\" tools are supported",
                        t.kind
                    )));
                }
                Ok(ToolSpec {
                    name: t.function.name,
                    description: t.function.description,
                    parameters: t
                        .function
                        .parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tool_choice = self.tool_choice.map(|c| match c {
            ToolChoice::None => any_core::ToolChoice::None,
            ToolChoice::Auto => any_core::ToolChoice::Auto,
            ToolChoice::Required => any_core::ToolChoice::Required,
            ToolChoice::Function(f) => any_core::ToolChoice::Tool { name: f.name },
        });
        let response_format = match self.response_format {
            None | Some(ResponseFormat::Text) => any_core::ResponseFormat::Text,
            Some(ResponseFormat::JsonObject) => any_core::ResponseFormat::Json,
            Some(ResponseFormat::JsonSchema { json_schema: f }) => match f.schema {
                Some(schema) => any_core::ResponseFormat::JsonSchema {
                    name: f.name,
                    schema,
                    strict: f.strict.unwrap_or(false),
                },
                None => any_core::ResponseFormat::Json,
            },
        };
        let sampling = Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop: self.stop.map(StopSequences::into_vec).unwrap_or_default(),
            seed: self.seed.map(|s| s as u64),
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
        };
        let mut req = ChatRequest {
            model: self.model,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            sampling,
            response_format,
            logprobs,
            ..Default::default()
        };
        if let Some(user) = self.user {
            req.extensions.insert(UserId(user));
        }
        req.validate()?;
        Ok(req)
    }

    /// The body a client sends for `req`: `max_tokens` carries the token limit (every
    /// compatible server knows it), a [`UserId`] extension becomes `user`. `stream` is left
    /// unset; a client that streams sets it (and `stream_options`).
    pub fn from_chat_request(req: &ChatRequest) -> Self {
        let s = &req.sampling;
        let messages = req
            .messages
            .iter()
            .map(RequestMessage::from_message)
            .collect();
        let tools = req
            .tools
            .iter()
            .map(|t| Tool {
                kind: function_type(),
                function: FunctionDefinition {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: Some(t.parameters.clone()),
                    strict: None,
                },
            })
            .collect();
        let tool_choice = req.tool_choice.as_ref().map(|c| match c {
            any_core::ToolChoice::None => ToolChoice::None,
            any_core::ToolChoice::Auto => ToolChoice::Auto,
            any_core::ToolChoice::Required => ToolChoice::Required,
            any_core::ToolChoice::Tool { name } => {
                ToolChoice::Function(FunctionName { name: name.clone() })
            }
        });
        let response_format = match &req.response_format {
            any_core::ResponseFormat::Text => None,
            any_core::ResponseFormat::Json => Some(ResponseFormat::JsonObject),
            any_core::ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => Some(ResponseFormat::JsonSchema {
                json_schema: JsonSchemaFormat {
                    name: name.clone(),
                    description: None,
                    schema: Some(schema.clone()),
                    strict: Some(*strict),
                },
            }),
        };
        ChatCompletionRequest {
            model: req.model.clone(),
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: req.parallel_tool_calls,
            response_format,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            repetition_penalty: s.repetition_penalty,
            max_tokens: s.max_tokens,
            max_completion_tokens: None,
            stop: match s.stop.len() {
                0 => None,
                _ => Some(StopSequences::Many(s.stop.clone())),
            },
            seed: s.seed.map(|s| s as i64),
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            logprobs: req.logprobs.map(|_| true),
            top_logprobs: req.logprobs.filter(|&n| n > 0),
            n: None,
            stream: None,
            stream_options: None,
            user: req.extensions.get::<UserId>().map(|u| u.0.clone()),
            logit_bias: None,
        }
    }
}

impl RequestMessage {
    /// The vocabulary's message.
    ///
    /// # Errors
    /// A message naming what cannot be carried: audio or file parts, a `tool` message without
    /// `tool_call_id`.
    fn into_message(self) -> std::result::Result<Message, String> {
        let role = match self.role {
            Role::System | Role::Developer => any_core::Role::System,
            Role::User => any_core::Role::User,
            Role::Assistant => any_core::Role::Assistant,
            Role::Tool => any_core::Role::Tool,
        };
        if role == any_core::Role::Tool && self.tool_call_id.is_none() {
            return Err("a tool message needs `tool_call_id`".into());
        }
        let content = match self.content {
            None => Content::default(),
            Some(MessageContent::Text(t)) => Content::Text(t),
            Some(MessageContent::Parts(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for (i, part) in parts.into_iter().enumerate() {
                    out.push(match part {
                        ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                            any_core::ContentPart::Text { text }
                        }
                        ContentPart::ImageUrl { image_url } => any_core::ContentPart::Image {
                            url: image_url.url,
                            detail: image_url.detail,
                        },
                        ContentPart::InputAudio { .. } => {
                            return Err(format!("content part {i}: audio input is not supported"));
                        }
                        ContentPart::File { .. } => {
                            return Err(format!("content part {i}: file input is not supported"));
                        }
                    });
                }
                // A text-only list is the same as its text; keep the simpler shape.
                if out
                    .iter()
                    .all(|p| matches!(p, any_core::ContentPart::Text { .. }))
                {
                    Content::Text(Content::Parts(out).text().into_owned())
                } else {
                    Content::Parts(out)
                }
            }
        };
        // A refusal with no content is what the assistant said.
        let content = match (content, self.refusal) {
            (c, Some(refusal)) if c.is_empty() => Content::Text(refusal),
            (c, _) => c,
        };
        Ok(Message {
            role,
            content,
            tool_calls: self
                .tool_calls
                .into_iter()
                .map(|c| any_core::ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect(),
            tool_call_id: self.tool_call_id,
            name: self.name,
        })
    }

    /// The wire message for a vocabulary message.
    fn from_message(m: &Message) -> Self {
        let role = match m.role {
            any_core::Role::System => Role::System,
            any_core::Role::User => Role::User,
            any_core::Role::Assistant => Role::Assistant,
            any_core::Role::Tool => Role::Tool,
        };
        let content = match &m.content {
            // An assistant turn that only calls tools sends `null` content, as OpenAI does.
            Content::Text(t) if t.is_empty() && !m.tool_calls.is_empty() => None,
            Content::Text(t) => Some(MessageContent::Text(t.clone())),
            Content::Parts(parts) => Some(MessageContent::Parts(
                parts
                    .iter()
                    .map(|p| match p {
                        any_core::ContentPart::Text { text } => {
                            ContentPart::Text { text: text.clone() }
                        }
                        any_core::ContentPart::Image { url, detail } => ContentPart::ImageUrl {
                            image_url: ImageUrl {
                                url: url.clone(),
                                detail: detail.clone(),
                            },
                        },
                    })
                    .collect(),
            )),
        };
        RequestMessage {
            role,
            content,
            name: m.name.clone(),
            tool_calls: m.tool_calls.iter().map(ToolCall::from_call).collect(),
            tool_call_id: m.tool_call_id.clone(),
            refusal: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> ChatCompletionRequest {
        serde_json::from_str(body).expect("the body parses")
    }

    #[test]
    fn a_full_request_converts_and_comes_back() {
        let wire = parse(
            r#"{
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in "},
                    {"type": "text", "text": "Lyon?"}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\":\"Lyon\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12C"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather",
                "description": "Weather now", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a",
                "schema": {"type": "object"}, "strict": true}},
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
            "stop": ["END", "\n\n"], "seed": -1, "frequency_penalty": 0.1,
            "presence_penalty": -0.2, "logprobs": true, "top_logprobs": 3, "n": 1,
            "stream": true, "stream_options": {"include_usage": true}, "user": "u-7"
        }"#,
        );
        assert!(wire.is_stream());
        assert!(wire.include_usage());
        let req = wire.into_chat_request().expect("converts");
        assert_eq!(req.model.as_deref(), Some("m"));
        assert_eq!(req.messages[0].role, any_core::Role::System);
        assert_eq!(
            req.messages[1].content,
            Content::Text("Weather in Lyon?".into())
        );
        assert_eq!(req.messages[2].tool_calls[0].name, "weather");
        assert_eq!(
            req.messages[2].tool_calls[0].arguments,
            r#"{"city":"Lyon"}"#
        );
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(req.tools[0].parameters["required"][0], "city");
        assert_eq!(
            req.tool_choice,
            Some(any_core::ToolChoice::Tool {
                name: "weather".into()
            })
        );
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert!(matches!(
            &req.response_format,
            any_core::ResponseFormat::JsonSchema { name, strict: true, .. } if name == "a"
        ));
        assert_eq!(
            req.sampling.max_tokens,
            Some(20),
            "max_completion_tokens wins"
        );
        assert_eq!(req.sampling.stop, ["END", "\n\n"]);
        assert_eq!(req.sampling.seed, Some(u64::MAX));
        assert_eq!(req.logprobs, Some(3));
        assert_eq!(req.extensions.get::<UserId>(), Some(&UserId("u-7".into())));

        let back = ChatCompletionRequest::from_chat_request(&req);
        assert_eq!(back.seed, Some(-1));
        assert_eq!(back.max_tokens, Some(20));
        assert_eq!(back.logprobs, Some(true));
        assert_eq!(back.top_logprobs, Some(3));
        assert_eq!(back.user.as_deref(), Some("u-7"));
        // The assistant turn that only calls tools goes out with null content.
        let json = serde_json::to_value(&back).expect("serialises");
        assert!(json["messages"][2].get("content").is_none());
        assert_eq!(json["messages"][2]["tool_calls"][0]["type"], "function");
        assert_eq!(json["tool_choice"]["function"]["name"], "weather");
        assert_eq!(json["response_format"]["type"], "json_schema");
        // And the serialised body converts to the same request again.
        let again: ChatCompletionRequest = serde_json::from_value(json).expect("parses");
        let again = again.into_chat_request().expect("converts");
        assert_eq!(again.messages, req.messages);
        assert_eq!(again.tools, req.tools);
        assert_eq!(again.sampling, req.sampling);
        assert_eq!(again.response_format, req.response_format);
    }

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let req = parse(
            r#"{"messages": [{"role": "user", "content": "hi", "extra": 1}],
                "tools": null, "tool_choice": null, "stop": null, "temperature": null,
                "response_format": {"type": "text"}, "vendor": {"x": 1}}"#,
        )
        .into_chat_request()
        .expect("converts");
        assert_eq!(req.model, None);
        assert!(req.tools.is_empty());
        assert!(req.sampling.stop.is_empty());
        assert_eq!(req.response_format, any_core::ResponseFormat::Text);
    }

    #[test]
    fn malformed_bodies_say_what_was_wrong() {
        let err = |body: &str| serde_json::from_str::<ChatCompletionRequest>(body).unwrap_err();
        let e = err(r#"{"messages": [{"role": "user", "content": 42}]}"#).to_string();
        assert!(
            e.contains("string or an array of parts, found a number: 42"),
            "{e}"
        );
        let e = err(r#"{"messages": [{"role": "wizard", "content": "x"}]}"#).to_string();
        assert!(e.contains("unknown variant `wizard`"), "{e}");
        let e = err(r#"{"messages": [], "tool_choice": "sometimes"}"#).to_string();
        assert!(e.contains(r#"found "sometimes""#), "{e}");
        let e =
            err(r#"{"messages": [{"role": "user", "content": [{"type": "video"}]}]}"#).to_string();
        assert!(e.contains("content part 0") && e.contains("video"), "{e}");
        let e = err(r#"{"model": "m"}"#).to_string();
        assert!(e.contains("missing field `messages`"), "{e}");
    }

    #[test]
    fn what_cannot_be_carried_is_refused_not_dropped() {
        let convert = |body: &str| parse(body).into_chat_request().unwrap_err().to_string();
        let e = convert(r#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#);
        assert!(e.contains("n must be 1") && e.contains("found 2"), "{e}");
        let e = convert(
            r#"{"messages": [{"role": "user", "content": [{"type": "input_audio",
                "input_audio": {"data": "", "format": "wav"}}]}]}"#,
        );
        assert!(e.contains("messages[0]") && e.contains("audio"), "{e}");
        let e = convert(r#"{"messages": [{"role": "tool", "content": "x"}]}"#);
        assert!(e.contains("tool_call_id"), "{e}");
        let e = convert(r#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 21}"#);
        assert!(e.contains("top_logprobs must be between 0 and 20"), "{e}");
        let e = convert(r#"{"messages": []}"#);
        assert!(e.contains("no messages"), "{e}");
        let e = convert(
            r#"{"messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "custom", "function": {"name": "f"}}]}"#,
        );
        assert!(e.contains(r#"type "custom""#), "{e}");
    }

    #[test]
    fn images_stay_parts_and_stop_may_be_one_string() {
        let req = parse(
            r#"{"messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}}
            ]}], "stop": "\n"}"#,
        )
        .into_chat_request()
        .expect("converts");
        let Content::Parts(parts) = &req.messages[0].content else {
            panic!("expected parts, found {:?}", req.messages[0].content);
        };
        assert!(
            matches!(&parts[1], any_core::ContentPart::Image { detail: Some(d), .. } if d == "low")
        );
        assert_eq!(req.sampling.stop, ["\n"]);
        let back = serde_json::to_value(ChatCompletionRequest::from_chat_request(&req))
            .expect("serialises");
        assert_eq!(
            back["messages"][0]["content"][1]["image_url"]["detail"],
            "low"
        );
    }
}
