//! Embeddings and the model list.

use any_core::{EmbedRequest, EmbedResponse, Error, Result, UserId};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{base64, kind, null_default, quote};

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// What to embed.
    pub input: EmbeddingInput,
    /// The model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `"float"` (the default) or `"base64"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Truncate the embeddings to this many dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// An id for the end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// How embedding vectors travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    /// A JSON array of numbers.
    #[default]
    Float,
    /// Base64 of little-endian `f32`s (what the official clients ask for by default).
    Base64,
}

/// `input`: a text, a list of texts, or token ids (which this crate refuses: a server here
/// cannot know the client's tokenizer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One text as token ids.
    Tokens(Vec<u32>),
    /// Several texts as token ids.
    TokenBatches(Vec<Vec<u32>>),
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let wrong = |v: &Value| {
            D::Error::custom(format!(
                "input must be a string, an array of strings, or token ids, found {}",
                quote(v)
            ))
        };
        match &v {
            Value::String(s) => Ok(EmbeddingInput::Text(s.clone())),
            Value::Array(items) => match items.first() {
                None => Ok(EmbeddingInput::Texts(Vec::new())),
                Some(Value::String(_)) => serde_json::from_value(v.clone())
                    .map(EmbeddingInput::Texts)
                    .map_err(|_| wrong(&v)),
                Some(Value::Number(_)) => serde_json::from_value(v.clone())
                    .map(EmbeddingInput::Tokens)
                    .map_err(|_| wrong(&v)),
                Some(Value::Array(_)) => serde_json::from_value(v.clone())
                    .map(EmbeddingInput::TokenBatches)
                    .map_err(|_| wrong(&v)),
                Some(_) => Err(wrong(&v)),
            },
            other => Err(D::Error::custom(format!(
                "input must be a string or an array, found {}: {}",
                kind(other),
                quote(other)
            ))),
        }
    }
}

impl EmbeddingRequest {
    /// The body a client sends for `req`, asking for floats.
    pub fn from_embed_request(req: &EmbedRequest) -> Self {
        EmbeddingRequest {
            input: EmbeddingInput::Texts(req.inputs.clone()),
            model: req.model.clone(),
            encoding_format: Some(EncodingFormat::Float),
            dimensions: req.dimensions,
            user: req.extensions.get::<UserId>().map(|u| u.0.clone()),
        }
    }

    /// The vocabulary's request. `encoding_format` is the server's business (it shapes the
    /// answer, see [`EmbeddingResponse::from_embed_response`]).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for token-id input or no input at all.
    pub fn into_embed_request(self) -> Result<EmbedRequest> {
        let inputs = match self.input {
            EmbeddingInput::Text(t) => vec![t],
            EmbeddingInput::Texts(t) => t,
            EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
                return Err(Error::InvalidRequest(
                    "input as token ids is not supported: send the text (a string or an array of strings)"
                        .into(),
                ));
            }
        };
        if inputs.is_empty() {
            return Err(Error::InvalidRequest(
                "input is an empty array: send at least one text".into(),
            ));
        }
        let mut req = EmbedRequest {
            model: self.model,
            inputs,
            dimensions: self.dimensions,
            ..Default::default()
        };
        if let Some(user) = self.user {
            req.extensions.insert(UserId(user));
        }
        Ok(req)
    }
}

/// The answer to `POST /v1/embeddings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// `"list"`.
    #[serde(default)]
    pub object: String,
    /// One entry per input.
    #[serde(default, deserialize_with = "null_default")]
    pub data: Vec<EmbeddingData>,
    /// The model that made them.
    #[serde(default)]
    pub model: String,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingUsage>,
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingData {
    /// `"embedding"`.
    #[serde(default)]
    pub object: String,
    /// Which input it embeds.
    #[serde(default)]
    pub index: u32,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// An embedding vector, as floats or base64.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// A JSON array of numbers.
    Float(Vec<f32>),
    /// Base64 of little-endian `f32`s.
    Base64(String),
}

impl<'de> Deserialize<'de> for EmbeddingVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(EmbeddingVector::Base64(s)),
            v @ Value::Array(_) => serde_json::from_value(v.clone())
                .map(EmbeddingVector::Float)
                .map_err(|e| D::Error::custom(format!("embedding {}: {e}", quote(&v)))),
            other => Err(D::Error::custom(format!(
                "embedding must be an array of numbers or a base64 string, found {}: {}",
                kind(&other),
                quote(&other)
            ))),
        }
    }
}

/// Token counts of an embedding call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u32,
    /// The same, as OpenAI reports it.
    #[serde(default)]
    pub total_tokens: u32,
}

impl EmbeddingResponse {
    /// The wire answer for a vocabulary response, its vectors as `format` asks.
    pub fn from_embed_response(resp: &EmbedResponse, model: &str, format: EncodingFormat) -> Self {
        let data = resp
            .embeddings
            .iter()
            .enumerate()
            .map(|(i, e)| EmbeddingData {
                object: "embedding".into(),
                index: i as u32,
                embedding: match format {
                    EncodingFormat::Float => EmbeddingVector::Float(e.clone()),
                    EncodingFormat::Base64 => EmbeddingVector::Base64(base64::encode_f32s(e)),
                },
            })
            .collect();
        EmbeddingResponse {
            object: "list".into(),
            data,
            model: model.to_owned(),
            usage: resp.usage.map(|u| EmbeddingUsage {
                prompt_tokens: u.prompt_tokens,
                total_tokens: u.total_tokens(),
            }),
        }
    }

    /// The vocabulary's response: vectors in input order, base64 decoded.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] for indices that are not `0..n` once each, or base64 that
    /// does not decode to floats.
    pub fn into_embed_response(self) -> Result<EmbedResponse> {
        let n = self.data.len();
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
        for d in self.data {
            let i = d.index as usize;
            let vector = match d.embedding {
                EmbeddingVector::Float(v) => v,
                EmbeddingVector::Base64(s) => base64::decode_f32s(&s)
                    .map_err(|e| Error::InvalidResponse(format!("embedding {i}: {e}")))?,
            };
            match slots.get_mut(i) {
                Some(slot @ None) => *slot = Some(vector),
                Some(Some(_)) => {
                    return Err(Error::InvalidResponse(format!(
                        "embedding index {i} appears twice"
                    )));
                }
                None => {
                    return Err(Error::InvalidResponse(format!(
                        "embedding index {i} is out of range for {n} embeddings"
                    )));
                }
            }
        }
        Ok(EmbedResponse {
            // Every slot is filled: n distinct indices below n.
            embeddings: slots.into_iter().flatten().collect(),
            model: (!self.model.is_empty()).then_some(self.model),
            usage: self.usage.map(|u| any_core::Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: 0,
                cached_prompt_tokens: None,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_shapes() {
        let parse = |s: &str| serde_json::from_str::<EmbeddingRequest>(s);
        let one = parse(r#"{"input": "a", "model": "m"}"#).expect("parses");
        assert_eq!(one.into_embed_request().expect("converts").inputs, ["a"]);
        let many = parse(r#"{"input": ["a", "b"], "encoding_format": "base64", "user": "u"}"#)
            .expect("parses");
        assert_eq!(many.encoding_format, Some(EncodingFormat::Base64));
        let req = many.into_embed_request().expect("converts");
        assert_eq!(req.inputs, ["a", "b"]);
        assert_eq!(req.extensions.get::<UserId>(), Some(&UserId("u".into())));

        let tokens = parse(r#"{"input": [1, 2, 3]}"#).expect("parses");
        assert_eq!(tokens.input, EmbeddingInput::Tokens(vec![1, 2, 3]));
        let e = tokens.into_embed_request().unwrap_err().to_string();
        assert!(e.contains("token ids is not supported"), "{e}");
        let batches = parse(r#"{"input": [[1], [2, 3]]}"#).expect("parses");
        assert!(batches.into_embed_request().is_err());
        let e = parse(r#"{"input": []}"#)
            .expect("parses")
            .into_embed_request()
            .unwrap_err();
        assert!(e.to_string().contains("empty array"), "{e}");

        let e = parse(r#"{"input": ["a", 1]}"#).unwrap_err().to_string();
        assert!(e.contains(r#"found ["a",1]"#), "{e}");
        let e = parse(r#"{"input": {"text": "a"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("found an object"), "{e}");
    }

    #[test]
    fn responses_round_trip_as_floats_and_base64() {
        let resp = EmbedResponse {
            embeddings: vec![vec![0.5, -1.0], vec![0.25, 2.0]],
            model: Some("m".into()),
            usage: Some(any_core::Usage {
                prompt_tokens: 4,
                completion_tokens: 0,
                cached_prompt_tokens: None,
            }),
        };
        for format in [EncodingFormat::Float, EncodingFormat::Base64] {
            let wire = EmbeddingResponse::from_embed_response(&resp, "m", format);
            let json = serde_json::to_value(&wire).expect("serialises");
            assert_eq!(json["object"], "list");
            assert_eq!(json["data"][1]["index"], 1);
            assert_eq!(json["usage"]["total_tokens"], 4);
            if format == EncodingFormat::Base64 {
                assert!(json["data"][0]["embedding"].is_string());
            }
            let back = serde_json::from_value::<EmbeddingResponse>(json)
                .expect("parses")
                .into_embed_response()
                .expect("converts");
            assert_eq!(back, resp);
        }
    }

    #[test]
    fn out_of_order_data_is_put_in_order_and_bad_indices_are_named() {
        let body = r#"{"object": "list", "model": "m", "data": [
            {"object": "embedding", "index": 1, "embedding": [2.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0]}]}"#;
        let r = serde_json::from_str::<EmbeddingResponse>(body)
            .expect("parses")
            .into_embed_response()
            .expect("converts");
        assert_eq!(r.embeddings, [[1.0], [2.0]]);
        let dup =
            r#"{"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}"#;
        let e = serde_json::from_str::<EmbeddingResponse>(dup)
            .expect("parses")
            .into_embed_response()
            .unwrap_err();
        assert!(e.to_string().contains("index 0 appears twice"), "{e}");
        let e = serde_json::from_str::<EmbeddingResponse>(r#"{"data": [{"embedding": true}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("found a boolean"), "{e}");
    }
}
