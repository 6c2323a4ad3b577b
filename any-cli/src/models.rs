//! `any models`: the default model and the model cache.

use any_llm::local::fetch;
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
    /// List the GGUF files in the cache as JSON lines: `{"name", "path", "bytes"}` (what
    /// `any models` alone does).
    #[default]
    List,
}

pub(crate) fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Pull | ModelsCommand::Path => {
            println!("{}", fetch::default_model_path()?.display());
        }
        ModelsCommand::List => {
            let dir = fetch::cache_dir()?;
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(());
            };
            let mut files: Vec<_> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
                .collect();
            files.sort();
            for path in files {
                let bytes = std::fs::metadata(&path)?.len();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                println!(
                    "{}",
                    serde_json::json!({"name": name, "path": path, "bytes": bytes})
                );
            }
        }
    }
    Ok(())
}
