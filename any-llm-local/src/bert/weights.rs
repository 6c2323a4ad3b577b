//! The encoder's weights, taken from `model.safetensors` and packed for the matrix products.

use std::path::Path;

use any_core::{Error, Result};

use super::config::BertConfig;
use crate::kernels::gemm::PackedMatrix;
use crate::safetensors::Safetensors;

/// A linear layer: packed weights and a bias.
#[derive(Debug)]
pub(super) struct Linear {
    pub(super) w: PackedMatrix,
    pub(super) b: Vec<f32>,
}

/// A LayerNorm's scale and shift.
#[derive(Debug)]
pub(super) struct Norm {
    pub(super) w: Vec<f32>,
    pub(super) b: Vec<f32>,
}

/// One encoder layer.
#[derive(Debug)]
pub(super) struct Layer {
    /// Query, key and value projections as one matrix (outputs Q, then K, then V).
    pub(super) qkv: Linear,
    pub(super) attn_out: Linear,
    pub(super) attn_norm: Norm,
    pub(super) up: Linear,
    pub(super) down: Linear,
    pub(super) out_norm: Norm,
}

/// Every weight of the encoder.
#[derive(Debug)]
pub(super) struct BertWeights {
    pub(super) word: Vec<f32>,
    pub(super) position: Vec<f32>,
    pub(super) token_type: Vec<f32>,
    pub(super) embed_norm: Norm,
    pub(super) layers: Vec<Layer>,
}

struct Reader<'a> {
    file: &'a Safetensors,
    /// `bert.` in checkpoints saved from a task model, empty in a bare `BertModel`.
    prefix: &'static str,
    path: &'a Path,
}

impl Reader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .file
            .tensor(&full)
            .map_err(|e| Error::model(format!("{}: {e}", self.path.display())))?;
        if t.shape() != shape {
            return Err(Error::model(format!(
                "{}: tensor {full}: expected shape {shape:?}, found {:?}",
                self.path.display(),
                t.shape()
            )));
        }
        t.to_f32()
            .map_err(|e| Error::model(format!("{}: {e}", self.path.display())))
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let w = self.tensor(&format!("{name}.weight"), &[out, inp])?;
        Ok(Linear {
            w: PackedMatrix::pack(&w, out, inp),
            b: self.tensor(&format!("{name}.bias"), &[out])?,
        })
    }

    fn norm(&self, name: &str, d: usize) -> Result<Norm> {
        Ok(Norm {
            w: self.tensor(&format!("{name}.weight"), &[d])?,
            b: self.tensor(&format!("{name}.bias"), &[d])?,
        })
    }
}

impl BertWeights {
    /// Reads and packs the weights in `path` for a model of shape `cfg`.
    ///
    /// # Errors
    /// [`Error::Model`] naming the file and the tensor that is missing, of the wrong shape or
    /// of a type other than F32, F16 or BF16, or what is wrong with the file itself.
    pub(super) fn load(path: &Path, cfg: &BertConfig) -> Result<Self> {
        let file = Safetensors::read(path)
            .map_err(|e| Error::model_with_source(format!("{}: {e}", path.display()), e))?;
        let prefix = if file.tensor("embeddings.word_embeddings.weight").is_err()
            && file
                .tensor("bert.embeddings.word_embeddings.weight")
                .is_ok()
        {
            "bert."
        } else {
            ""
        };
        let r = Reader {
            file: &file,
            prefix,
            path,
        };
        let h = cfg.hidden;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let name = |s: &str| format!("encoder.layer.{i}.{s}");
            let q = r.tensor(&name("attention.self.query.weight"), &[h, h])?;
            let k = r.tensor(&name("attention.self.key.weight"), &[h, h])?;
            let v = r.tensor(&name("attention.self.value.weight"), &[h, h])?;
            let qkv_w = [q, k, v].concat();
            let mut qkv_b = r.tensor(&name("attention.self.query.bias"), &[h])?;
            qkv_b.extend(r.tensor(&name("attention.self.key.bias"), &[h])?);
            qkv_b.extend(r.tensor(&name("attention.self.value.bias"), &[h])?);
            layers.push(Layer {
                qkv: Linear {
                    w: PackedMatrix::pack(&qkv_w, 3 * h, h),
                    b: qkv_b,
                },
                attn_out: r.linear(&name("attention.output.dense"), h, h)?,
                attn_norm: r.norm(&name("attention.output.LayerNorm"), h)?,
                up: r.linear(&name("intermediate.dense"), cfg.intermediate, h)?,
                down: r.linear(&name("output.dense"), h, cfg.intermediate)?,
                out_norm: r.norm(&name("output.LayerNorm"), h)?,
            });
        }
        Ok(BertWeights {
            word: r.tensor("embeddings.word_embeddings.weight", &[cfg.vocab, h])?,
            position: r.tensor(
                "embeddings.position_embeddings.weight",
                &[cfg.max_positions, h],
            )?,
            token_type: r.tensor(
                "embeddings.token_type_embeddings.weight",
                &[cfg.type_vocab, h],
            )?,
            embed_norm: r.norm("embeddings.LayerNorm", h)?,
            layers,
        })
    }
}
