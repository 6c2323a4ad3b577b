//! `any agent`: one task, run by an agent over a model with tools from MCP servers; or, with
//! `--serve-mcp`, that agent served to an MCP client over stdio as a tool.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use any_agent::mcp::{McpServer, McpToolServer};
use any_agent::{Agent, AgentError, AgentTrace, DynTool, Flow, Hook, Toolbox};
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
    /// An MCP server to take tools from over streamable HTTP, by its URL (repeat for several),
    /// e.g. --mcp-http http://127.0.0.1:3001/mcp.
    #[arg(long = "mcp-http", value_name = "URL")]
    mcp_http: Vec<String>,
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
    /// Instead of running a task, serve the agent to one MCP client over standard input and
    /// output, as a tool (named after --name) that takes a task and answers it; this
    /// command's flags apply to every run.
    #[arg(long, conflicts_with_all = ["task", "trace"])]
    serve_mcp: bool,
    /// The agent's name: its tool's name under --serve-mcp.
    #[arg(long, value_name = "NAME", default_value = "any")]
    name: String,
    /// The task.
    #[arg(required_unless_present = "serve_mcp")]
    task: Option<String>,
}

pub(crate) async fn run(args: AgentArgs) -> Result<()> {
    let task = args.task.clone().unwrap_or_default();
    anyhow::ensure!(
        args.serve_mcp || !task.trim().is_empty(),
        "the task is empty: pass what the agent should do, e.g. `any agent --mcp \"mcp-server-time\" \"What time is it in Tokyo?\"`"
    );
    let (servers, tools) = connect(&args).await?;
    anyhow::ensure!(
        !args.require_tool || !tools.is_empty(),
        "--require-tool needs tools: name an MCP server with --mcp or --mcp-http"
    );
    let (_, model) = args.model.chat_service()?;
    let mut builder = Agent::builder(model)
        .name(args.name.clone())
        .tools_dyn(tools)
        .max_steps(args.max_steps);
    if let Some(instructions) = &args.instructions {
        builder = builder.instructions(instructions.clone());
    }
    if args.serve_mcp {
        builder = builder.hook(Sampling {
            max_tokens: args.max_tokens,
        });
        if args.require_tool {
            builder = builder.first_tool_choice(ToolChoice::Required);
        }
        let agent = builder.build()?;
        let description = args.instructions.clone().unwrap_or_else(|| {
            "An agent that carries out a task given in words, and answers with the result."
                .to_owned()
        });
        let tools = Toolbox::new().with(agent.into_tool(args.name.clone(), description))?;
        eprintln!(
            "serving the agent as the MCP tool `{}` on standard input and output",
            args.name
        );
        McpToolServer::new(tools)
            .name(args.name)
            .version(env!("CARGO_PKG_VERSION"))
            .serve_stdio()
            .await?;
        drop(servers);
        return Ok(());
    }
    let agent = builder.build()?;
    let mut request = ChatRequest::builder()
        .user(task)
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

/// Connects to the MCP servers of --mcp and --mcp-http, and takes all their tools.
async fn connect(args: &AgentArgs) -> Result<(Vec<McpServer>, Vec<Arc<dyn DynTool>>)> {
    let mut servers = Vec::new();
    let mut tools = Vec::new();
    let stdio = args.mcp.iter().map(|line| (true, line));
    for (is_stdio, target) in stdio.chain(args.mcp_http.iter().map(|url| (false, url))) {
        let flag = if is_stdio { "--mcp" } else { "--mcp-http" };
        let server = if is_stdio {
            let mut words = target.split_whitespace();
            let program = words
                .next()
                .with_context(|| "--mcp is empty: give the command that starts an MCP server")?;
            let mut command = tokio::process::Command::new(program);
            command.args(words);
            McpServer::stdio(command).await
        } else {
            let client = any_llm::http::HttpClient::shared()?.reqwest().clone();
            McpServer::http(target, client).await
        };
        let server = server.with_context(|| format!("{flag} `{target}`"))?;
        let listed = server.tools().await;
        tools.extend(listed.with_context(|| format!("{flag} `{target}`"))?);
        servers.push(server);
    }
    Ok((servers, tools))
}

/// What a task's request says in a run from the command line, for runs whose requests come
/// from an MCP client: the token limit per model call, and greedy sampling.
struct Sampling {
    max_tokens: u32,
}

impl Hook for Sampling {
    fn before_model(&self, request: &mut ChatRequest) -> Flow {
        request.sampling.max_tokens.get_or_insert(self.max_tokens);
        request.sampling.temperature.get_or_insert(0.0);
        Flow::Continue
    }
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
