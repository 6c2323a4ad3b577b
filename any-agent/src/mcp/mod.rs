//! The Model Context Protocol, both ways: tools from MCP servers for an agent (feature `mcp`),
//! and an agent's tools served to MCP clients (feature `mcp-server`, [`McpToolServer`]).
//!
//! [`McpServer`] starts a server as a child process speaking MCP over stdio, lists its tools,
//! and gives them to an agent.
//!
//! Each MCP tool becomes a [`DynTool`]: its name, description and input schema as the server
//! declares them; a call sends the arguments (already validated against that schema by the
//! agent's toolbox) and returns the result's text blocks joined by newlines. A result the
//! server marks as an error, and a failed request, become a [`ToolError`] the model reads.
//!
//! ```no_run
//! use any_agent::Agent;
//! use any_agent::mcp::McpServer;
//!
//! # async fn run(model: any_core::BoxChatService) -> any_core::Result<()> {
//! let mut command = tokio::process::Command::new("mcp-server-time");
//! command.arg("--local-timezone=UTC");
//! let server = McpServer::stdio(command).await?;
//! let agent = Agent::builder(model).tools_dyn(server.tools().await?).build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use any_core::{Error, Result, ToolSpec};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};

use crate::tool::{DynTool, ToolError, ToolFuture};

#[cfg(feature = "mcp-server")]
mod serve;
#[cfg(feature = "mcp-server")]
pub use serve::McpToolServer;

type Session = RunningService<RoleClient, ()>;

/// A running MCP server, connected over stdio or (feature `mcp-http`) streamable HTTP.
/// Dropping it (and every tool taken from it) ends the session, and a child process it
/// started.
#[derive(Clone)]
pub struct McpServer {
    session: Arc<Session>,
    name: String,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// Starts `command` and initialises an MCP session with it over its stdin and stdout
    /// (its stderr is inherited).
    ///
    /// # Errors
    /// [`Error::Io`] when the command cannot start; [`Error::Provider`] (provider `mcp`)
    /// when the process does not complete the MCP handshake.
    pub async fn stdio(command: tokio::process::Command) -> Result<Self> {
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let transport = TokioChildProcess::new(command)?;
        Self::connect(transport, program).await
    }

    /// Connects to the MCP server at `url` over the streamable HTTP transport (feature
    /// `mcp-http`), sending its requests with `client`.
    ///
    /// The client is any reqwest client; `any_llm::http::HttpClient::shared()` (crate
    /// `any-llm`, feature `http`) has one with TLS set up, and a plain `http://` URL needs
    /// none. Requests in flight when the server is dropped are abandoned, and the session is
    /// ended with the server.
    ///
    /// # Errors
    /// [`Error::Provider`] (provider `mcp`) when nothing at `url` completes the MCP
    /// handshake.
    #[cfg(feature = "mcp-http")]
    pub async fn http(url: &str, client: reqwest::Client) -> Result<Self> {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

        let config = StreamableHttpClientTransportConfig::with_uri(url);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        Self::connect(transport, url.to_owned()).await
    }

    async fn connect<T, E, A>(transport: T, label: String) -> Result<Self>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let session = ().serve(transport).await.map_err(|e| Error::Provider {
            provider: "mcp".into(),
            status: None,
            message: format!("`{label}` did not start an MCP session: {e}"),
        })?;
        let name = session
            .peer_info()
            .and_then(|info| info.server_info.as_ref().map(|s| s.name.clone()))
            .unwrap_or(label);
        Ok(McpServer {
            session: Arc::new(session),
            name,
        })
    }

    /// The server's name, as it introduced itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every tool the server offers, as tools an agent can call.
    ///
    /// # Errors
    /// [`Error::Provider`] (provider `mcp`) when listing fails.
    pub async fn tools(&self) -> Result<Vec<Arc<dyn DynTool>>> {
        let tools = self
            .session
            .list_all_tools()
            .await
            .map_err(|e| self.error(format!("listing tools failed: {e}")))?;
        Ok(tools
            .into_iter()
            .map(|t| {
                let spec = ToolSpec {
                    name: t.name.into_owned(),
                    description: t.description.map(|d| d.into_owned()),
                    parameters: serde_json::Value::Object((*t.input_schema).clone()),
                };
                Arc::new(McpTool {
                    session: self.session.clone(),
                    spec,
                }) as Arc<dyn DynTool>
            })
            .collect())
    }

    fn error(&self, message: String) -> Error {
        Error::Provider {
            provider: "mcp".into(),
            status: None,
            message: format!("MCP server `{}`: {message}", self.name),
        }
    }
}

/// One tool of an [`McpServer`].
struct McpTool {
    session: Arc<Session>,
    spec: ToolSpec,
}

impl DynTool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call_json(&self, arguments: serde_json::Value) -> ToolFuture<'_> {
        Box::pin(async move {
            let mut params = CallToolRequestParams::new(self.spec.name.clone());
            match arguments {
                serde_json::Value::Object(map) => params = params.with_arguments(map),
                serde_json::Value::Null => {}
                other => {
                    return Err(ToolError::InvalidArguments {
                        tool: self.spec.name.clone(),
                        message: format!("MCP tools take an object, found {other}"),
                    });
                }
            }
            let result = self
                .session
                .call_tool(params)
                .await
                .map_err(|e| ToolError::Failed(format!("the MCP request failed: {e}")))?;
            let mut text: Vec<&str> = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                .collect();
            let structured;
            if text.is_empty()
                && let Some(value) = &result.structured_content
            {
                structured = value.to_string();
                text.push(&structured);
            }
            let text = text.join("\n");
            if result.is_error == Some(true) {
                Err(ToolError::Failed(text))
            } else {
                Ok(text)
            }
        })
    }
}
