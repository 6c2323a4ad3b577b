//! Commands that run the local backend: `run`, `chat`, `tokenize`, `logits`, `perplexity`.

use std::io::Write;
use std::path::PathBuf;

use any_core::{ChatRequest, ChatServiceExt, Message, Sampling};
use any_llm::local::{LocalModel, LocalModelOptions, fetch};
use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;

/// Which model to open.
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    /// A GGUF model file (default: `ANY_MODEL`, else the embedded default model, fetched on
    /// first use). `run` and `chat` also take a `provider:model` id (`openai:gpt-4o-mini`,
    /// `ollama:gemma3:4b`, `anthropic:claude-3-5-haiku-latest`; `local` is the default model),
    /// keys and addresses coming from the provider's environment variables.
    #[arg(long, short = 'm', value_name = "PATH|ID")]
    model: Option<PathBuf>,
    /// Threads for the matrix work (default: all cores).
    #[arg(long, short = 't', value_name = "N")]
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
    /// Reads a `--model` value: an existing file is a file, whatever its name looks like;
    /// `local`, `local:default` and `local:PATH` are the local backend; an id whose provider
    /// the registry knows is a registry model; anything else is taken as a file path.
    pub(crate) fn of(value: &std::path::Path) -> ModelChoice {
        if value.is_file() {
            return ModelChoice::Local(Some(value.to_path_buf()));
        }
        let text = value.to_string_lossy();
        let (provider, name) = any_llm::parse_model_id(&text);
        match provider {
            "local" if name.is_empty() || name == "default" => ModelChoice::Local(None),
            "local" => ModelChoice::Local(Some(PathBuf::from(name))),
            p if any_llm::providers().iter().any(|row| row.name == p) => {
                ModelChoice::Registry(text.into_owned())
            }
            _ => ModelChoice::Local(Some(value.to_path_buf())),
        }
    }
}

impl ModelArgs {
    fn choice(&self) -> ModelChoice {
        self.model
            .as_deref()
            .map_or(ModelChoice::Local(None), ModelChoice::of)
    }

    /// The chat service `--model` names: a provider's model through the registry, or the
    /// local backend opened with these options.
    pub(crate) fn chat_service(&self) -> Result<(String, any_core::BoxChatService)> {
        match self.choice() {
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
        let path = match self.choice() {
            ModelChoice::Local(Some(p)) => p,
            ModelChoice::Local(None) => fetch::default_model_path()?,
            ModelChoice::Registry(id) => anyhow::bail!(
                "this command needs a local GGUF model, not the provider model `{id}`"
            ),
        };
        let options = LocalModelOptions {
            threads: self.threads,
            kv_cache: self.kv_cache,
            ..Default::default()
        };
        LocalModel::open_with(&path, options).with_context(|| format!("opening {}", path.display()))
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
        default_value_t = 256
    )]
    max_tokens: u32,
    /// Seed for sampling; the same seed gives the same output.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Sampling temperature (default 0.8).
    #[arg(long, value_name = "T")]
    temperature: Option<f32>,
    /// Print `{"text": ..., "ids": [...]}` (the generated text and token ids) instead of
    /// streaming text.
    #[arg(long)]
    json: bool,
    /// The prompt.
    prompt: String,
}

pub(crate) async fn run(args: RunArgs) -> Result<()> {
    if let ModelChoice::Registry(_) = args.model.choice() {
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
        model.tokenize_raw(&model.render_prompt(&req)?)
    };
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
            serde_json::json!({"text": text, "ids": out_ids})
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

pub(crate) async fn chat(args: ChatArgs) -> Result<()> {
    let (label, model) = args.model.chat_service()?;
    eprintln!("{label}. /reset starts over, /exit or Ctrl-D quits.");
    let mut messages: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::system(s.clone()))
        .collect();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next_line().await? else {
            break;
        };
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.retain(|m| m.role == any_core::Role::System);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::user(line));
        let req = ChatRequest::builder()
            .messages(messages.clone())
            .max_tokens(args.max_tokens)
            .build();
        let mut stream = model.stream(req).await?;
        let mut answer = String::new();
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            answer.push_str(&chunk.text);
            stdout.write_all(chunk.text.as_bytes())?;
            stdout.flush()?;
        }
        writeln!(stdout)?;
        messages.push(Message::assistant(answer));
    }
    Ok(())
}

/// `any tokenize`.
#[derive(Debug, Args)]
pub(crate) struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text; special tokens written in it are parsed, no BOS is added.
    text: String,
}

pub(crate) fn tokenize(args: TokenizeArgs) -> Result<()> {
    let model = args.model.open()?;
    let ids = model.tokenizer().encode(
        &args.text,
        any_llm::local::tokenizer::EncodeOptions {
            add_special: false,
            parse_special: true,
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
    #[arg(long, value_name = "K", default_value_t = 10)]
    top: usize,
    /// The raw prompt (special tokens parsed, BOS only if the model asks for it).
    prompt: String,
}

pub(crate) async fn logits(args: LogitsArgs) -> Result<()> {
    let model = args.model.open()?;
    let ids = model.tokenize_raw(&args.prompt);
    let logits = model.logits(ids.clone()).await?;
    let top: Vec<(u32, f32)> = any_llm::local::top_logits(&logits, args.top);
    println!("{}", serde_json::json!({"ids": ids, "top": top}));
    Ok(())
}

/// `any perplexity`.
#[derive(Debug, Args)]
pub(crate) struct PerplexityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Window size in tokens.
    #[arg(long, value_name = "N")]
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
