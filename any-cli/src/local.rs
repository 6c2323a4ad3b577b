//! Commands that run the local backend: `run`, `chat`, `tokenize`, `logits`, `perplexity`.

use std::io::Write;
use std::path::{Path, PathBuf};

use any_core::{ChatRequest, ChatServiceExt, Message, Sampling};
use any_llm::local::{LocalModel, LocalModelOptions, fetch};
use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;

/// Which model file to open: all a command that only reads the model (`tokenize`) takes.
#[derive(Debug, Args)]
pub(crate) struct ModelName {
    /// A GGUF model file (default: `ANY_MODEL`, else the embedded default model, fetched on
    /// first use). `run` and `chat` also take a `provider:model` id (`openai:gpt-4o-mini`,
    /// `ollama:gemma3:4b`, `anthropic:claude-3-5-haiku-latest`; `local` is the default model),
    /// keys and addresses coming from the provider's environment variables. A value is a file
    /// when it exists, ends in `.gguf` or contains a path separator.
    #[arg(long, short = 'm', value_name = "PATH|ID")]
    model: Option<PathBuf>,
}

impl ModelName {
    fn choice(&self) -> Result<ModelChoice> {
        self.model
            .as_deref()
            .map_or(Ok(ModelChoice::Local(None)), ModelChoice::of)
    }

    /// The local model file: `--model`'s, else `ANY_MODEL`'s or the default model's.
    fn path(&self) -> Result<PathBuf> {
        match self.choice()? {
            ModelChoice::Local(Some(p)) => Ok(p),
            ModelChoice::Local(None) => Ok(fetch::default_model_path()?),
            ModelChoice::Registry(id) => anyhow::bail!(
                "this command needs a local GGUF model, not the provider model `{id}`"
            ),
        }
    }

    fn open_with(&self, options: LocalModelOptions) -> Result<LocalModel> {
        open_file(&self.path()?, options)
    }
}

/// Opens a GGUF file; the error names the file once.
pub(crate) fn open_file(path: &Path, options: LocalModelOptions) -> Result<LocalModel> {
    LocalModel::open_with(path, options).map_err(|e| {
        if e.to_string().contains(&path.display().to_string()) {
            anyhow::Error::new(e)
        } else {
            anyhow::Error::new(e).context(format!("opening {}", path.display()))
        }
    })
}

/// Which model to open, and how to run it.
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    #[command(flatten)]
    name: ModelName,
    /// Threads for the matrix work (default: all cores).
    #[arg(long, short = 't', value_name = "N", allow_negative_numbers = true)]
    threads: Option<usize>,
    /// The KV cache's number type: f16 (llama.cpp's default) or q8_0 (half the cache, faster
    /// decoding at long contexts).
    #[arg(long, value_name = "TYPE", default_value = "f16")]
    kv_cache: any_llm::local::KvCacheType,
}

/// What a `--model` value names.
pub(crate) enum ModelChoice {
    /// The local backend, on this file (`None`: the default model).
    Local(Option<PathBuf>),
    /// A `provider:model` id for the registry.
    Registry(String),
}

impl ModelChoice {
    /// Reads a `--model` value: an existing file is a file, whatever its name looks like, and
    /// so is the name of a cached model (`any models list`); `local`, `local:default`,
    /// `local:PATH` and `local:NAME` are the local backend; an id whose provider the registry
    /// knows is a registry model (`openrouter:meta-llama/...` included); else a value that
    /// ends in `.gguf` or contains a path separator is a file path (a missing file is then
    /// reported as missing).
    ///
    /// # Errors
    /// `local:` with neither a file nor a cached model; anything else, `foo:bar` or a bare
    /// `foo`: an unknown provider, naming the known ones.
    pub(crate) fn of(value: &Path) -> Result<ModelChoice> {
        if value.is_file() {
            return Ok(ModelChoice::Local(Some(value.to_path_buf())));
        }
        let text = value.to_string_lossy();
        if let Some(path) = any_llm::local::cache::find(&text)? {
            return Ok(ModelChoice::Local(Some(path)));
        }
        let (provider, name) = any_llm::parse_model_id(&text);
        let known: Vec<&str> = any_llm::providers().iter().map(|row| row.name).collect();
        let looks_like_a_path = text.to_ascii_lowercase().ends_with(".gguf")
            || text.contains('/')
            || text.contains(std::path::MAIN_SEPARATOR);
        match provider {
            "local" if name.is_empty() || name == "default" => Ok(ModelChoice::Local(None)),
            "local" => Ok(ModelChoice::Local(Some(any_llm::local::cache::resolve(
                name,
            )?))),
            p if known.contains(&p) => Ok(ModelChoice::Registry(text.into_owned())),
            _ if looks_like_a_path => Ok(ModelChoice::Local(Some(value.to_path_buf()))),
            p => anyhow::bail!(
                "--model `{text}`: unknown provider `{p}` (known: {}); a model file must \
                 exist, end in .gguf or contain a path separator",
                known.join(", ")
            ),
        }
    }
}

impl ModelArgs {
    fn choice(&self) -> Result<ModelChoice> {
        self.name.choice()
    }

    /// The chat service `--model` names: a provider's model through the registry, or the
    /// local backend opened with these options.
    pub(crate) fn chat_service(&self) -> Result<(String, any_core::BoxChatService)> {
        match self.choice()? {
            ModelChoice::Registry(id) => {
                let model = any_llm::model(&id).with_context(|| format!("model `{id}`"))?;
                Ok((id, model))
            }
            ModelChoice::Local(_) => {
                let model = self.open()?;
                let label = format!(
                    "{} ({}-token context)",
                    model.info().name,
                    model.info().context
                );
                Ok((label, model.boxed_chat()))
            }
        }
    }

    pub(crate) fn open(&self) -> Result<LocalModel> {
        self.name.open_with(LocalModelOptions {
            threads: self.threads,
            kv_cache: self.kv_cache,
            ..Default::default()
        })
    }
}

/// `any run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Feed PROMPT as-is (special tokens parsed, no chat template, BOS only if the model asks
    /// for it); without it PROMPT is a user message in the model's chat template.
    #[arg(long)]
    raw: bool,
    /// Always pick the most likely token (same as --temperature 0).
    #[arg(long)]
    greedy: bool,
    /// The most tokens to generate.
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 256,
        allow_negative_numbers = true
    )]
    max_tokens: u32,
    /// Seed for sampling; the same seed gives the same output.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Sampling temperature, a finite number ≥ 0 (default 0.8).
    #[arg(long, value_name = "T", allow_negative_numbers = true, value_parser = temperature)]
    temperature: Option<f32>,
    /// Print `{"text": ..., "ids": [...]}` (the generated text and token ids) instead of
    /// streaming text.
    #[arg(long)]
    json: bool,
    /// The prompt.
    prompt: String,
}

/// Parses `--temperature`: a finite number ≥ 0.
fn temperature(value: &str) -> std::result::Result<f32, String> {
    match value.trim().parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!(
            "--temperature must be a finite number ≥ 0, got {value}"
        )),
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<()> {
    anyhow::ensure!(
        !args.prompt.trim().is_empty(),
        "the prompt is empty: pass the text to answer, e.g. `any run \"Why is the sky blue?\"`"
    );
    if let ModelChoice::Registry(_) = args.model.choice()? {
        return run_service(args).await;
    }
    let model = args.model.open()?;
    let sampling = Sampling {
        temperature: if args.greedy {
            Some(0.0)
        } else {
            args.temperature
        },
        max_tokens: Some(args.max_tokens),
        seed: args.seed,
        ..Default::default()
    };
    let ids = if args.raw {
        model.tokenize_raw(&args.prompt)
    } else {
        let req = ChatRequest::builder().user(args.prompt.clone()).build();
        model.encode_prompt(&req)?
    };
    let prompt_tokens = ids.len();
    // Log-probabilities of the chosen tokens carry their ids, which `--json` reports.
    let mut stream = model.generate_ids(ids, &sampling, args.json.then_some(0))?;
    let mut stdout = std::io::stdout().lock();
    let (mut text, mut out_ids) = (String::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if args.json {
            text.push_str(&chunk.text);
            out_ids.extend(chunk.logprobs.iter().filter_map(|l| l.id));
        } else {
            stdout.write_all(chunk.text.as_bytes())?;
            stdout.flush()?;
        }
    }
    if args.json {
        writeln!(
            stdout,
            "{}",
            serde_json::json!({"text": text, "ids": out_ids, "prompt_tokens": prompt_tokens})
        )?;
    } else {
        writeln!(stdout)?;
    }
    Ok(())
}

/// `any run` on a provider's model: the prompt as a user message, the answer streamed.
async fn run_service(args: RunArgs) -> Result<()> {
    anyhow::ensure!(
        !args.raw && !args.json,
        "--raw and --json (token ids) need a local model"
    );
    let (_, model) = args.model.chat_service()?;
    let mut builder = ChatRequest::builder()
        .user(args.prompt.clone())
        .max_tokens(args.max_tokens);
    if args.greedy {
        builder = builder.temperature(0.0);
    } else if let Some(t) = args.temperature {
        builder = builder.temperature(t);
    }
    if let Some(seed) = args.seed {
        builder = builder.seed(seed);
    }
    let mut stream = model.stream(builder.build()).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        stdout.write_all(chunk?.text.as_bytes())?;
        stdout.flush()?;
    }
    writeln!(stdout)?;
    Ok(())
}

/// `any chat`.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system prompt for the conversation.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// The most tokens per answer.
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 512
    )]
    max_tokens: u32,
}

/// What `/help` prints in `any chat`.
const CHAT_HELP: &str = "\
/help          this list
/reset         forget the conversation (the system prompt stays)
/exit, /quit   leave (so do Ctrl-D, and Ctrl-C at the prompt)
Ctrl-C while an answer streams stops the answer.";

pub(crate) async fn chat(args: ChatArgs) -> Result<()> {
    let (label, model) = args.model.chat_service()?;
    eprintln!("{label}. /help lists the commands, /exit or Ctrl-D quits.");
    let mut messages: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::system(s.clone()))
        .collect();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("> ");
        // Ctrl-C at the prompt leaves, as it would without this handler.
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!();
                break;
            }
        };
        let Some(line) = line else {
            break;
        };
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        if command.starts_with('/') {
            match command {
                "/exit" | "/quit" => break,
                "/reset" => {
                    messages.retain(|m| m.role == any_core::Role::System);
                    eprintln!("(conversation cleared)");
                }
                "/help" => eprintln!("{CHAT_HELP}"),
                other => eprintln!("unknown command `{other}`; /help lists the commands"),
            }
            continue;
        }
        messages.push(Message::user(line));
        let req = ChatRequest::builder()
            .messages(messages.clone())
            .max_tokens(args.max_tokens)
            .build();
        let mut answer = String::new();
        let answering = async {
            let mut stream = model.stream(req).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                answer.push_str(&chunk.text);
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(chunk.text.as_bytes())?;
                stdout.flush()?;
            }
            anyhow::Ok(())
        };
        // Ctrl-C while answering drops the stream, which stops generation, and keeps what
        // was said so far.
        let interrupted = tokio::select! {
            done = answering => {
                done?;
                false
            }
            _ = tokio::signal::ctrl_c() => true,
        };
        println!();
        if interrupted {
            eprintln!("(interrupted)");
        }
        if answer.is_empty() {
            // Nothing to answer to: the question goes, so the next turn is not two in a row.
            messages.pop();
        } else {
            messages.push(Message::assistant(answer));
        }
    }
    Ok(())
}

/// `any tokenize`.
#[derive(Debug, Args)]
pub(crate) struct TokenizeArgs {
    #[command(flatten)]
    model: ModelName,
    /// Tokenize as plain text from a user: control-token text such as `<|im_end|>` stays
    /// text, as message content does in a chat prompt.
    #[arg(long)]
    plain: bool,
    /// The text; special tokens written in it are parsed (unless `--plain`), no BOS is added.
    text: String,
}

pub(crate) fn tokenize(args: TokenizeArgs) -> Result<()> {
    // Tokenizing runs no matrix work: one thread, the smallest cache.
    let model = args.model.open_with(LocalModelOptions {
        threads: Some(1),
        context: Some(1),
        ..Default::default()
    })?;
    let ids = model.tokenizer().encode(
        &args.text,
        any_llm::local::tokenizer::EncodeOptions {
            add_special: false,
            parse_special: !args.plain,
        },
    );
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

/// `any logits`.
#[derive(Debug, Args)]
pub(crate) struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// How many of the largest logits to print.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    top: usize,
    /// The raw prompt (special tokens parsed, BOS only if the model asks for it).
    prompt: String,
}

pub(crate) async fn logits(args: LogitsArgs) -> Result<()> {
    let model = args.model.open()?;
    let ids = model.tokenize_raw(&args.prompt);
    let logits = model.logits(ids.clone()).await?;
    let text = |id: u32| {
        model
            .tokenizer()
            .decode(&[id])
            .unwrap_or_else(|_| format!("<{id}>"))
    };
    let tokens: Vec<String> = ids.iter().map(|&id| text(id)).collect();
    let top: Vec<serde_json::Value> = any_llm::local::top_logits(&logits, args.top)
        .into_iter()
        .map(|(id, logit)| serde_json::json!([id, logit, text(id)]))
        .collect();
    println!(
        "{}",
        serde_json::json!({"ids": ids, "tokens": tokens, "top": top})
    );
    Ok(())
}

/// `any perplexity`.
#[derive(Debug, Args)]
pub(crate) struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Window size in tokens.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    ctx: usize,
    /// The text file to score.
    file: PathBuf,
}

pub(crate) async fn perplexity(args: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let model = args.model.open()?;
    let p = model.perplexity(&text, args.ctx).await?;
    println!(
        "{}",
        serde_json::json!({"ppl": p.ppl, "windows": p.windows, "scored": p.scored})
    );
    Ok(())
}
