//! `any serve`: a model behind the OpenAI-compatible HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use any_llm::local::{LocalModelOptions, fetch};
use any_llm::server::Server;
use anyhow::{Context, Result};
use clap::Args;

use crate::local::ModelChoice;

/// `any serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The model: `local` (the embedded default model, or ANY_MODEL), a GGUF file (or
    /// `local:PATH`), or a `provider:model` id of the registry (e.g. `ollama:gemma3:4b`),
    /// which the server then fronts — with its key and base URL from the provider's usual
    /// environment variables.
    #[arg(long, short = 'm', value_name = "M", default_value = "local")]
    model: String,
    /// Where /v1/embeddings come from, as `any_llm::embedder` names models. With a local
    /// model the default is `local`, the sentence encoder all-MiniLM-L6-v2 (loaded, and
    /// fetched the first time, on the first embeddings request); `local:chat` is the served
    /// chat model's mean-pooled hidden states. With a registry model the default is that
    /// provider's embeddings, where it has them.
    #[arg(long, value_name = "ID")]
    embedder: Option<String>,
    /// The address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Require `Authorization: Bearer <KEY>` on every /v1 route.
    #[arg(long, value_name = "KEY", env = "ANY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Threads for the matrix work (default: all cores).
    #[arg(long, short = 't', value_name = "N")]
    threads: Option<usize>,
    /// The KV cache's number type: f16 (llama.cpp's default) or q8_0 (half the cache, faster
    /// decoding at long contexts).
    #[arg(long, value_name = "TYPE", default_value = "f16")]
    kv_cache: any_llm::local::KvCacheType,
    /// Context window in tokens (default: the model's, capped at 4096).
    #[arg(long, value_name = "N")]
    context: Option<usize>,
    /// Requests answered at once; one more gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = any_llm::server::DEFAULT_MAX_CONCURRENCY as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_concurrency: u64,
    /// A host name requests may carry in `Host` (repeatable; `*` for any). On a loopback
    /// address the default is localhost, 127.0.0.1 and `[::1]` only, against DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// An origin whose web pages may call the server through CORS (repeatable;
    /// `https://app.example`, or `*` for any). Default: none.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, value_name = "SECS", default_value_t = any_llm::server::DEFAULT_HEADER_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client may take to send a request's body (408 after).
    #[arg(long, value_name = "SECS", default_value_t = any_llm::server::DEFAULT_BODY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Connections open at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = any_llm::server::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a shutdown (Ctrl-C or SIGTERM) lets requests in flight finish; streams still
    /// open then end with finish_reason "length".
    #[arg(long, value_name = "SECS", default_value_t = any_llm::server::DEFAULT_SHUTDOWN_GRACE.as_secs())]
    shutdown_grace: u64,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    // The id clients put in `model`: `local` for the default model, else the file's stem.
    let (path, id) = match ModelChoice::of(Path::new(&args.model))? {
        ModelChoice::Registry(_) => return serve_registry(args).await,
        ModelChoice::Local(None) => (fetch::default_model_path()?, "local".to_owned()),
        ModelChoice::Local(Some(path)) => {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| args.model.clone());
            (path, id)
        }
    };
    let options = LocalModelOptions {
        threads: args.threads,
        kv_cache: args.kv_cache,
        context: args.context,
    };
    let model = tokio::task::spawn_blocking({
        let path = path.clone();
        move || crate::local::open_file(&path, options)
    })
    .await
    .context("loading the model")??;

    let builder = Server::builder().chat(model.clone()).models([id.clone()]);
    let builder = match args.embedder.as_deref().unwrap_or("local") {
        "local:chat" => builder.embeddings(model),
        embedder => builder.embeddings(
            any_llm::embedder(embedder).with_context(|| format!("embedder `{embedder}`"))?,
        ),
    };
    listen(builder, &id, args).await
}

/// A registry model (`provider:model`) behind the server: chat always, embeddings where the
/// provider has them.
async fn serve_registry(args: ServeArgs) -> Result<()> {
    let id = args.model.clone();
    let chat = any_llm::model(&id).with_context(|| format!("model `{id}`"))?;
    let mut builder = Server::builder().chat(chat).models([id.clone()]);
    if let Some(embedder) = &args.embedder {
        let embed =
            any_llm::embedder(embedder).with_context(|| format!("embedder `{embedder}`"))?;
        builder = builder.embeddings(embed);
    } else if let Ok(embed) = any_llm::embedder(&id) {
        builder = builder.embeddings(embed);
    }
    listen(builder, &id, args).await
}

async fn listen(
    mut builder: any_llm::server::ServerBuilder,
    id: &str,
    args: ServeArgs,
) -> Result<()> {
    builder = builder
        .max_concurrency(usize::try_from(args.max_concurrency).unwrap_or(usize::MAX))
        .cors_origins(args.cors_origins)
        .header_timeout(Duration::from_secs(args.header_timeout))
        .body_timeout(Duration::from_secs(args.body_timeout))
        .max_connections(usize::try_from(args.max_connections).unwrap_or(usize::MAX))
        .shutdown_grace(Duration::from_secs(args.shutdown_grace));
    if !args.allowed_hosts.is_empty() {
        builder = builder.allowed_hosts(args.allowed_hosts);
    }
    if let Some(key) = args.api_key {
        builder = builder.api_key(key);
    }
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    let addr = listener.local_addr()?;
    // Scripts (and the tests) read this line to find the server.
    println!("listening on http://{addr}/v1 (model `{id}`)");
    builder
        .build()
        .serve(listener, async move {
            let signal = shutdown_signal().await;
            eprintln!(
                "{signal}: shutting down, finishing the requests in flight (at most {} s)",
                args.shutdown_grace
            );
        })
        .await
        .context("serving")
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers and container
/// runtimes send), and names the one that came. Without signal handlers it never returns:
/// the server then runs until it is killed.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "interrupted",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                "terminated"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = interrupt => name,
        name = terminate => name,
    }
}
