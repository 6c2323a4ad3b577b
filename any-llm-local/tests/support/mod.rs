//! Helpers shared by the integration tests that run the real default model.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::OnceLock;

use any_llm_local::{LocalModel, LocalModelOptions};

/// The default model's file: `ANY_MODEL`, else the cache (`$ANY_HOME`, default
/// `~/.cache/any-suite/models`). CI fetches it before the tests run, so a missing file is a
/// failure with the fix in its message, not a skip.
pub fn default_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ANY_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("ANY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let h = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(h).join(".cache/any-suite/models")
        });
    let path = home.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "the default model is not at {}: run `cargo run -p any-cli -- models pull` (or .ci/run) first",
        path.display()
    );
    path
}

/// The reference data from llama.cpp kept with the tests (`tests/data/reference/`, with its
/// provenance in the README there).
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference")
}

/// The default model, opened once per test binary with two threads and shared by its tests.
pub fn shared_model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(open_model)
}

/// A model of its own (a KV cache no other test touches), two threads.
pub fn open_model() -> LocalModel {
    let options = LocalModelOptions {
        threads: Some(2),
        ..Default::default()
    };
    LocalModel::open_with(default_model_path(), options).expect("the default model opens")
}

/// A JSON array of token ids, as the reference files hold them.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("an array of token ids")
}
