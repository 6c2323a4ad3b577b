//! `any models`: the default model and the model cache.

use std::path::PathBuf;

use any_llm::local::{cache, fetch};
use anyhow::Result;
use clap::{Args, Subcommand};

/// `any models`.
#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    /// What to do; without one, `list`.
    #[command(subcommand)]
    pub(crate) command: Option<ModelsCommand>,
}

#[derive(Debug, Default, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Download the default model (SmolLM2-135M-Instruct, Q4_1) into the cache if it is not
    /// there, check its sha256, and print its path.
    Pull,
    /// Print the path of the model used when none is named (`ANY_MODEL`, else the default
    /// model, fetched if needed).
    Path,
    /// List the cached models as JSON lines: name (what `--model`, `ANY_MODEL` and
    /// `local:NAME` take), path, bytes, architecture, quantization, context length and
    /// parameters (what `any models` alone does).
    #[default]
    List,
    /// Copy a GGUF file into the cache (checked to read as GGUF first); print it as `list`
    /// does. Its name is its file name without `.gguf`.
    Add {
        /// The GGUF file.
        path: PathBuf,
    },
    /// Delete a cached model by name; print its path.
    Rm {
        /// The name `any models list` shows.
        name: String,
    },
}

fn json(m: &cache::CachedModel) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": m.name,
        "path": m.path,
        "bytes": m.bytes,
        "architecture": m.architecture,
        "quantization": m.quantization,
        "context_length": m.context_length,
        "parameters": m.parameters,
    });
    if let Some(problem) = &m.problem {
        v["problem"] = problem.as_str().into();
    }
    v
}

pub(crate) fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Pull | ModelsCommand::Path => {
            println!("{}", fetch::default_model_path()?.display());
        }
        ModelsCommand::List => {
            for model in cache::list()? {
                println!("{}", json(&model));
            }
        }
        ModelsCommand::Add { path } => println!("{}", json(&cache::add_file(&path)?)),
        ModelsCommand::Rm { name } => println!("{}", cache::remove(&name)?.display()),
    }
    Ok(())
}
