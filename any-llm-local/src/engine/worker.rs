//! The inference thread: it owns the KV cache and runs one job at a time, so concurrent
//! requests on one model are queued and never mixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use any_core::{ChatChunk, Error, FinishReason, Result, TokenLogprob, TopLogprob, Usage};
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::stop::{StopMatcher, StopScan};
use super::tool_call::StreamedCall;
use crate::arch::{Decoder, Scratch};
use crate::constrain::Constraint;
use crate::kv_cache::KvCache;
use crate::kv_cache::KvCacheType;
use crate::pool::Pool;
use crate::sampler::{self, Sampler, SamplerConfig};
use crate::tokenizer::{DecodeOptions, Tokenizer};

/// Prompt tokens evaluated per forward pass (llama.cpp's default batch, so that long prompts
/// split where its do).
pub(crate) const PREFILL_BATCH: usize = 512;

pub(crate) struct Generate {
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampler: SamplerConfig,
    pub(crate) max_tokens: Option<usize>,
    pub(crate) stop: Vec<String>,
    pub(crate) logprobs: Option<u8>,
    pub(crate) model_name: String,
    pub(crate) chunks: tmpsc::UnboundedSender<Result<ChatChunk>>,
    /// Only tokens this grammar allows may be sampled.
    pub(crate) constraint: Option<Constraint>,
    /// Whether the output is, or may be, a tool call.
    pub(crate) tool_mode: ToolMode,
}

/// Whether an answer is a tool call (`{"name": ..., "arguments": ...}`, streamed as
/// [`ToolCallDelta`](any_core::ToolCallDelta)s: see [`StreamedCall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolMode {
    /// Text.
    Off,
    /// A tool call.
    Forced,
    /// A tool call if the answer starts with `{`, else text (the grammar keeps text from
    /// starting with one). Once text is chosen, the grammar is dropped.
    Auto,
}

pub(crate) enum Job {
    Generate(Generate),
    /// Log-probabilities of `ids[i]` given `ids[..i]` for `i` in `from..`, evaluated from an
    /// empty cache; with `top`, also the top-k of the last position's logits.
    Score {
        ids: Vec<u32>,
        from: usize,
        reply: oneshot::Sender<Result<Scored>>,
    },
    /// Mean-pooled, L2-normalised final hidden states of each sequence.
    Embed {
        seqs: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    },
    /// Time one single-pass prefill of `ids` (see `LocalModel::time_prefill`).
    TimePrefill {
        ids: Vec<u32>,
        reply: oneshot::Sender<Result<Duration>>,
    },
    /// Time `steps` greedy decode steps after `prompt` (see `LocalModel::time_decode`).
    TimeDecode {
        prompt: Vec<u32>,
        steps: usize,
        reply: oneshot::Sender<Result<Duration>>,
    },
    /// Logits for the next token after `ids`.
    Logits {
        ids: Vec<u32>,
        reply: oneshot::Sender<Result<Vec<f32>>>,
    },
}

/// What a [`Job::Score`] returns.
#[derive(Debug, Clone)]
pub(crate) struct Scored {
    /// `logprobs[j]` is the log-probability of `ids[from + j]`.
    pub(crate) logprobs: Vec<f32>,
    /// Whether each scored token was also the most likely one.
    pub(crate) greedy: Vec<bool>,
}

pub(crate) struct Worker {
    decoder: Arc<Decoder>,
    tokenizer: Tokenizer,
    kv: KvCache,
    scratch: Scratch,
    /// The tokens whose keys and values are in `kv`, for prefix reuse.
    cached: Vec<u32>,
    /// How many leading cached positions hold exactly what a fresh evaluation of them as a
    /// prompt computes. A single-token step (a generated token) sums its attention in another
    /// order (llama.cpp's decode order), so positions from the first such step on are
    /// evaluated again rather than reused: reuse never changes an answer.
    canonical: usize,
    logits: Vec<f32>,
    /// The last token's hidden state, copied out of the scratch for the output head.
    last: Vec<f32>,
    /// Tokens run through the model so far, shared with the [`LocalModel`](super::LocalModel).
    evaluated: Arc<AtomicU64>,
}

/// The error a job that was given up on stops with; nobody is left to read it.
fn cancelled_error() -> Error {
    Error::model("the request was cancelled")
}

impl Worker {
    pub(crate) fn new(
        decoder: Arc<Decoder>,
        tokenizer: Tokenizer,
        context: usize,
        kv_cache: KvCacheType,
        pool: Pool,
        evaluated: Arc<AtomicU64>,
    ) -> Result<Self> {
        let kv = KvCache::new(decoder.config(), context, kv_cache)?;
        Ok(Worker {
            decoder,
            tokenizer,
            kv,
            scratch: Scratch::new(pool),
            cached: Vec::new(),
            canonical: 0,
            logits: Vec::new(),
            last: Vec::new(),
            evaluated,
        })
    }

    pub(crate) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            self.handle(job);
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Generate(g) => {
                let chunks = g.chunks.clone();
                if let Err(e) = self.generate(g) {
                    // The receiver may be gone (the caller dropped the stream): nothing to tell.
                    let _ = chunks.send(Err(e));
                }
            }
            Job::Score { ids, from, reply } => {
                if !reply.is_closed() {
                    let _ = reply.send(self.score(&ids, from));
                }
            }
            Job::Embed { seqs, reply } => {
                // A caller that went away (a dropped request) stops the batch between
                // sequences and between prefill batches within one.
                let mut out = Vec::with_capacity(seqs.len());
                for s in &seqs {
                    match self.embed(s, &|| reply.is_closed()) {
                        Ok(e) => out.push(e),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            return;
                        }
                    }
                }
                let _ = reply.send(Ok(out));
            }
            Job::TimePrefill { ids, reply } => {
                let _ = reply.send(self.time_prefill(&ids));
            }
            Job::TimeDecode {
                prompt,
                steps,
                reply,
            } => {
                let _ = reply.send(self.time_decode(&prompt, steps));
            }
            Job::Logits { ids, reply } => {
                let r = self.reset_and_eval(&ids).map(|()| {
                    let hidden = self.last_hidden().to_vec();
                    self.decoder
                        .logits(&hidden, &mut self.logits, &mut self.scratch);
                    self.logits.clone()
                });
                let _ = reply.send(r);
            }
        }
    }

    fn n_embd(&self) -> usize {
        self.decoder.config().n_embd
    }

    fn last_hidden(&self) -> &[f32] {
        let d = self.n_embd();
        let h = self.scratch.hidden();
        &h[h.len() - d..]
    }

    /// Evaluates `ids` from position `kv.len`, split where a fresh evaluation of the whole
    /// sequence would split it (at multiples of [`PREFILL_BATCH`]); the last batch's hidden
    /// states stay in the scratch.
    fn eval(&mut self, ids: &[u32]) -> Result<()> {
        self.eval_unless(ids, &|| false)
    }

    /// [`Worker::eval`], stopping between batches once `cancelled` says so.
    fn eval_unless(&mut self, ids: &[u32], cancelled: &dyn Fn() -> bool) -> Result<()> {
        let mut done = 0;
        while done < ids.len() {
            if cancelled() {
                return Err(cancelled_error());
            }
            let start = self.kv.len;
            let end = (start / PREFILL_BATCH + 1) * PREFILL_BATCH;
            let batch = &ids[done..ids.len().min(done + end - start)];
            self.forward(batch)?;
            done += batch.len();
        }
        Ok(())
    }

    /// One forward pass over `batch` at the end of the cache.
    fn forward(&mut self, batch: &[u32]) -> Result<()> {
        let start = self.kv.len;
        self.decoder
            .forward(batch, &mut self.kv, &mut self.scratch)?;
        self.evaluated
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.cached.extend_from_slice(batch);
        if batch.len() > 1 && self.canonical == start {
            self.canonical += batch.len();
        }
        Ok(())
    }

    /// Forgets every cached position from `len` on.
    fn truncate(&mut self, len: usize) {
        self.kv.truncate(len);
        self.cached.truncate(len);
        self.canonical = self.canonical.min(len);
    }

    fn reset_and_eval(&mut self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::InvalidRequest("no tokens to evaluate".into()));
        }
        self.truncate(0);
        self.eval(ids)
    }

    fn time_prefill(&mut self, ids: &[u32]) -> Result<Duration> {
        if ids.is_empty() {
            return Err(Error::InvalidRequest("no tokens to evaluate".into()));
        }
        self.kv.truncate(0);
        self.cached.clear();
        let start = Instant::now();
        self.decoder.forward(ids, &mut self.kv, &mut self.scratch)?;
        self.evaluated
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.cached.extend_from_slice(ids);
        let d = self.n_embd();
        let h = self.scratch.hidden();
        self.last.clear();
        self.last.extend_from_slice(&h[h.len() - d..]);
        self.decoder
            .logits(&self.last, &mut self.logits, &mut self.scratch);
        Ok(start.elapsed())
    }

    fn time_decode(&mut self, prompt: &[u32], steps: usize) -> Result<Duration> {
        self.reset_and_eval(prompt)?;
        let start = Instant::now();
        for _ in 0..steps {
            self.last.clear();
            let d = self.n_embd();
            let h = self.scratch.hidden();
            self.last.extend_from_slice(&h[h.len() - d..]);
            self.decoder
                .logits(&self.last, &mut self.logits, &mut self.scratch);
            let token = sampler::argmax(&self.logits);
            self.decoder
                .forward(&[token], &mut self.kv, &mut self.scratch)?;
            self.evaluated.fetch_add(1, Ordering::Relaxed);
            self.cached.push(token);
        }
        Ok(start.elapsed())
    }

    fn generate(&mut self, g: Generate) -> Result<()> {
        let Generate {
            prompt,
            sampler,
            max_tokens,
            stop,
            logprobs,
            model_name,
            chunks,
            mut constraint,
            tool_mode,
        } = g;
        // The caller may have left while the job waited in the queue.
        if chunks.is_closed() {
            return Ok(());
        }
        // Reuse the longest cached prefix, but always evaluate at least the last prompt token:
        // its logits pick the first new token.
        let common = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut reuse = common.min(prompt.len() - 1).min(self.canonical);
        // A fresh evaluation puts the last prompt token in a batch with the ones before it
        // (unless it starts a batch of its own); so must we, or its sums come out in the
        // single-token order.
        let last = prompt.len() - 1;
        if reuse == last && reuse > 0 && last % PREFILL_BATCH != 0 {
            reuse -= 1;
        }
        self.truncate(reuse);
        self.eval_unless(&prompt[reuse..], &|| chunks.is_closed())?;

        let mut sampler = Sampler::new(sampler);
        for &t in &prompt {
            sampler.accept(t);
        }
        let mut decoder = self
            .tokenizer
            .stream_decoder(DecodeOptions { skip_special: true });
        let mut stops = StopMatcher::new(&stop);
        let limit = max_tokens.unwrap_or(usize::MAX);
        let mut generated = 0usize;
        let mut call = StreamedCall::new();
        let mut calling = tool_mode == ToolMode::Forced;
        let mut deciding = tool_mode == ToolMode::Auto;
        let mut undecided = String::new();
        let send = |chunk: ChatChunk| chunks.send(Ok(chunk)).is_ok();
        let finish = loop {
            if generated >= limit {
                break FinishReason::Length;
            }
            let hidden = self.last_hidden().to_vec();
            self.decoder
                .logits(&hidden, &mut self.logits, &mut self.scratch);
            let raw = logprobs.map(|_| self.logits.clone());
            let token = match &mut constraint {
                None => sampler.sample(&mut self.logits),
                Some(c) => {
                    c.mask(&mut self.logits)?;
                    let t = sampler.sample(&mut self.logits);
                    // A draw can only land on a forbidden token through rounding at the
                    // tail of the distribution; fall back to the best allowed one.
                    let t = if self.logits[t as usize] == f32::NEG_INFINITY {
                        sampler::argmax(&self.logits)
                    } else {
                        t
                    };
                    c.accept(t)?;
                    t
                }
            };
            generated += 1;
            if self.tokenizer.is_eog(token) {
                break FinishReason::Stop;
            }
            sampler.accept(token);
            let mut piece = decoder.push(token).map_err(Error::from)?;
            if deciding {
                // The answer's first character says whether it is a call.
                undecided.push_str(&piece);
                piece = match undecided.chars().next() {
                    None => String::new(),
                    Some(first) => {
                        deciding = false;
                        calling = first == '{';
                        if !calling {
                            constraint = None;
                        }
                        std::mem::take(&mut undecided)
                    }
                };
            }
            let mut chunk = if calling {
                // A tool call's JSON is not text a stop sequence could end.
                ChatChunk {
                    tool_calls: call.push(&piece).into_iter().collect(),
                    ..Default::default()
                }
            } else {
                match stops.push(&piece) {
                    StopScan::Emit(text) => ChatChunk::text(text),
                    StopScan::Stopped(text) => {
                        if !text.is_empty() && !send(ChatChunk::text(text)) {
                            return Ok(());
                        }
                        break FinishReason::Stop;
                    }
                }
            };
            if let (Some(top), Some(mut raw)) = (logprobs, raw) {
                chunk
                    .logprobs
                    .push(self.token_logprob(token, &mut raw, top));
            }
            let empty =
                chunk.text.is_empty() && chunk.tool_calls.is_empty() && chunk.logprobs.is_empty();
            if !empty && !send(chunk) {
                // The stream was dropped: stop generating.
                return Ok(());
            }
            if constraint.as_ref().is_some_and(Constraint::is_finished) {
                // The grammar is complete and allows nothing more, not even text before the
                // end of the turn: no need to evaluate the end token.
                break FinishReason::Stop;
            }
            if self.kv.len >= self.kv.capacity {
                break FinishReason::Length;
            }
            self.decoder
                .forward(&[token], &mut self.kv, &mut self.scratch)?;
            self.evaluated.fetch_add(1, Ordering::Relaxed);
            self.cached.push(token);
        };
        let mut tail = decoder.flush();
        tail.push_str(&stops.finish());
        let mut finish = finish;
        let mut calls = Vec::new();
        if calling {
            calls.extend(call.push(&std::mem::take(&mut tail)));
            if call.started() {
                match call.finish() {
                    Ok(rest) => {
                        calls.push(rest);
                        finish = FinishReason::ToolCalls;
                    }
                    // Cut off by max_tokens or the context: the call stays as streamed, its
                    // arguments incomplete, and the finish reason says `length`.
                    Err(_) if finish == FinishReason::Length => {}
                    Err(what) => {
                        return Err(Error::model(format!(
                            "the constrained tool call did not come out as one call: {what}"
                        )));
                    }
                }
            } else {
                // Cut off before the call started (in the name, or the fixed text between
                // it and the arguments): what there is goes out as text, so the caller sees
                // why there is no call.
                tail = call.into_text();
            }
        }
        calls.retain(|d| d.id.is_some() || !d.arguments.is_empty());
        let mut last = ChatChunk::finish(
            finish,
            Some(Usage {
                prompt_tokens: prompt.len() as u32,
                completion_tokens: generated as u32,
                cached_prompt_tokens: Some(reuse as u32),
            }),
        );
        last.text = tail;
        last.tool_calls = calls;
        last.model = Some(model_name);
        send(last);
        Ok(())
    }

    fn token_logprob(&self, token: u32, raw: &mut [f32], top: u8) -> TokenLogprob {
        sampler::log_softmax(raw);
        let text = |id: u32| {
            self.tokenizer
                .token_to_piece(id)
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .unwrap_or_default()
        };
        TokenLogprob {
            token: text(token),
            id: Some(token),
            logprob: raw[token as usize],
            top: sampler::top_n(raw, top as usize)
                .into_iter()
                .map(|(id, lp)| TopLogprob {
                    token: text(id),
                    id: Some(id),
                    logprob: lp,
                })
                .collect(),
        }
    }

    fn score(&mut self, ids: &[u32], from: usize) -> Result<Scored> {
        if from == 0 || from >= ids.len() {
            return Err(Error::InvalidRequest(format!(
                "scoring needs at least one context token and one scored token; got {} tokens, scoring from {from}",
                ids.len()
            )));
        }
        self.truncate(0);
        let d = self.n_embd();
        let mut logprobs = Vec::with_capacity(ids.len() - from);
        let mut greedy = Vec::with_capacity(ids.len() - from);
        let mut start = 0;
        // Evaluate everything but the last token; position p's logits score ids[p + 1].
        let evaluated = &ids[..ids.len() - 1];
        for batch in evaluated.chunks(PREFILL_BATCH) {
            self.forward(batch)?;
            let first_needed = (from - 1).max(start);
            let end = start + batch.len();
            if first_needed < end {
                let hidden = self.scratch.hidden()[(first_needed - start) * d..].to_vec();
                self.decoder
                    .logits(&hidden, &mut self.logits, &mut self.scratch);
                let vocab = self.decoder.config().n_vocab;
                for (j, row) in self.logits.chunks_exact_mut(vocab).enumerate() {
                    let target = ids[first_needed + j + 1];
                    greedy.push(sampler::argmax(row) == target);
                    sampler::log_softmax(row);
                    logprobs.push(row[target as usize]);
                }
            }
            start = end;
        }
        Ok(Scored { logprobs, greedy })
    }

    fn embed(&mut self, ids: &[u32], cancelled: &dyn Fn() -> bool) -> Result<Vec<f32>> {
        self.truncate(0);
        if ids.is_empty() {
            return Err(Error::InvalidRequest("cannot embed an empty text".into()));
        }
        let d = self.n_embd();
        let mut sum = vec![0.0f32; d];
        for batch in ids.chunks(PREFILL_BATCH) {
            if cancelled() {
                return Err(cancelled_error());
            }
            self.forward(batch)?;
            for row in self.scratch.hidden().chunks_exact(d) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
        }
        let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            sum.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(sum)
    }
}
