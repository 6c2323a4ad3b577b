//! The model list, `GET /v1/models`: what a server offers and a client can ask for.

use serde::{Deserialize, Serialize};

use super::null_default;

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// The id to put in requests' `model`.
    pub id: String,
    /// `"model"`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Who owns it.
    #[serde(default)]
    pub owned_by: String,
}

impl Model {
    /// A model entry with `id`, owned by `owned_by`.
    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Model {
            id: id.into(),
            object: "model".into(),
            created,
            owned_by: owned_by.into(),
        }
    }
}

/// The answer to `GET /v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// `"list"`.
    #[serde(default)]
    pub object: String,
    /// The models.
    #[serde(default, deserialize_with = "null_default")]
    pub data: Vec<Model>,
}

impl ModelList {
    /// A list of these models.
    pub fn new(models: Vec<Model>) -> Self {
        ModelList {
            object: "list".into(),
            data: models,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_list_parses_tolerantly() {
        let body = r#"{"object": "list", "data": [{"id": "a", "object": "model",
            "created": 1, "owned_by": "me", "permission": []}, {"id": "b"}]}"#;
        let list: ModelList = serde_json::from_str(body).expect("parses");
        assert_eq!(list.data[1].id, "b");
        let ours = ModelList::new(vec![Model::new("x", 5, "any-suite")]);
        let json = serde_json::to_value(&ours).expect("serialises");
        assert_eq!(json["data"][0]["object"], "model");
    }
}
