//! The weights file: its format, and the scores it gives.

use super::features::{visit_features, windows};

/// The n-gram detector's file: the hash weights only.
const MAGIC_NGRAMS: &[u8; 8] = b"ANYINJ01";
/// The file of the detector that also reads sentence embeddings: the hash weights and a head
/// over the embedding of each text and window.
const MAGIC_WITH_HEAD: &[u8; 8] = b"ANYINJ02";
const HEADER_NGRAMS: usize = 28;
const HEADER_WITH_HEAD: usize = 32;
/// Hash tables larger than this (2^24 buckets, 64 MiB of weights) are refused.
const MAX_BITS: u32 = 24;
/// Embedding heads larger than this are refused (all-MiniLM-L6-v2's is 384 by a few dozen).
const MAX_HEAD_WEIGHTS: usize = 1 << 22;

/// Why a detector's weights could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError(pub(super) String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "injection model: {}", self.0)
    }
}

impl std::error::Error for ModelError {}

/// A detector's weights: a logistic regression over hashed n-grams, optionally plus a head
/// over sentence embeddings, and the Platt scaling that turns the sum into a probability.
///
/// Two formats, little-endian. `ANYINJ01` (n-grams only): the magic, `bits` (u32), a
/// reserved u32, `bias`, `scale`, `offset` (f32), then 2^bits f32 weights. `ANYINJ02`: the
/// magic, `bits`, `dims` (the embedding's length), `hidden` (u32 each), `bias`, `scale`,
/// `offset`, the 2^bits hash weights, then the head over the text's embedding — with `hidden`
/// 0, `dims` weights of a linear term; otherwise a `dims` × `hidden` matrix (row by row),
/// `hidden` biases and `hidden` output weights of one tanh layer. `scripts/guard_train.py`
/// writes both.
#[derive(Debug)]
pub(super) struct Model {
    bits: u32,
    bias: f32,
    scale: f32,
    offset: f32,
    weights: Vec<f32>,
    head: Option<Head>,
}

/// The embedding term of a text's score.
#[derive(Debug)]
struct Head {
    dims: usize,
    hidden: usize,
    /// `dims` weights (linear) or the `dims` × `hidden` matrix.
    w: Vec<f32>,
    c: Vec<f32>,
    v: Vec<f32>,
}

impl Head {
    /// The term for one embedding, scaled to unit length first (in f64, as the script does).
    fn score(&self, embedding: &[f32]) -> f64 {
        let norm = embedding
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        let e = embedding.iter().map(|&x| f64::from(x) / norm);
        if self.hidden == 0 {
            return e.zip(&self.w).map(|(x, &w)| x * f64::from(w)).sum();
        }
        let mut pre: Vec<f64> = self.c.iter().map(|&c| f64::from(c)).collect();
        for (x, row) in e.zip(self.w.chunks_exact(self.hidden)) {
            for (p, &w) in pre.iter_mut().zip(row) {
                *p += x * f64::from(w);
            }
        }
        pre.iter()
            .zip(&self.v)
            .map(|(p, &v)| p.tanh() * f64::from(v))
            .sum()
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Model {
    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let with_head = match bytes.get(..8) {
            Some(m) if m == MAGIC_NGRAMS => false,
            Some(m) if m == MAGIC_WITH_HEAD => true,
            _ => {
                return Err(ModelError(
                    "not a model file (expected the ANYINJ01 or ANYINJ02 header)".into(),
                ));
            }
        };
        let header = if with_head {
            HEADER_WITH_HEAD
        } else {
            HEADER_NGRAMS
        };
        if bytes.len() < header {
            return Err(ModelError(format!(
                "{} bytes, shorter than its {header}-byte header",
                bytes.len()
            )));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let f32_at = |at: usize| f32::from_bits(u32_at(at));
        let bits = u32_at(8);
        if bits == 0 || bits > MAX_BITS {
            return Err(ModelError(format!(
                "{bits} hash bits (1 to {MAX_BITS} are supported)"
            )));
        }
        let buckets = 1usize << bits;
        let (dims, hidden) = if with_head {
            (u32_at(12) as usize, u32_at(16) as usize)
        } else {
            (0, 0)
        };
        let head_len = if hidden == 0 {
            dims
        } else {
            dims.saturating_mul(hidden).saturating_add(2 * hidden)
        };
        if with_head && (dims == 0 || head_len > MAX_HEAD_WEIGHTS) {
            return Err(ModelError(format!(
                "an embedding head of {dims} dimensions and {hidden} hidden units \
                 (1 to {MAX_HEAD_WEIGHTS} weights are supported)"
            )));
        }
        let want = header + 4 * (buckets + head_len);
        if bytes.len() != want {
            return Err(ModelError(format!(
                "{} bytes, but {bits} hash bits{} need {want}",
                bytes.len(),
                if with_head {
                    format!(" and a head of {dims} × {hidden}")
                } else {
                    String::new()
                }
            )));
        }
        let at = header - 12;
        let (bias, scale, offset) = (f32_at(at), f32_at(at + 4), f32_at(at + 8));
        let weights = f32s(&bytes[header..header + 4 * buckets]);
        let rest = f32s(&bytes[header + 4 * buckets..]);
        let head = with_head.then(|| {
            let split = if hidden == 0 { dims } else { dims * hidden };
            Head {
                dims,
                hidden,
                w: rest[..split].to_vec(),
                c: rest[split..split + hidden].to_vec(),
                v: rest[split + hidden..].to_vec(),
            }
        });
        if ![bias, scale, offset].iter().all(|x| x.is_finite())
            || !weights.iter().chain(&rest).all(|w| w.is_finite())
        {
            return Err(ModelError("a weight is not a finite number".into()));
        }
        Ok(Model {
            bits,
            bias,
            scale,
            offset,
            weights,
            head,
        })
    }

    /// The length of the embeddings its head reads; `None` for an n-gram-only model.
    pub(super) fn head_dims(&self) -> Option<usize> {
        self.head.as_ref().map(|h| h.dims)
    }

    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.weights.len()
    }

    /// The n-gram score of one text (or window): the bias plus the weights of the distinct
    /// buckets it sets over the square root of their number (each present or not, the
    /// vector scaled to unit length).
    fn raw(&self, text: &str) -> f64 {
        SEEN.with_borrow_mut(|seen| {
            // Buckets already counted for this text carry this text's stamp; a table of
            // stamps instead of a sorted list keeps a text's cost linear in its length.
            seen.stamp = seen.stamp.wrapping_add(1);
            if seen.stamp == 0 || seen.marks.len() != self.weights.len() {
                seen.marks = vec![0; self.weights.len()];
                seen.stamp = 1;
            }
            let (mut sum, mut count) = (0.0f64, 0usize);
            visit_features(text, self.bits, |b| {
                let mark = &mut seen.marks[b as usize];
                if *mark != seen.stamp {
                    *mark = seen.stamp;
                    sum += f64::from(self.weights[b as usize]);
                    count += 1;
                }
            });
            if count == 0 {
                f64::from(self.bias)
            } else {
                f64::from(self.bias) + sum / (count as f64).sqrt()
            }
        })
    }

    fn calibrated(&self, z: f64) -> f32 {
        let t = f64::from(self.scale) * z + f64::from(self.offset);
        (1.0 / (1.0 + (-t).exp())) as f32
    }

    /// The probability from the n-grams alone: the highest score of the text and its windows.
    pub(super) fn probability(&self, text: &str) -> f32 {
        let z = windows(text)
            .map(|w| self.raw(w))
            .fold(self.raw(text), f64::max);
        self.calibrated(z)
    }

    /// The probability from the n-grams and the head, given the text's embedding: the
    /// highest n-gram score of the text and its windows, plus the head's term for the vector.
    ///
    /// The caller checks the embedding's length ([`head_dims`](Self::head_dims)); a model
    /// without a head ignores it.
    pub(super) fn probability_with(&self, text: &str, embedding: &[f32]) -> f32 {
        let Some(head) = &self.head else {
            return self.probability(text);
        };
        let z = windows(text)
            .map(|w| self.raw(w))
            .fold(self.raw(text), f64::max);
        self.calibrated(z + head.score(embedding))
    }
}

/// Per thread: which buckets the text being scored has set so far.
#[derive(Default)]
struct Seen {
    marks: Vec<u32>,
    stamp: u32,
}

thread_local! {
    static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    static SHIPPED: &[u8] = include_bytes!("../../../data/injection-model.bin");

    #[test]
    fn damaged_files_are_named_errors() {
        assert!(Model::from_bytes(b"").is_err());
        let mut bytes = SHIPPED[..HEADER_NGRAMS].to_vec();
        assert!(
            Model::from_bytes(&bytes)
                .unwrap_err()
                .0
                .contains("hash bits need")
        );
        bytes[8] = 40;
        assert!(
            Model::from_bytes(&bytes)
                .unwrap_err()
                .0
                .contains("40 hash bits")
        );
        let mut nan = SHIPPED.to_vec();
        nan[HEADER_NGRAMS..HEADER_NGRAMS + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Model::from_bytes(&nan).unwrap_err().0.contains("finite"));
    }

    /// An `ANYINJ02` file of 2 buckets and a tanh head of 2 units over 2 dimensions.
    fn tiny(hidden: u32, head: &[f32]) -> Vec<u8> {
        let mut b = MAGIC_WITH_HEAD.to_vec();
        for x in [1u32, 2, hidden] {
            b.extend(x.to_le_bytes());
        }
        for x in [0.5f32, 2.0, -1.0, 0.0, 0.0] {
            b.extend(x.to_le_bytes());
        }
        for x in head {
            b.extend(x.to_le_bytes());
        }
        b
    }

    #[test]
    fn the_head_is_scored_as_documented() {
        // W = identity (row by row), c = [0, 0.5], v = [1, -1].
        let m = Model::from_bytes(&tiny(2, &[1.0, 0.0, 0.0, 1.0, 0.0, 0.5, 1.0, -1.0])).unwrap();
        assert_eq!(m.head_dims(), Some(2));
        // The vector is scaled to unit length first: [3, 4] reads as [0.6, 0.8]; the empty
        // text sets no bucket, so its n-gram score is the bias.
        let z = 0.5 + 0.6f64.tanh() - 1.3f64.tanh();
        let want = 1.0 / (1.0 + (-(2.0 * z - 1.0)).exp());
        let got = m.probability_with("", &[3.0, 4.0]);
        assert!((f64::from(got) - want).abs() < 1e-7, "{got} != {want}");
        // A linear head: the dot product.
        let m = Model::from_bytes(&tiny(0, &[1.0, -2.0])).unwrap();
        let z: f64 = 0.5 + 0.6 - 1.6;
        let want = 1.0 / (1.0 + (-(2.0 * z - 1.0)).exp());
        let got = m.probability_with("", &[3.0, 4.0]);
        assert!((f64::from(got) - want).abs() < 1e-7, "{got} != {want}");
        // A head that does not fit the file's length is refused, with the sizes.
        let err = Model::from_bytes(&tiny(2, &[1.0; 7])).unwrap_err();
        assert!(err.0.contains("a head of 2 × 2 need"), "{err}");
        let mut zero = tiny(0, &[]);
        zero[12] = 0;
        assert!(
            Model::from_bytes(&zero)
                .unwrap_err()
                .0
                .contains("0 dimensions")
        );
    }
}
