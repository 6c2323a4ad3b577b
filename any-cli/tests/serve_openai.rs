//! Official Python clients drive the real `any` servers on the default model: the OpenAI
//! client `any serve`, the MCP SDK's client `any agent --serve-mcp`.
//!
//! The clients live in `.venv-test` at the workspace root, which `scripts/test` installs; a
//! missing one is a failure that says so, not a skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace root and the test venv's Python, which must be there.
fn python() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs the `openai` and `mcp` packages there",
        python.display()
    );
    (root, python)
}

/// Runs a client script of `tests/` and checks that it reported every case ok.
fn run_client(python: &Path, script: PathBuf, args: &[&str], cases: &[&str]) {
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display()
    );
    for case in cases {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("ok {case}"))),
            "case `{case}` did not report ok:\n{stdout}"
        );
    }
}

#[test]
fn the_official_mcp_client_lists_and_calls_the_agent_served_by_any_agent() {
    let (root, python) = python();
    run_client(
        &python,
        root.join("any-cli/tests/mcp_client.py"),
        &[env!("CARGO_BIN_EXE_any")],
        &[
            "initialize",
            "list tools",
            "call",
            "invalid arguments",
            "unknown tool",
        ],
    );
}

/// `any serve` on the default model with API key `key`, on a free port of loopback, and its
/// base URL.
fn serve(key: &str) -> (Serving, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_any"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--api-key",
            key,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("`any serve` starts");
    let stdout = child.stdout.take().expect("stdout");
    let server = Serving(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reads the first line");
    // "listening on http://127.0.0.1:PORT/v1 (model `local`)"
    let base_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in the first line: {line:?}"))
        .to_owned();
    (server, base_url)
}

#[test]
fn the_official_openai_client_drives_any_serve() {
    let (root, python) = python();
    let key = "test-key";
    let (mut server, base_url) = serve(key);

    run_client(
        &python,
        root.join("any-cli/tests/openai_client.py"),
        &[&base_url, key, "local"],
        &[
            "plain chat",
            "streaming chat",
            "tool calls",
            "streamed tool calls",
            "json schema",
            "embeddings",
            "models",
            "errors",
        ],
    );

    // SIGTERM (a service manager stopping it) shuts down gracefully: exit status 0.
    let pid = server.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            server.0.try_wait().expect("waits")
        })
        .expect("`any serve` exits within 20 s of SIGTERM");
    assert!(status.success(), "SIGTERM ended `any serve` with {status}");
}

/// A scoring judge reached through the OpenAI provider, over real HTTP on loopback, with
/// `any serve` behind it: the log-probabilities the local backend gives make it through the
/// server's wire format and the provider's, so every score is weighted by them.
#[test]
fn a_scoring_judge_reads_logprobs_through_the_openai_provider() {
    let key = "judge-key";
    let (_server, base_url) = serve(key);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("one.jsonl");
    std::fs::write(
        &data,
        "{\"input\": \"What is the capital of France? One word.\", \"expected\": \"Paris\"}\n",
    )
    .expect("writes");
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_any"))
        .args([
            "eval",
            data.to_str().expect("UTF-8"),
            "--judge",
            "openai:local",
            "--judge-scale",
            "1-5",
            "-n",
            "12",
            "--out",
            out.to_str().expect("UTF-8"),
        ])
        .env("OPENAI_BASE_URL", &base_url)
        .env("OPENAI_API_KEY", key)
        .output()
        .expect("`any eval` runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    let case = &report["services"][0]["cases"][0];
    let detail = &case["scores"]["judge"]["detail"];
    assert_eq!(detail["from"], "logprobs", "{case}");
    let value = case["scores"]["judge"]["value"].as_f64().expect("a value");
    assert!((0.0..=1.0).contains(&value), "{case}");
}
