//! The shape of a BERT encoder and how sentence-transformers pools it, read from a
//! sentence-transformers model folder.

use std::path::Path;

use any_core::{Error, Result};
use serde_json::Value;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooling {
    /// The mean of every token's vector, `[CLS]` and `[SEP]` included.
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
}

/// A BERT encoder's shape (`config.json`) and its sentence-transformers pipeline
/// (`sentence_bert_config.json`, `modules.json`, `1_Pooling/config.json`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BertConfig {
    /// Width of every token vector (`hidden_size`).
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Rows of the word embedding.
    pub vocab: usize,
    /// Rows of the position embedding.
    pub max_positions: usize,
    /// Rows of the token-type embedding.
    pub type_vocab: usize,
    /// LayerNorm's epsilon.
    pub eps: f32,
    /// The most tokens one text is cut to, `[CLS]` and `[SEP]` included
    /// (sentence-transformers' `max_seq_length`).
    pub max_tokens: usize,
    /// How token vectors are pooled.
    pub pooling: Pooling,
    /// Whether sentence vectors are L2-normalised (a `Normalize` module).
    pub normalize: bool,
}

fn read_json(dir: &Path, name: &str) -> Result<Option<Value>> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::model(format!("reading {}: {e}", path.display()))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::model(format!("{} is not JSON: {e}", path.display())))
}

impl BertConfig {
    /// Reads the configuration of the sentence-transformers model in `dir`.
    ///
    /// # Errors
    /// [`Error::Model`] when `config.json` is missing or not a BERT encoder with absolute
    /// positions and GELU, or the pipeline has a module or pooling mode not implemented
    /// (a `Dense` projection, max pooling, ...), naming it.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let c = read_json(dir, "config.json")?.ok_or_else(|| {
            Error::model(format!(
                "{} has no config.json: expected a sentence-transformers model folder",
                dir.display()
            ))
        })?;
        let text = |k: &str| c[k].as_str().unwrap_or("");
        if text("model_type") != "bert" {
            return Err(Error::model(format!(
                "config.json: expected model_type bert, found {:?}",
                c["model_type"]
            )));
        }
        if !matches!(text("hidden_act"), "gelu" | "") {
            return Err(Error::model(format!(
                "config.json: expected hidden_act gelu, found {}",
                text("hidden_act")
            )));
        }
        if !matches!(text("position_embedding_type"), "absolute" | "") {
            return Err(Error::model(format!(
                "config.json: expected absolute position embeddings, found {}",
                text("position_embedding_type")
            )));
        }
        let count = |k: &str| -> Result<usize> {
            c[k].as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| Error::model(format!("config.json: {k} is not a positive count")))
        };
        let hidden = count("hidden_size")?;
        let heads = count("num_attention_heads")?;
        if hidden % heads != 0 {
            return Err(Error::model(format!(
                "config.json: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let max_positions = count("max_position_embeddings")?;
        let st = read_json(dir, "sentence_bert_config.json")?;
        let max_tokens = st
            .as_ref()
            .and_then(|s| s["max_seq_length"].as_u64())
            .map_or(max_positions, |m| m as usize)
            .min(max_positions);
        let (pooling, normalize) = pipeline(dir)?;
        Ok(BertConfig {
            hidden,
            layers: count("num_hidden_layers")?,
            heads,
            intermediate: count("intermediate_size")?,
            vocab: count("vocab_size")?,
            max_positions,
            type_vocab: count("type_vocab_size").unwrap_or(2),
            eps: c["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
            max_tokens,
            pooling,
            normalize,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// The pooling mode and whether a `Normalize` module follows, from `modules.json` and the
/// pooling module's config (mean pooling and normalisation when there is no `modules.json`).
fn pipeline(dir: &Path) -> Result<(Pooling, bool)> {
    let Some(modules) = read_json(dir, "modules.json")? else {
        return Ok((Pooling::Mean, true));
    };
    let mut pooling = Pooling::Mean;
    let mut normalize = false;
    for m in modules.as_array().into_iter().flatten() {
        let kind = m["type"].as_str().unwrap_or("");
        match kind.rsplit('.').next().unwrap_or("") {
            "Transformer" => {}
            "Normalize" => normalize = true,
            "Pooling" => {
                let path = m["path"].as_str().unwrap_or("1_Pooling");
                let config = read_json(dir, &format!("{path}/config.json"))?.unwrap_or_default();
                // Several modes at once are concatenated by sentence-transformers: only one
                // of mean and CLS is implemented.
                let modes: Vec<&str> = config
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
                    .map(|(k, _)| k.as_str())
                    .collect();
                pooling = match modes[..] {
                    [] if config.is_null() => Pooling::Mean,
                    ["pooling_mode_mean_tokens"] => Pooling::Mean,
                    ["pooling_mode_cls_token"] => Pooling::Cls,
                    _ => {
                        return Err(Error::model(format!(
                            "{path}/config.json: expected mean or CLS pooling alone, found {}",
                            if modes.is_empty() {
                                "none".to_owned()
                            } else {
                                modes.join(" and ")
                            }
                        )));
                    }
                };
            }
            _ => {
                return Err(Error::model(format!(
                    "modules.json: the module {kind} is not implemented (expected \
                     Transformer, Pooling and Normalize)"
                )));
            }
        }
    }
    Ok((pooling, normalize))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn folder(files: &[(&str, &str)]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("any-bert-config-{}-{n}", std::process::id()));
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const CONFIG: &str = r#"{"model_type": "bert", "hidden_act": "gelu", "hidden_size": 8,
        "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 16,
        "vocab_size": 10, "max_position_embeddings": 16, "type_vocab_size": 2}"#;
    const MODULES: &str = r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;

    #[test]
    fn reads_the_shape_and_the_pipeline() {
        let dir = folder(&[
            ("config.json", CONFIG),
            ("sentence_bert_config.json", r#"{"max_seq_length": 12}"#),
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode_cls_token": true}"#,
            ),
        ]);
        let c = BertConfig::from_dir(&dir).unwrap();
        assert_eq!((c.hidden, c.head_dim(), c.max_tokens), (8, 4, 12));
        assert_eq!((c.pooling, c.normalize), (Pooling::Cls, false));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unimplemented_pipelines_are_named() {
        let dir = folder(&[
            ("config.json", CONFIG),
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#,
            ),
        ]);
        let err = BertConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("found pooling_mode_mean_tokens and pooling_mode_max_tokens"),
            "{err}"
        );
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
        )
        .unwrap();
        let err = BertConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("the module sentence_transformers.models.Dense"),
            "{err}"
        );
        std::fs::write(dir.join("config.json"), CONFIG.replace("gelu", "relu")).unwrap();
        let err = BertConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("expected hidden_act gelu, found relu"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
