//! `any`: the command-line face of any-suite.
//!
//! Every subcommand prints what it states, so scripts can rely on it; machine-readable output
//! is JSON on standard output, progress and diagnostics go to standard error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod bench;
mod eval;
mod guard;
mod local;
mod memory;
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
    /// Run an agent on TASK: a model with tools from MCP servers, the answer streamed.
    Agent(agent::AgentArgs),
    /// Evaluate models on a dataset: scores per case and overall, report.json and report.md.
    Eval(eval::EvalArgs),
    /// Scan texts with the built-in guardrails: one JSON verdict per line of input.
    Guard(guard::GuardArgs),
    /// Measure prefill and decode speed (tokens per second), as the llama.cpp anchor does.
    Bench(bench::BenchArgs),
    /// Serve a model over OpenAI-compatible HTTP (chat completions, embeddings, models).
    Serve(serve::ServeArgs),
    /// Manage model files: fetch the default model, list the cache (the default).
    Models(models::ModelsArgs),
    /// Add, search, list and delete memories in a SQLite file or PostgreSQL (JSON output).
    Memory(memory::MemoryArgs),
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
            Command::Agent(a) => agent::run(a).await,
            Command::Eval(a) => eval::run(a).await,
            Command::Guard(a) => guard::run(a),
            Command::Bench(a) => bench::bench(a).await,
            Command::Serve(a) => serve::serve(a).await,
            Command::Models(a) => models::run(a.command.unwrap_or_default()),
            Command::Memory(a) => memory::run(a).await,
        }
    });
    // A read of standard input still pending (`chat` left by Ctrl-C) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like anyhow's `{:#}`, but each cause only when it
/// adds something: many errors repeat their source's text in their own message, and a
/// context often names the file its cause names already.
fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        // A cause that repeats the whole line so far (and adds to it) replaces it.
        if !line.is_empty() && text.contains(line.as_str()) {
            line = text;
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused (os error 111)",
        );
        let err = anyhow::Error::new(io)
            .context("ollama: cannot connect: refused (os error 111)")
            .context("I/O error: ollama: cannot connect: refused (os error 111)");
        assert_eq!(
            report(&err),
            "I/O error: ollama: cannot connect: refused (os error 111)"
        );
    }

    #[test]
    fn causes_that_add_text_are_kept_in_order() {
        let err = anyhow::anyhow!("no such file").context("opening model.gguf");
        assert_eq!(report(&err), "opening model.gguf: no such file");
    }
}
