//! [`McpToolServer`]: a [`Toolbox`] served to MCP clients.

use std::sync::Arc;

use any_core::{Error, Result, ToolCall};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{ToolError, Toolbox};

/// The tools of a [`Toolbox`] offered to MCP clients (feature `mcp-server`): a client lists
/// them with their derived schemas and calls them as it would any MCP server's tools.
///
/// Every call goes through [`Toolbox::call`], so the arguments are validated against the
/// tool's schema and the tool's time limit holds; a violation, a failure, a timeout or a
/// panic comes back as a tool result marked as an error, whose text says what went wrong
/// (the client's model can read it and correct the call). An unknown tool is a protocol error
/// (`invalid params`) naming the tools there are. A call the client cancels is dropped.
///
/// An [`Agent`](crate::Agent) is served by serving the toolbox of its
/// [`into_tool`](crate::Agent::into_tool).
///
/// ```no_run
/// use any_agent::mcp::McpToolServer;
/// use any_agent::{ToolError, Toolbox, tool_fn};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Arguments of `double`.
/// #[derive(Deserialize, JsonSchema)]
/// struct N {
///     /// The number.
///     n: i64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// let tools = Toolbox::new()
///     .with(tool_fn("double", "Doubles n.", |a: N| async move { Ok::<_, ToolError>(a.n * 2) }))?;
/// // Serves until the client closes standard input.
/// McpToolServer::new(tools).name("doubler").serve_stdio().await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct McpToolServer {
    toolbox: Toolbox,
    name: String,
    version: String,
    instructions: Option<String>,
}

impl McpToolServer {
    /// Serves `toolbox`, introducing itself as `any-agent` at this crate's version.
    pub fn new(toolbox: Toolbox) -> Self {
        McpToolServer {
            toolbox,
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            instructions: None,
        }
    }

    /// The name the server gives clients when they connect.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The version the server gives clients when they connect.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Instructions for the client on using these tools, sent when it connects.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// The tools served.
    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// Serves one client over this process's standard input and output, until the client
    /// closes them.
    ///
    /// # Errors
    /// As [`McpToolServer::serve`].
    pub async fn serve_stdio(self) -> Result<()> {
        let (reader, writer) = rmcp::transport::io::stdio_pipes();
        self.serve(reader, writer).await
    }

    /// Serves one client over a byte stream pair (newline-delimited JSON-RPC, as MCP's
    /// stdio transport), until the client closes it.
    ///
    /// # Errors
    /// [`Error::Provider`] (provider `mcp`) when the client does not complete the MCP
    /// handshake or the session ends abnormally.
    pub async fn serve<R, W>(self, reader: R, writer: W) -> Result<()>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let running = Handler(Arc::new(self))
            .serve((reader, writer))
            .await
            .map_err(|e| mcp_error(format!("the client did not start an MCP session: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| mcp_error(format!("the MCP session ended abnormally: {e}")))?;
        Ok(())
    }
}

fn mcp_error(message: String) -> Error {
    Error::Provider {
        provider: "mcp".into(),
        status: None,
        message,
    }
}

/// The rmcp handler: clones share one server.
#[derive(Clone)]
struct Handler(Arc<McpToolServer>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let server = &self.0;
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(&server.name, &server.version));
        if let Some(instructions) = &server.instructions {
            info = info.with_instructions(instructions.clone());
        }
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        let tools = self
            .0
            .toolbox
            .specs()
            .into_iter()
            .map(|spec| {
                let schema = match spec.parameters {
                    serde_json::Value::Object(map) => map,
                    // Toolbox schemas are objects; anything else offers no arguments.
                    _ => serde_json::Map::from_iter([("type".to_owned(), "object".into())]),
                };
                McpTool::new_with_raw(spec.name, spec.description.map(Into::into), schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let name = request.name.into_owned();
        let arguments = request
            .arguments
            .map(|a| serde_json::Value::Object(a).to_string())
            .unwrap_or_default();
        let call = ToolCall::new(context.id.to_string(), name, arguments);
        let result = tokio::select! {
            result = self.0.toolbox.call(&call) => result,
            () = context.ct.cancelled() => {
                return Err(ErrorData::internal_error("the client cancelled the call", None));
            }
        };
        match result {
            Ok(text) => Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into()),
            Err(e @ ToolError::UnknownTool { .. }) => {
                Err(ErrorData::invalid_params(e.to_string(), None))
            }
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }
}
