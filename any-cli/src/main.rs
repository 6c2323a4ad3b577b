//! `any`: the command-line face of any-suite.
//!
//! Every subcommand prints what it states, so scripts can rely on it; machine-readable output
//! is JSON on standard output, progress and diagnostics go to standard error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod guard;
mod local;
mod models;
mod serve;

/// Own your AI stack: run, chat with, serve, evaluate and benchmark models.
///
/// Without --model, commands use ANY_MODEL if set, else the embedded default model
/// (SmolLM2-135M-Instruct, Q4_1), downloaded on first use into ANY_HOME
/// (default ~/.cache/any-suite/models).
#[derive(Debug, Parser)]
#[command(name = "any", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an answer to PROMPT and stream it to standard output.
    Run(local::RunArgs),
    /// Chat with a model interactively, answers streamed as they are generated.
    Chat(local::ChatArgs),
    /// Print the token ids of TEXT as a JSON array.
    Tokenize(local::TokenizeArgs),
    /// Print the prompt's ids and the largest next-token logits as JSON.
    Logits(local::LogitsArgs),
    /// Print the perplexity of a text file as JSON: {"ppl", "windows", "scored"}.
    Perplexity(local::PerplexityArgs),
    /// Scan texts with the built-in guardrails: one JSON verdict per line of input.
    Guard(guard::GuardArgs),
    /// Measure prefill and decode speed (tokens per second), as the llama.cpp anchor does.
    Bench(bench::BenchArgs),
    /// Serve a model over OpenAI-compatible HTTP (chat completions, embeddings, models).
    Serve(serve::ServeArgs),
    /// Manage model files: fetch the default model, list the cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ANY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => local::run(a).await,
            Command::Chat(a) => local::chat(a).await,
            Command::Tokenize(a) => local::tokenize(a),
            Command::Logits(a) => local::logits(a).await,
            Command::Perplexity(a) => local::perplexity(a).await,
            Command::Guard(a) => guard::run(a),
            Command::Bench(a) => bench::bench(a).await,
            Command::Serve(a) => serve::serve(a).await,
            Command::Models(cmd) => models::run(cmd),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
