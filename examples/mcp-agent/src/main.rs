//! Run with `cargo run --release -p example-mcp-agent` (optionally `-- 127.0.0.1:9000`)
//!
//! An agent whose tools come from an MCP server, guarded, and served as OpenAI-compatible
//! HTTP, on the local default model: no key, no network after the first run (which downloads
//! the model once).
//!
//! The MCP server is this same program started as a child process with `--tools-server`: it
//! serves two typed tools over stdio with `McpToolServer`, and the agent takes them with
//! `McpServer::stdio`, as it would take any MCP server's. Guardrails sit in front of the
//! agent (a prompt injection is refused with a 400 naming the guardrail, personal data is
//! redacted before the model sees it) and behind it (secrets are redacted from the answer).
//! Ctrl-C stops it after the requests in flight finish.
//!
//! Try it with:
//!
//! ```text
//! curl -s http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model": "mcp-agent", "max_tokens": 64, "temperature": 0,
//!        "messages": [{"role": "user", "content": "What is 100 kilometres in miles?"}]}'
//! ```

use any_agent::mcp::{McpServer, McpToolServer};
use any_agent::{Agent, ToolError, Toolbox, tool_fn};
use any_core::ToolChoice;
use any_guard::{Guards, Pii, PromptInjection, Secrets, ServiceBuilderExt};
use any_llm::server::Server;
use schemars::JsonSchema;
use serde::Deserialize;
use tower::ServiceBuilder;

/// Arguments of `km_to_miles`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Kilometres {
    /// A distance in kilometres.
    km: f64,
}

/// Arguments of `population`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct City {
    /// A city's name.
    city: String,
}

// ANCHOR: tools_server
/// The MCP side: typed tools served over standard input and output.
async fn tools_server() -> any_core::Result<()> {
    let tools = Toolbox::new()
        .with(tool_fn(
            "km_to_miles",
            "Converts a distance from kilometres to miles.",
            |a: Kilometres| async move { Ok::<_, ToolError>(a.km / 1.609_344) },
        ))?
        .with(tool_fn(
            "population",
            "The population of a city (Paris, Tokyo or Lagos).",
            |a: City| async move {
                match a.city.to_lowercase().as_str() {
                    "paris" => Ok(2_102_650),
                    "tokyo" => Ok(14_094_034),
                    "lagos" => Ok(15_388_000),
                    _ => Err(ToolError::failed(format!("no population for {}", a.city))),
                }
            },
        ))?;
    McpToolServer::new(tools)
        .name("city-facts")
        .serve_stdio()
        .await
}
// ANCHOR_END: tools_server

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--tools-server") {
        return Ok(tools_server().await?);
    }
    let addr = arg.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let model = any_llm::local::default_model().await?;
    // ANCHOR: serve
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.arg("--tools-server");
    let mcp = McpServer::stdio(command).await?;
    let agent = Agent::builder(model)
        .name("mcp-agent")
        .instructions("Use a tool, then answer with its result in one sentence.")
        .tools_dyn(mcp.tools().await?)
        // A 135M model seldom calls a tool by itself: its first turn must.
        .first_tool_choice(ToolChoice::Required)
        .max_steps(3)
        .build()?;
    let guarded = ServiceBuilder::new()
        .guard_input(
            Guards::new()
                .block(PromptInjection::default())
                .redact(Pii::default()),
        )
        .guard_output(Guards::new().redact(Secrets::default()))
        .service(agent);
    let server = Server::builder()
        .chat(guarded)
        .models(["mcp-agent"])
        .max_concurrency(4)
        .build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving the agent with the tools of MCP server `{}` on http://{}/v1",
        mcp.name(),
        listener.local_addr()?
    );
    server
        .serve(listener, async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    // ANCHOR_END: serve
    Ok(())
}
