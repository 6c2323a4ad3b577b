//! Constrained decoding: the sampler may only pick tokens that keep the output inside a
//! grammar, so JSON answers always parse and validate and forced tool calls are always
//! well-formed.
//!
//! The token-level automaton is `llguidance` (an Earley parser over a lazy lexer, computing
//! the set of allowed tokens against a trie of the vocabulary). This module gives it our
//! vocabulary — each token id's bytes, with byte-level BPE's character mapping and
//! SentencePiece's `▁` and `<0xNN>` undone, and special tokens marked as not-text — and turns
//! requests into its grammars:
//!
//! - [`ResponseFormat::Json`]: any JSON object;
//! - [`ResponseFormat::JsonSchema`]: JSON valid under the schema (`$defs`/`$ref` within the
//!   schema, `anyOf`, `enum`/`const`, numeric bounds, string lengths, `pattern`, common
//!   `format`s, array bounds, `additionalProperties`); keywords it cannot enforce are an
//!   [`Error::Unsupported`] naming them, never silently ignored;
//! - a forced tool call (`tool_choice` required or a named tool): the object
//!   `{"name": <tool>, "arguments": <that tool's parameters>}` for one of the allowed tools;
//! - a free choice (`tool_choice` auto, or none given, with tools and a text answer): that
//!   object, or text that does not start with `{` — the first token decides, and once it
//!   has chosen text the answer is free.
//!
//! JSON is written compactly with `", "` and `": "` separators and no other whitespace:
//! a small model given free rein over whitespace can spend its whole budget on newlines.
//! `oneOf` is enforced as `anyOf` (what `schemars` emits for enums with data, whose branches
//! exclude each other anyway); `chat_typed` validates the result against the real schema.

mod cycles;

use std::sync::Arc;

use any_core::{Error, ResponseFormat, Result, ToolChoice, ToolSpec};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::tokenizer::{EncodeOptions, TokenType, Tokenizer};

/// The vocabulary as llguidance sees it, and its compiled token-set helpers; a
/// [`LocalModel`](crate::LocalModel) builds one on its first constrained request.
///
/// Public for sampling loops of your own: build [`Constraint`]s from it, mask the logits
/// before each draw, and accept each token drawn.
///
/// ```no_run
/// use any_llm_local::constrain::GrammarEngine;
/// use any_llm_local::LocalModel;
/// use serde_json::json;
///
/// # fn main() -> any_core::Result<()> {
/// let model = LocalModel::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// let engine = GrammarEngine::new(model.tokenizer())?;
/// let mut constraint = engine.json_schema(&json!({"type": "boolean"}))?;
/// let mut logits = vec![0.0f32; model.tokenizer().vocab_size()];
/// constraint.mask(&mut logits)?;
/// let t = any_llm_local::sampler::argmax(&logits);
/// constraint.accept(t)?;
/// # Ok(()) }
/// ```
pub struct GrammarEngine {
    factory: ParserFactory,
}

impl std::fmt::Debug for GrammarEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarEngine").finish_non_exhaustive()
    }
}

/// Our tokenizer behind llguidance's tokenizer interface.
struct LocalTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for LocalTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tokenizer.encode(
                text,
                EncodeOptions {
                    add_special: false,
                    parse_special: false,
                },
            ),
            // Not text: the best we can do is the longest tokens that spell these bytes.
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// The bytes each token id stands for, as llguidance wants them: text tokens as their
/// bytes, control and unknown tokens as `0xFF` followed by their name (so that no text can
/// spell them), unused slots empty.
pub(crate) fn token_bytes(tokenizer: &Tokenizer) -> Result<Vec<Vec<u8>>> {
    (0..tokenizer.vocab_size() as u32)
        .map(|id| {
            let special = matches!(
                tokenizer.token_type(id),
                Some(TokenType::Control | TokenType::Unknown)
            );
            if special {
                let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                b.extend_from_slice(tokenizer.token_text(id).unwrap_or("").as_bytes());
                Ok(b)
            } else {
                tokenizer
                    .token_to_piece(id)
                    .map(|p| p.into_owned())
                    .map_err(Error::from)
            }
        })
        .collect()
}

impl GrammarEngine {
    /// Builds the token trie and the parser factory for `tokenizer`.
    ///
    /// # Errors
    /// [`Error::Model`] when the tokenizer has no end-of-generation token (nothing could end a
    /// constrained answer) or llguidance rejects the vocabulary.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let eog = tokenizer.eog_ids();
        let eos = tokenizer.eos_id().or_else(|| eog.first().copied()).ok_or_else(|| {
            Error::model("constrained decoding needs an end-of-generation token; the vocabulary has none")
        })?;
        let info = TokRxInfo {
            vocab_size: tokenizer.vocab_size() as u32,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.unk_id(),
            tok_end_of_turn: tokenizer.eot_id(),
        };
        let words = token_bytes(tokenizer)?;
        let mut eos_tokens = vec![eos];
        eos_tokens.extend(eog.iter().copied().filter(|&t| t != eos));
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos_tokens);
        let env: TokEnv = Arc::new(LocalTokEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
            Error::model_with_source(format!("cannot prepare constrained decoding: {e}"), e)
        })?;
        factory.quiet();
        Ok(GrammarEngine { factory })
    }

    /// A constraint to JSON valid under `schema` (compact: `", "` and `": "`, no other
    /// whitespace).
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming a keyword that cannot be enforced.
    pub fn json_schema(&self, schema: &Value) -> Result<Constraint> {
        self.constraint(&Plan::Json(schema.clone()))
    }

    /// A constraint to one call of one of `tools`: `{"name": <tool>, "arguments": <its
    /// parameters>}`.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for no tools or a name outside `[A-Za-z0-9_.-]{1,64}`;
    /// [`Error::Unsupported`] for a parameter schema that cannot be enforced.
    pub fn tool_call(&self, tools: &[ToolSpec]) -> Result<Constraint> {
        self.constraint(&Plan::ToolCall(tools.to_vec()))
    }

    /// A constraint to either one call of one of `tools`, as [`GrammarEngine::tool_call`]
    /// constrains it, or text that does not start with `{`: what a request with tools and
    /// `tool_choice` auto is held to while its first token decides.
    ///
    /// # Errors
    /// As [`GrammarEngine::tool_call`].
    pub fn tool_call_or_text(&self, tools: &[ToolSpec]) -> Result<Constraint> {
        self.constraint(&Plan::ToolOrText(tools.to_vec()))
    }

    /// A fresh constraint for one answer.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming what llguidance cannot enforce (a schema keyword, say);
    /// [`Error::InvalidRequest`] for a grammar that cannot be built from the request.
    pub(crate) fn constraint(&self, plan: &Plan) -> Result<Constraint> {
        refuse_cycles(plan)?;
        let grammar = match plan {
            Plan::Json(schema) => TopLevelGrammar::from_json_schema(with_compact_options(schema)),
            Plan::ToolCall(tools) => TopLevelGrammar::from_lark(tool_call_grammar(tools, false)?),
            Plan::ToolOrText(tools) => TopLevelGrammar::from_lark(tool_call_grammar(tools, true)?),
        };
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            let what = match plan {
                Plan::Json(_) => "the JSON Schema",
                Plan::ToolCall(_) | Plan::ToolOrText(_) => "the tools' parameter schemas",
            };
            Error::Unsupported(format!(
                "the local backend cannot constrain output to {what}: {}",
                summary(&e.to_string())
            ))
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Unsupported(format!(
                "the local backend cannot constrain output: {}",
                summary(&e)
            )));
        }
        Ok(Constraint {
            matcher: Box::new(matcher),
        })
    }
}

/// What a request asks the output to be.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// JSON valid under this schema.
    Json(Value),
    /// One call of one of these tools, as `{"name": ..., "arguments": ...}`.
    ToolCall(Vec<ToolSpec>),
    /// One such call, or text that does not start with `{`.
    ToolOrText(Vec<ToolSpec>),
}

impl Plan {
    /// The tools a call may name, for plans that allow one.
    pub(crate) fn tools(&self) -> Option<&[ToolSpec]> {
        match self {
            Plan::ToolCall(tools) | Plan::ToolOrText(tools) => Some(tools),
            Plan::Json(_) => None,
        }
    }
}

impl Plan {
    /// The constraint a request asks for, if any: a forced tool call wins over the response
    /// format (a turn that must call a tool has no answer text to format); with tools the
    /// model may call (`tool_choice` auto or unset) and a text answer, the answer is a call
    /// or text. A JSON response format with tools it may call stays JSON: a call and a JSON
    /// answer could not be told apart.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a `false` schema (which admits nothing) or a tool name
    /// that cannot be written in a grammar.
    pub(crate) fn for_request(req: &any_core::ChatRequest) -> Result<Option<Plan>> {
        match &req.tool_choice {
            Some(ToolChoice::Required) => return Ok(Some(Plan::ToolCall(req.tools.clone()))),
            Some(ToolChoice::Tool { name }) => {
                let tools = req.tools.iter().filter(|t| &t.name == name).cloned();
                return Ok(Some(Plan::ToolCall(tools.collect())));
            }
            Some(ToolChoice::Auto) | None if !req.tools.is_empty() => {
                if matches!(req.response_format, ResponseFormat::Text) {
                    return Ok(Some(Plan::ToolOrText(req.tools.clone())));
                }
            }
            _ => {}
        }
        Ok(match &req.response_format {
            ResponseFormat::Text => None,
            ResponseFormat::Json => Some(Plan::Json(json!({"type": "object"}))),
            ResponseFormat::JsonSchema { schema, name, .. } => match schema {
                Value::Bool(true) => Some(Plan::Json(json!({}))),
                Value::Bool(false) => {
                    return Err(Error::InvalidRequest(format!(
                        "response_format schema `{name}` is `false`, which no answer can match"
                    )));
                }
                other => Some(Plan::Json(other.clone())),
            },
        })
    }
}

/// `schema` with llguidance's formatting options: compact JSON, `", "` and `": "`.
fn with_compact_options(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
                "coerce_one_of": true,
            }),
        );
    }
    schema
}

/// A Lark grammar for one call of one of `tools`: the fixed JSON frame around the name is
/// literal text, each tool's arguments an embedded JSON Schema (its own root, so its
/// `$defs` resolve). With `or_text`, text that does not start with `{` is the other choice.
fn tool_call_grammar(tools: &[ToolSpec], or_text: bool) -> Result<String> {
    if tools.is_empty() {
        return Err(Error::InvalidRequest(
            "a forced tool call needs at least one tool".into(),
        ));
    }
    let mut alternatives = Vec::with_capacity(tools.len());
    let mut rules = String::new();
    for (i, tool) in tools.iter().enumerate() {
        let valid_name = !tool.name.is_empty()
            && tool.name.len() <= 64
            && tool
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid_name {
            return Err(Error::InvalidRequest(format!(
                "tool name {:?} must be 1 to 64 ASCII letters, digits, `_`, `-` or `.`",
                tool.name
            )));
        }
        // The literal's text is JSON; as a Lark string it is written JSON-escaped again.
        let head = format!("{{\"name\": \"{}\", \"arguments\": ", tool.name);
        let head = serde_json::to_string(&head).map_err(Error::from)?;
        alternatives.push(format!("{head} args_{i} \"}}\""));
        let params = match &tool.parameters {
            Value::Object(_) => with_compact_options(&tool.parameters),
            Value::Null => with_compact_options(&json!({"type": "object"})),
            other => {
                return Err(Error::InvalidRequest(format!(
                    "tool `{}`: parameters must be a JSON Schema object, found {other}",
                    tool.name
                )));
            }
        };
        rules.push_str(&format!("args_{i}: %json {params}\n"));
    }
    if or_text {
        alternatives.push("TEXT".into());
        rules.push_str("TEXT: /[^{](?s:.*)/\n");
    }
    Ok(format!("start: {}\n{rules}", alternatives.join(" | ")))
}

/// One answer's constraint: which tokens may come next, given those so far.
pub struct Constraint {
    // Boxed: the matcher is large, and it travels in the engine's job messages.
    matcher: Box<Matcher>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Constraint {
    /// Sets the logit of every token the grammar forbids here to minus infinity (`logits`
    /// has one entry per token of the vocabulary).
    ///
    /// # Errors
    /// [`Error::Model`] when the grammar has reached a state with no way on (an llguidance
    /// error).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.matcher.compute_mask().map_err(constraint_err)?;
        if allowed.is_zero() {
            return Err(Error::model(
                "constrained decoding: the grammar allows no token here",
            ));
        }
        for (id, l) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past `token`.
    ///
    /// # Errors
    /// [`Error::Model`] when the token is not allowed (a sampler bug).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher.consume_token(token).map_err(constraint_err)
    }

    /// Whether the grammar is complete and nothing may follow.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// llguidance's error, kept as the source; the message carries only its first line, as
/// the rest is the parser's internal state, which a client must not see.
fn constraint_err<E>(e: E) -> Error
where
    E: std::fmt::Display + Into<any_core::BoxError>,
{
    Error::model_with_source(
        format!("constrained decoding: {}", summary(&e.to_string())),
        e,
    )
}

/// The first line of an llguidance message, at most 300 bytes: what went wrong, without the
/// parser state and grammar dump that follow it.
fn summary(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// [`Error::InvalidRequest`] naming the chain of `$ref`s when a schema of `plan` refers to
/// itself without reaching a value.
fn refuse_cycles(plan: &Plan) -> Result<()> {
    let refuse = |what: String, chain: Vec<String>| {
        Error::InvalidRequest(format!(
            "{what}: `$ref` cycle {} never reaches a value (recursion must go through a \
             property or an array item)",
            chain.join(" -> ")
        ))
    };
    match plan {
        Plan::Json(schema) => match cycles::find(schema) {
            Some(chain) => Err(refuse("the JSON Schema".into(), chain)),
            None => Ok(()),
        },
        Plan::ToolCall(tools) | Plan::ToolOrText(tools) => {
            tools
                .iter()
                .try_for_each(|t| match cycles::find(&t.parameters) {
                    Some(chain) => Err(refuse(format!("tool `{}` parameters", t.name), chain)),
                    None => Ok(()),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_grammar_embeds_each_schema() {
        let tools = vec![
            ToolSpec::new("weather", "w", json!({"type": "object"})),
            ToolSpec::new("add", "a", json!({"type": "object", "required": ["x"]})),
        ];
        let g = tool_call_grammar(&tools, false).unwrap();
        assert!(
            g.starts_with(r#"start: "{\"name\": \"weather\", \"arguments\": " args_0 "}" | "#),
            "{g}"
        );
        assert!(g.contains("args_1: %json {"), "{g}");
        let bad = vec![ToolSpec::new("no spaces", "x", json!({}))];
        assert!(matches!(
            tool_call_grammar(&bad, false),
            Err(Error::InvalidRequest(_))
        ));
    }
}
