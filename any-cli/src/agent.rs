//! `any agent`: one task, run by an agent over a model with tools from MCP servers.

use std::io::Write;
use std::path::PathBuf;

use any_agent::mcp::McpServer;
use any_agent::{Agent, AgentError, AgentTrace};
use any_core::{ChatRequest, ChatServiceExt, ToolChoice};
use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;

use crate::local::ModelArgs;

/// `any agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An MCP server to take tools from: a command line started with stdio, split at spaces
    /// (repeat for several servers), e.g. --mcp "mcp-server-time --local-timezone=UTC".
    #[arg(long = "mcp", value_name = "COMMAND")]
    mcp: Vec<String>,
    /// Instructions for the agent (its system message).
    #[arg(long, value_name = "TEXT")]
    instructions: Option<String>,
    /// The most model calls in the run.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_steps: u32,
    /// The most tokens per model call.
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 512
    )]
    max_tokens: u32,
    /// Make the first model call a tool call (small models seldom call a tool by themselves);
    /// later calls choose freely.
    #[arg(long)]
    require_tool: bool,
    /// Write the run's trace (every model and tool call) as JSON to FILE, also when the run
    /// fails.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// The task.
    task: String,
}

pub(crate) async fn run(args: AgentArgs) -> Result<()> {
    anyhow::ensure!(
        !args.task.trim().is_empty(),
        "the task is empty: pass what the agent should do, e.g. `any agent --mcp \"mcp-server-time\" \"What time is it in Tokyo?\"`"
    );
    let mut servers = Vec::new();
    let mut tools = Vec::new();
    for line in &args.mcp {
        let mut words = line.split_whitespace();
        let program = words
            .next()
            .with_context(|| "--mcp is empty: give the command that starts an MCP server")?;
        let mut command = tokio::process::Command::new(program);
        command.args(words);
        let server = McpServer::stdio(command)
            .await
            .with_context(|| format!("--mcp `{line}`"))?;
        tools.extend(
            server
                .tools()
                .await
                .with_context(|| format!("--mcp `{line}`"))?,
        );
        servers.push(server);
    }
    anyhow::ensure!(
        !args.require_tool || !tools.is_empty(),
        "--require-tool needs tools: name an MCP server with --mcp"
    );
    let (_, model) = args.model.chat_service()?;
    let mut builder = Agent::builder(model)
        .name("any")
        .tools_dyn(tools)
        .max_steps(args.max_steps);
    if let Some(instructions) = &args.instructions {
        builder = builder.instructions(instructions.clone());
    }
    let agent = builder.build()?;
    let mut request = ChatRequest::builder()
        .user(args.task.clone())
        .max_tokens(args.max_tokens)
        .temperature(0.0);
    if args.require_tool {
        request = request.tool_choice(ToolChoice::Required);
    }
    let result = answer(&agent, request.build()).await;
    if let Some(path) = &args.trace {
        let trace = match &result {
            Ok(trace) => Some(trace.clone()),
            Err(e) => e
                .downcast_ref::<any_core::Error>()
                .and_then(AgentError::find)
                .map(|e| e.trace().clone()),
        };
        if let Some(trace) = trace {
            std::fs::write(path, trace.to_json())
                .with_context(|| format!("--trace: cannot write {}", path.display()))?;
        }
    }
    drop(servers);
    result.map(drop)
}

/// Streams the agent's answer to standard output and returns the run's trace.
async fn answer<S>(agent: &Agent<S>, request: ChatRequest) -> Result<AgentTrace>
where
    S: any_core::ChatService,
{
    let mut stream = agent.stream(request).await?;
    let mut stdout = std::io::stdout().lock();
    let mut trace = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        stdout.write_all(chunk.text.as_bytes())?;
        stdout.flush()?;
        for call in &chunk.tool_calls {
            // Only tools the caller passed come back; `any agent` passes none.
            writeln!(
                stdout,
                "\n[tool call {}]",
                call.name.as_deref().unwrap_or("")
            )?;
        }
        if let Some(t) = chunk.extensions.get::<AgentTrace>() {
            trace = Some(t.clone());
        }
    }
    writeln!(stdout)?;
    Ok(trace.unwrap_or_default())
}
