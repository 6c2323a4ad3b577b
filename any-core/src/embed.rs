//! Embeddings: texts in, vectors out.

use serde::{Deserialize, Serialize};

use crate::{Extensions, Usage};

/// A request for the embeddings of some texts.
///
/// ```
/// use any_core::EmbedRequest;
/// let req = EmbedRequest::new(["first text", "second text"]);
/// assert_eq!(req.inputs.len(), 2);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmbedRequest {
    /// The model to use, for services that serve several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The texts, one embedding each.
    pub inputs: Vec<String>,
    /// Truncate embeddings to this many dimensions, where the model supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Typed values that layers read and write; not serialised.
    #[serde(skip)]
    pub extensions: Extensions,
}

impl EmbedRequest {
    /// Embeddings of these texts.
    pub fn new<I, S>(inputs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EmbedRequest {
            inputs: inputs.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// The embeddings, one per input, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    /// One vector per input.
    pub embeddings: Vec<Vec<f32>>,
    /// The model that made them, where the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Token counts (`completion_tokens` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Cosine similarity of two vectors (0 when either is all zeros).
///
/// ```
/// assert!((any_core::cosine_similarity(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
/// assert_eq!(any_core::cosine_similarity(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
/// ```
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
