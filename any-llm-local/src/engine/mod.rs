//! [`LocalModel`]: a GGUF model on this machine's CPU, as a chat service, an embedder and a
//! scorer.

mod prompt;
mod stop;
mod tool_call;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::task::{Context, Poll};
use std::time::Duration;

use any_core::{
    ChatRequest, ChatStream, EmbedRequest, EmbedResponse, Error, Message, Result, Role, Usage,
};
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::arch::{Decoder, ModelConfig};
use crate::constrain::{Constraint, GrammarEngine, Plan};
use crate::gguf::GgufFile;
use crate::kv_cache::KvCacheType;
use crate::pool::Pool;
use crate::sampler::{self, SamplerConfig};
use crate::template::ChatTemplate;
use crate::tokenizer::{EncodeOptions, Tokenizer};
use worker::{Generate, Job, ToolMode, Worker};

/// The context window used when none is asked for: the model's own, capped to keep the KV
/// cache small.
pub const DEFAULT_CONTEXT: usize = 4096;

/// The most texts one embeddings request may carry (as many as OpenAI's API takes); more is
/// an [`Error::InvalidRequest`] naming the limit.
pub const MAX_EMBED_INPUTS: usize = 2048;

/// The most tokens one embeddings request may hold across its texts; more is an
/// [`Error::InvalidRequest`] naming the limit. A request within it still runs for minutes on
/// a small CPU, so a client that leaves stops its request between sequences and batches.
pub const MAX_EMBED_TOKENS: usize = 1 << 18;

/// How to open a [`LocalModel`].
#[derive(Debug, Clone, Default)]
pub struct LocalModelOptions {
    /// Context window in tokens; default the model's training context capped at
    /// [`DEFAULT_CONTEXT`].
    pub context: Option<usize>,
    /// Threads for the matrix work; default all cores, and never more than the cores the
    /// machine runs at once (a larger number is capped, with a warning).
    pub threads: Option<usize>,
    /// The type the KV cache holds keys and values in; default f16 (llama.cpp's default).
    /// [`KvCacheType::Q8_0`] halves the cache and its reads, so a long context decodes faster.
    pub kv_cache: KvCacheType,
}

/// What a [`LocalModel`] is.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `general.name`, else the file name.
    pub name: String,
    /// The file it was opened from.
    pub path: PathBuf,
    /// The architecture's shape.
    pub config: ModelConfig,
    /// The context window this instance serves.
    pub context: usize,
    /// Threads used for the matrix work.
    pub threads: usize,
    /// The KV cache's type.
    pub kv_cache: KvCacheType,
}

/// The log-likelihood of a continuation given a context (what multiple-choice evaluations
/// compare).
#[derive(Debug, Clone, PartialEq)]
pub struct LogLikelihood {
    /// Sum of the natural-log probabilities of the continuation's tokens.
    pub logprob: f64,
    /// Whether every continuation token was also the most likely one (greedy would produce
    /// it).
    pub is_greedy: bool,
    /// How many tokens the continuation has.
    pub tokens: usize,
}

/// The perplexity of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// `exp` of the mean negative log-likelihood of the scored tokens.
    pub ppl: f64,
    /// How many windows were evaluated.
    pub windows: usize,
    /// How many tokens were scored.
    pub scored: usize,
}

/// A GGUF model running on the CPU: a [`ChatService`](any_core::ChatService) (streaming;
/// dropping the stream cancels generation), an embedding service, and a scorer.
///
/// Cheap to clone: clones share the weights and the one inference thread, which runs
/// requests one at a time (never mixed) and keeps the last conversation's KV cache, so a
/// multi-turn chat only evaluates what is new.
///
/// Structured output is constrained while decoding (llguidance): with
/// [`ResponseFormat::Json`](any_core::ResponseFormat::Json) or
/// [`ResponseFormat::JsonSchema`](any_core::ResponseFormat::JsonSchema) only tokens that keep
/// the answer valid can be sampled, so a finished answer always parses and validates; with
/// `tool_choice` [`Required`](any_core::ToolChoice::Required) or a named tool the answer is
/// one call of an allowed tool, `{"name": ..., "arguments": ...}` with arguments valid under
/// the tool's schema, returned as a tool call with
/// [`FinishReason::ToolCalls`](any_core::FinishReason::ToolCalls). A call streams as the
/// HTTP providers stream one: a first [`ToolCallDelta`](any_core::ToolCallDelta) with the
/// id, the tool's name and the start of the arguments, then the rest of the arguments' JSON
/// text as it is generated; the fragments add up to exactly the call's arguments (the text
/// the model wrote). A call cut off by `max_tokens` ends with
/// [`FinishReason::Length`](any_core::FinishReason::Length) and arguments that are not
/// complete (the `}` that may close the call's wrapper is never sent). The first constrained
/// request prepares the vocabulary for the grammar engine (once per model). A schema keyword
/// that cannot be enforced (`not`, `uniqueItems`, ...) is an [`Error::Unsupported`] naming
/// it. With tools and `tool_choice` auto (or unset) the model chooses: an answer that starts
/// with `{` is a call, constrained as a forced one is; any other answer is free text. (With a
/// JSON response format as well, the answer stays JSON.)
///
/// ```no_run
/// use any_core::ChatServiceExt;
/// use any_llm_local::LocalModel;
///
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let model = LocalModel::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// let answer = model.complete("What is the capital of France?").await?;
/// println!("{answer}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalModel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    info: ModelInfo,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    jobs: mpsc::Sender<Job>,
    /// Tokens the inference thread has run through the model.
    evaluated: Arc<AtomicU64>,
    /// llguidance's view of the vocabulary, built on the first constrained request.
    grammar: OnceLock<std::result::Result<Arc<GrammarEngine>, String>>,
}

impl LocalModel {
    /// Opens a GGUF model with default options.
    ///
    /// # Errors
    /// [`Error::Model`] naming what is wrong with the file (not GGUF, truncated, an
    /// unsupported architecture, tensor type or tokenizer, a missing tensor or key).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, LocalModelOptions::default())
    }

    /// Opens a GGUF model with `options`.
    ///
    /// # Errors
    /// As [`LocalModel::open`]; also [`Error::InvalidRequest`] for a zero context or thread
    /// count.
    pub fn open_with(path: impl AsRef<Path>, options: LocalModelOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = GgufFile::open(path).map_err(|e| {
            // Some GGUF errors name the file already; the others are told which file.
            let text = e.to_string();
            let message = if text.contains(&path.display().to_string()) {
                text
            } else {
                format!("{}: {text}", path.display())
            };
            Error::model_with_source(message, e)
        })?;
        let file = Arc::new(file);
        let decoder = Arc::new(Decoder::load(file.clone())?);
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let template = ChatTemplate::from_gguf(&file)?;
        let cfg = decoder.config().clone();
        if tokenizer.vocab_size() != cfg.n_vocab {
            return Err(Error::model(format!(
                "the tokenizer has {} tokens but the embedding has {} rows",
                tokenizer.vocab_size(),
                cfg.n_vocab
            )));
        }
        let context = options
            .context
            .unwrap_or(cfg.n_ctx_train.min(DEFAULT_CONTEXT));
        if context == 0 {
            return Err(Error::InvalidRequest(
                "the context window must be at least 1 token".into(),
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = options.threads.unwrap_or(cores);
        if threads == 0 {
            return Err(Error::InvalidRequest("threads must be at least 1".into()));
        }
        // More threads than cores only take turns on them, and every matrix product waits
        // for the slowest: hundreds of them make each step crawl.
        if threads > cores {
            tracing::warn!(
                asked = threads,
                cores,
                "more threads asked for than this machine runs at once; using {cores}"
            );
            threads = cores;
        }
        let pool = Pool::new(threads)
            .map_err(|e| Error::model(format!("cannot start the thread pool: {e}")))?;
        let name = file
            .metadata()
            .get_opt_str("general.name")
            .ok()
            .flatten()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                path.file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
            });
        let (tx, rx) = mpsc::channel();
        let evaluated = Arc::new(AtomicU64::new(0));
        let worker = Worker::new(
            decoder,
            tokenizer.clone(),
            context,
            options.kv_cache,
            pool,
            evaluated.clone(),
        )?;
        std::thread::Builder::new()
            .name("any-local-engine".into())
            .spawn(move || worker.run(rx))
            .map_err(Error::Io)?;
        let info = ModelInfo {
            name,
            path: path.to_owned(),
            config: cfg,
            context,
            threads,
            kv_cache: options.kv_cache,
        };
        Ok(LocalModel {
            inner: Arc::new(Inner {
                info,
                tokenizer,
                template,
                jobs: tx,
                grammar: OnceLock::new(),
                evaluated,
            }),
        })
    }

    /// What this model is.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// How many tokens the model has run through its layers since it was opened: prompts
    /// (less the prefix reused from the cache), generated tokens, embedded and scored texts.
    /// A figure for metrics, and how a test sees that a request given up on stopped early.
    pub fn evaluated_tokens(&self) -> u64 {
        self.inner.evaluated.load(Ordering::Relaxed)
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// The model's chat template (ChatML when the file has none).
    pub fn template(&self) -> &ChatTemplate {
        &self.inner.template
    }

    /// Token ids of `text` as plain text from a user: control-token text in it stays text,
    /// BOS only if the model asks for it.
    pub fn tokenize_text(&self, text: &str) -> Vec<u32> {
        self.inner.tokenizer.encode(text, EncodeOptions::default())
    }

    /// Token ids of `text` as the model's raw input: special tokens parsed, BOS only if the
    /// model asks for it.
    pub fn tokenize_raw(&self, text: &str) -> Vec<u32> {
        self.inner.tokenizer.encode(
            text,
            EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )
    }

    fn send(&self, job: Job) -> Result<()> {
        self.inner
            .jobs
            .send(job)
            .map_err(|_| Error::model("the inference thread has stopped"))
    }

    fn check_context(&self, n: usize, extra: usize) -> Result<()> {
        let limit = self.inner.info.context;
        if n + extra > limit {
            return Err(Error::ContextLengthExceeded {
                message: format!(
                    "the prompt has {n} tokens{}; the context window is {limit}",
                    if extra > 0 {
                        format!(" and needs room for {extra} more")
                    } else {
                        String::new()
                    }
                ),
                requested: Some(n + extra),
                limit: Some(limit),
            });
        }
        Ok(())
    }

    /// Starts generating from raw prompt ids.
    ///
    /// # Errors
    /// [`Error::ContextLengthExceeded`] if the prompt does not fit; [`Error::InvalidRequest`]
    /// for an empty prompt.
    pub fn generate_ids(
        &self,
        prompt: Vec<u32>,
        sampling: &any_core::Sampling,
        logprobs: Option<u8>,
    ) -> Result<ChatStream> {
        self.generate_constrained(prompt, sampling, logprobs, None, ToolMode::Off)
    }

    fn generate_constrained(
        &self,
        prompt: Vec<u32>,
        sampling: &any_core::Sampling,
        logprobs: Option<u8>,
        constraint: Option<Constraint>,
        tool_mode: ToolMode,
    ) -> Result<ChatStream> {
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt has no tokens".into()));
        }
        self.check_context(prompt.len(), 1)?;
        let (tx, rx) = tmpsc::unbounded_channel();
        self.send(Job::Generate(Generate {
            prompt,
            sampler: SamplerConfig::from_sampling(sampling),
            max_tokens: sampling.max_tokens.map(|n| n as usize),
            stop: sampling.stop.clone(),
            logprobs,
            model_name: self.inner.info.name.clone(),
            chunks: tx,
            constraint,
            tool_mode,
        }))?;
        Ok(ChatStream::new(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| Error::model("the inference thread dropped the request"))?
    }

    /// Logits for the token after `ids` (evaluated from an empty cache).
    ///
    /// # Errors
    /// [`Error::ContextLengthExceeded`] or [`Error::InvalidRequest`] for empty input.
    pub async fn logits(&self, ids: Vec<u32>) -> Result<Vec<f32>> {
        self.check_context(ids.len(), 0)?;
        self.ask(|reply| Job::Logits { ids, reply }).await
    }

    /// Times one prefill: `ids` evaluated in a single forward pass from an empty cache,
    /// plus the logits of the last token (what `any bench` and llama.cpp's anchor measure).
    ///
    /// The cache is left holding `ids`.
    ///
    /// # Errors
    /// [`Error::ContextLengthExceeded`] or [`Error::InvalidRequest`] for empty input.
    pub async fn time_prefill(&self, ids: Vec<u32>) -> Result<Duration> {
        self.check_context(ids.len(), 0)?;
        self.ask(|reply| Job::TimePrefill { ids, reply }).await
    }

    /// Times greedy decoding: `prompt` is evaluated from an empty cache (untimed, so a long
    /// prompt sets the context depth), then `steps` tokens are generated one forward pass
    /// each, every step computing the logits and picking the most likely token. End-of-text
    /// tokens do not stop it.
    ///
    /// Returns the time of the `steps` steps only.
    ///
    /// # Errors
    /// [`Error::ContextLengthExceeded`] when `prompt` and `steps` do not fit the context
    /// window; [`Error::InvalidRequest`] for an empty prompt.
    pub async fn time_decode(&self, prompt: Vec<u32>, steps: usize) -> Result<Duration> {
        self.check_context(prompt.len(), steps)?;
        self.ask(|reply| Job::TimeDecode {
            prompt,
            steps,
            reply,
        })
        .await
    }

    /// Log-probabilities of `ids[from..]`, each given the tokens before it.
    ///
    /// # Errors
    /// [`Error::ContextLengthExceeded`], or [`Error::InvalidRequest`] unless
    /// `0 < from < ids.len()`.
    pub async fn token_logprobs(&self, ids: Vec<u32>, from: usize) -> Result<Vec<f32>> {
        self.check_context(ids.len(), 0)?;
        Ok(self
            .ask(|reply| Job::Score { ids, from, reply })
            .await?
            .logprobs)
    }

    /// The log-likelihood of `continuation` following `context` (raw text, no template; BOS
    /// if the model asks for it), as lm-evaluation-harness defines it.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the context or continuation is empty after
    /// tokenization; [`Error::ContextLengthExceeded`].
    pub async fn log_likelihood(&self, context: &str, continuation: &str) -> Result<LogLikelihood> {
        let ctx = self.tokenize_raw(context);
        let whole = self.tokenize_raw(&format!("{context}{continuation}"));
        // Tokens can merge across the boundary; score what the whole text adds past the
        // longest common prefix with the context alone.
        let from = ctx
            .iter()
            .zip(&whole)
            .take_while(|(a, b)| a == b)
            .count()
            .max(1);
        if from >= whole.len() {
            return Err(Error::InvalidRequest(
                "the continuation adds no tokens".into(),
            ));
        }
        self.check_context(whole.len(), 0)?;
        let tokens = whole.len() - from;
        let scored = self
            .ask(|reply| Job::Score {
                ids: whole,
                from,
                reply,
            })
            .await?;
        Ok(LogLikelihood {
            logprob: scored.logprobs.iter().map(|&l| f64::from(l)).sum(),
            is_greedy: scored.greedy.iter().all(|&g| g),
            tokens,
        })
    }

    /// Perplexity of `text` by llama.cpp's method: tokenize without BOS, split into
    /// consecutive windows of `ctx` tokens (dropping the last partial one), evaluate each from
    /// an empty cache, and score every token of a window but its first.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the text is shorter than one window or `ctx < 2`;
    /// [`Error::ContextLengthExceeded`] when `ctx` exceeds the context window.
    pub async fn perplexity(&self, text: &str, ctx: usize) -> Result<Perplexity> {
        if ctx < 2 {
            return Err(Error::InvalidRequest(format!(
                "a perplexity window needs at least 2 tokens, got {ctx}"
            )));
        }
        self.check_context(ctx, 0)?;
        let ids = self.inner.tokenizer.encode(
            text,
            EncodeOptions {
                add_special: false,
                parse_special: false,
            },
        );
        let windows = ids.len() / ctx;
        if windows == 0 {
            return Err(Error::InvalidRequest(format!(
                "the text has {} tokens, fewer than one window of {ctx}",
                ids.len()
            )));
        }
        let mut nll = 0.0f64;
        let mut scored = 0usize;
        for w in ids.chunks_exact(ctx) {
            let lps = self.token_logprobs(w.to_vec(), 1).await?;
            nll -= lps.iter().map(|&l| f64::from(l)).sum::<f64>();
            scored += lps.len();
        }
        Ok(Perplexity {
            ppl: (nll / scored as f64).exp(),
            windows,
            scored,
        })
    }

    /// Mean-pooled, L2-normalised final hidden states of each text.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for an empty text, more than [`MAX_EMBED_INPUTS`] texts or
    /// more than [`MAX_EMBED_TOKENS`] tokens in all; [`Error::ContextLengthExceeded`] for a
    /// text longer than the context window.
    pub async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let seqs = self.embed_inputs(texts)?;
        self.ask(|reply| Job::Embed { seqs, reply }).await
    }

    /// The token ids of each text to embed, within the limits.
    fn embed_inputs(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        if texts.len() > MAX_EMBED_INPUTS {
            return Err(Error::InvalidRequest(format!(
                "{} inputs in one embeddings request; the limit is {MAX_EMBED_INPUTS} \
                 (MAX_EMBED_INPUTS): split them over several requests",
                texts.len()
            )));
        }
        let seqs: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize_text(t)).collect();
        let total: usize = seqs.iter().map(Vec::len).sum();
        if total > MAX_EMBED_TOKENS {
            return Err(Error::InvalidRequest(format!(
                "the inputs of this embeddings request hold {total} tokens in all; the limit is \
                 {MAX_EMBED_TOKENS} (MAX_EMBED_TOKENS): split them over several requests"
            )));
        }
        for s in &seqs {
            self.check_context(s.len(), 0)?;
        }
        Ok(seqs)
    }

    /// llguidance's view of this model's vocabulary (built once, on first use).
    fn grammar_engine(&self) -> Result<Arc<GrammarEngine>> {
        self.inner
            .grammar
            .get_or_init(|| {
                GrammarEngine::new(&self.inner.tokenizer)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Error::model)
    }

    /// Prepares and starts a chat request: renders the template, tokenizes, compiles the
    /// grammar of a constrained request, checks the context and queues the generation.
    /// All of it is CPU work that grows with the prompt (and, for the first constrained
    /// request, with the vocabulary), so it runs off the caller's async thread.
    fn start_chat(&self, req: ChatRequest, plan: Option<Plan>) -> Result<ChatStream> {
        let (constraint, tool_mode) = match &plan {
            None => (None, ToolMode::Off),
            Some(plan) => (
                Some(self.grammar_engine()?.constraint(plan)?),
                match plan {
                    Plan::ToolCall(_) => ToolMode::Forced,
                    Plan::ToolOrText(_) => ToolMode::Auto,
                    Plan::Json(_) => ToolMode::Off,
                },
            ),
        };
        let source = self.inner.template.source();
        let inline_calls =
            !source.contains("tool_calls") && req.messages.iter().any(|m| !m.tool_calls.is_empty());
        let prompt = match plan.as_ref().and_then(Plan::tools) {
            None if !inline_calls => self.encode_prompt(&req)?,
            tools => {
                let mut req = req.clone();
                if inline_calls {
                    inline_tool_calls(&mut req.messages);
                }
                if let Some(tools) = tools {
                    let forced = tool_mode == ToolMode::Forced;
                    add_tool_instructions(
                        &mut req.messages,
                        tools,
                        forced,
                        !source.contains("tools"),
                    );
                }
                self.encode_prompt(&req)?
            }
        };
        self.generate_constrained(prompt, &req.sampling, req.logprobs, constraint, tool_mode)
    }
}

/// Writes each assistant message's tool calls into its text, one
/// `{"name": ..., "arguments": ...}` object a line, as the model was asked to write them: for
/// templates that do not render `tool_calls`, which would otherwise show the model an empty
/// turn where it called a tool.
fn inline_tool_calls(messages: &mut [Message]) {
    for m in messages.iter_mut().filter(|m| !m.tool_calls.is_empty()) {
        let mut text = m.content.text().into_owned();
        for call in &m.tool_calls {
            let arguments: serde_json::Value = serde_json::from_str(&call.arguments)
                .unwrap_or_else(|_| call.arguments.clone().into());
            let object = serde_json::json!({"name": call.name, "arguments": arguments});
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&object.to_string());
        }
        m.content = any_core::Content::Text(text);
    }
}

/// Tells the model that it must (`forced`) or may call a tool, and how: a system message
/// (merged into the first one, if the conversation starts with one) saying to answer with
/// only `{"name": <tool name>, "arguments": <arguments object>}` to call one, listing each
/// allowed tool with its description and parameter schema when `list_tools` (templates that
/// render `tools` themselves list them already).
fn add_tool_instructions(
    messages: &mut Vec<Message>,
    tools: &[any_core::ToolSpec],
    forced: bool,
    list_tools: bool,
) {
    let mut text = String::from(if forced {
        "You must call one of the tools below. Answer with only a JSON object of the form \
         {\"name\": <tool name>, \"arguments\": <arguments object>}."
    } else {
        "You can call the tools below. To call one, answer with only a JSON object of the \
         form {\"name\": <tool name>, \"arguments\": <arguments object>}. When a tool's \
         result is given, or no tool is needed, answer in plain text."
    });
    if list_tools {
        text.push_str("\n\nTools:");
        for t in tools {
            text.push_str(&format!(
                "\n- {}: {} Arguments (JSON Schema): {}",
                t.name,
                t.description.as_deref().unwrap_or(""),
                t.parameters
            ));
        }
    }
    match messages.first_mut() {
        Some(first) if first.role == Role::System => {
            let merged = format!("{}\n\n{text}", first.content.text());
            first.content = any_core::Content::Text(merged);
        }
        _ => messages.insert(0, Message::system(text)),
    }
}

impl tower::Service<ChatRequest> for LocalModel {
    type Response = ChatStream;
    type Error = Error;
    type Future = ChatFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Checks what is cheap to check (the request's fields, the structured-output plan) and
    /// hands the rest to a blocking thread: rendering, tokenizing and grammar compilation
    /// grow with the prompt and would stall every task on the caller's async thread.
    ///
    /// Not the inference thread: it runs one job at a time, so preparing there would hold a
    /// request's errors (a prompt too long, a bad schema) until the answer before it ends,
    /// and hold up generation while a prompt is prepared.
    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let plan = match req.validate().and_then(|()| Plan::for_request(&req)) {
            Ok(plan) => plan,
            Err(e) => return ChatFuture::ready(Err(e)),
        };
        let this = self.clone();
        ChatFuture::blocking(move || this.start_chat(req, plan))
    }
}

/// The future [`LocalModel`]'s chat service returns: the request is prepared on a blocking
/// thread (tokio's blocking pool inside a runtime, a thread of its own outside one) and the
/// future waits for it without blocking.
#[derive(Debug)]
pub struct ChatFuture {
    state: ChatFutureState,
}

#[derive(Debug)]
enum ChatFutureState {
    Ready(Option<Result<ChatStream>>),
    Waiting(oneshot::Receiver<Result<ChatStream>>),
}

impl ChatFuture {
    fn ready(result: Result<ChatStream>) -> Self {
        ChatFuture {
            state: ChatFutureState::Ready(Some(result)),
        }
    }

    fn blocking(work: impl FnOnce() -> Result<ChatStream> + Send + 'static) -> Self {
        let (tx, rx) = oneshot::channel();
        let job = move || {
            // The receiver is gone when the caller dropped the future: nothing to tell.
            let _ = tx.send(work());
        };
        let spawned = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                drop(handle.spawn_blocking(job));
                Ok(())
            }
            Err(_) => std::thread::Builder::new()
                .name("any-local-prepare".into())
                .spawn(job)
                .map(drop),
        };
        match spawned {
            Ok(()) => ChatFuture {
                state: ChatFutureState::Waiting(rx),
            },
            Err(e) => ChatFuture::ready(Err(Error::Io(e))),
        }
    }
}

impl std::future::Future for ChatFuture {
    type Output = Result<ChatStream>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            ChatFutureState::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(Error::model("ChatFuture polled after completion"))),
            ),
            ChatFutureState::Waiting(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(Error::model("preparing the request panicked")))),
        }
    }
}

impl tower::Service<EmbedRequest> for LocalModel {
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
            let seqs = this.embed_inputs(&req.inputs)?;
            let tokens: usize = seqs.iter().map(Vec::len).sum();
            let embeddings = this.ask(|reply| Job::Embed { seqs, reply }).await?;
            Ok(embed_response(
                embeddings,
                req.dimensions,
                &this.inner.info.name,
                tokens,
            ))
        })
    }
}

/// The response to an embeddings request: the vectors (cut to `dimensions` and made unit
/// length again, where the request asks), the model's name and the tokens embedded.
pub(crate) fn embed_response(
    mut embeddings: Vec<Vec<f32>>,
    dimensions: Option<u32>,
    model: &str,
    tokens: usize,
) -> EmbedResponse {
    if let Some(d) = dimensions {
        for e in &mut embeddings {
            e.truncate(d as usize);
            let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                e.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
    EmbedResponse {
        embeddings,
        model: Some(model.to_owned()),
        usage: Some(Usage {
            prompt_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
            completion_tokens: 0,
            cached_prompt_tokens: None,
        }),
    }
}

/// The top `k` next-token logits as `(id, logit)`, most likely first.
pub fn top_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    sampler::top_n(logits, k)
}
