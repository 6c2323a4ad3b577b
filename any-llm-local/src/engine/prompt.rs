//! Chat requests rendered through the model's template and encoded so that text from the
//! messages stays text: control tokens come only from the template itself.

use any_core::{ChatRequest, Error, Result};

use super::LocalModel;
use crate::tokenizer::{Escapes, Tokenizer, TokenizerError};

impl LocalModel {
    /// The prompt a chat request renders to, through the model's template.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the template rejects the conversation.
    pub fn render_prompt(&self, req: &ChatRequest) -> Result<String> {
        let (text, escapes) = self.render_escaped(req)?;
        Ok(escapes.restore(&text).into_owned())
    }

    /// Token ids of the prompt a chat request renders to: the control tokens the template
    /// writes are parsed, while text from the messages and tools is encoded as plain text,
    /// so `<|im_end|>` written in a message cannot close its turn and forge another.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the template rejects the conversation.
    pub fn encode_prompt(&self, req: &ChatRequest) -> Result<Vec<u32>> {
        let (text, escapes) = self.render_escaped(req)?;
        Ok(self.inner.tokenizer.encode_escaped(&text, &escapes, true))
    }

    /// The rendered prompt with control-token text from the request swapped for
    /// placeholders, and the table that restores them.
    fn render_escaped(&self, req: &ChatRequest) -> Result<(String, Escapes)> {
        let tok = &self.inner.tokenizer;
        let mut escapes = Escapes::new();
        let mut escape = |v: serde_json::Value| {
            escape_json(tok, v, &mut escapes).map_err(|e| Error::InvalidRequest(e.to_string()))
        };
        if let Some(i) = req.messages.iter().position(|m| {
            matches!(&m.content, any_core::Content::Parts(parts)
                if parts.iter().any(|p| matches!(p, any_core::ContentPart::Image { .. })))
        }) {
            return Err(Error::Unsupported(format!(
                "messages[{i}] has an image part, and the local backend reads text only"
            )));
        }
        let messages: Vec<serde_json::Value> = req
            .messages
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).map_err(Error::from)?;
                // Templates expect `content` to be a string.
                v["content"] = serde_json::Value::String(m.content.text().into_owned());
                escape(v)
            })
            .collect::<Result<_>>()?;
        let tools: Vec<serde_json::Value> = req
            .tools
            .iter()
            .map(|t| {
                escape(serde_json::json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}}))
            })
            .collect::<Result<_>>()?;
        let piece = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_owned();
        let text = self
            .inner
            .template
            .render(
                &messages,
                (!tools.is_empty()).then_some(&tools[..]),
                true,
                &piece(tok.bos_id()),
                &piece(tok.eos_id()),
            )
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        Ok((text, escapes))
    }
}

/// `value` with control-token text in every string (keys included) swapped for
/// placeholders, so the template places it as text.
fn escape_json(
    tok: &Tokenizer,
    value: serde_json::Value,
    escapes: &mut Escapes,
) -> std::result::Result<serde_json::Value, TokenizerError> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) => Value::String(tok.escape_special(&s, escapes)?.into_owned()),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| escape_json(tok, v, escapes))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                let k = tok.escape_special(&k, escapes)?.into_owned();
                out.insert(k, escape_json(tok, v, escapes)?);
            }
            Value::Object(out)
        }
        other => other,
    })
}
