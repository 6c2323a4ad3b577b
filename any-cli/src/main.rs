//! `any`: the command-line face of any-suite.
//!
//! Every subcommand prints what it states, so scripts can rely on it; machine-readable output
//! is JSON on standard output, progress and diagnostics go to standard error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod models;

/// Own your AI stack: run, chat with, serve, evaluate and benchmark models.
#[derive(Debug, Parser)]
#[command(name = "any", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    let result = match cli.command {
        Command::Models(cmd) => models::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
