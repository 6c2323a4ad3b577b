//! Tools from a real MCP server: the reference "everything" server from the npm package
//! `@modelcontextprotocol/server-everything`, which `scripts/test` installs into
//! `.tools/mcp` (or name the executable in `ANY_TEST_MCP_EVERYTHING`), over stdio and (feature
//! `mcp-http`) over streamable HTTP on a free loopback port.
#![cfg(feature = "mcp")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use any_agent::mcp::McpServer;
use any_agent::{Agent, AgentTrace, DynTool, TraceStep};
use any_core::{
    ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason, Role, ToolCall,
    ToolCallDelta,
};

fn everything_server_path() -> PathBuf {
    let path = std::env::var_os("ANY_TEST_MCP_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/mcp/node_modules/.bin/mcp-server-everything")
        });
    assert!(
        path.exists(),
        "the MCP test server is missing at {}: run scripts/test, which installs the npm package \
         @modelcontextprotocol/server-everything into .tools/mcp, or set ANY_TEST_MCP_EVERYTHING",
        path.display()
    );
    path
}

fn everything_server() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(everything_server_path());
    command.arg("stdio");
    command.stderr(std::process::Stdio::null());
    command
}

async fn tools() -> (McpServer, Vec<Arc<dyn DynTool>>) {
    let server = tokio::time::timeout(
        Duration::from_secs(30),
        McpServer::stdio(everything_server()),
    )
    .await
    .expect("the server starts within 30 s")
    .unwrap();
    let tools = server.tools().await.unwrap();
    (server, tools)
}

#[tokio::test]
async fn an_mcp_servers_tools_are_listed_validated_and_called() {
    let (server, tools) = tools().await;
    assert!(server.name().contains("everything"), "{}", server.name());
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    assert!(names.iter().any(|n| n == "echo"), "{names:?}");
    let sum = tools
        .iter()
        .find(|t| t.spec().name == "get-sum")
        .expect("get-sum");
    assert!(sum.spec().parameters["properties"]["a"].is_object());

    let toolbox = tools
        .into_iter()
        .try_fold(any_agent::Toolbox::new(), |b, t| {
            b.with_dyn(t, Duration::from_secs(10))
        });
    let toolbox = toolbox.unwrap();
    let call = |args: &str| ToolCall::new("1", "get-sum", args);
    assert_eq!(
        toolbox.call(&call(r#"{"a": 2, "b": 3}"#)).await.unwrap(),
        "The sum of 2 and 3 is 5."
    );
    // Checked against the server's own schema before anything is sent.
    let err = toolbox
        .call(&call(r#"{"a": "two", "b": 3}"#))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid arguments for tool `get-sum`"),
        "{err}"
    );
}

#[tokio::test]
async fn an_agent_calls_an_mcp_tool_and_answers_with_its_result() {
    let (_server, tools) = tools().await;
    // A stand-in model: calls `echo` first, then repeats what the tool said.
    let model = tower::service_fn(|req: ChatRequest| async move {
        let last = req.messages.last().unwrap();
        let chunks = if last.role == Role::Tool {
            vec![ChatChunk::text(format!("The server said: {}", last.text()))]
        } else {
            let call = ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("echo".into()),
                arguments: r#"{"message": "hello"}"#.into(),
            };
            vec![
                ChatChunk {
                    tool_calls: vec![call],
                    ..Default::default()
                },
                ChatChunk::finish(FinishReason::ToolCalls, None),
            ]
        };
        Ok::<_, Error>(ChatStream::from_chunks(chunks))
    });
    let agent = Agent::builder(model).tools_dyn(tools).build().unwrap();
    let answer = agent.chat("Echo hello").await.unwrap();
    assert_eq!(answer.text(), "The server said: Echo: hello");
    let trace = answer.extensions.get::<AgentTrace>().unwrap();
    assert!(matches!(
        trace.tool_calls().next(),
        Some(TraceStep::Tool { name, error: false, .. }) if name == "echo"
    ));
}

#[cfg(feature = "mcp-http")]
#[tokio::test]
async fn an_mcp_server_over_streamable_http_is_listed_and_called() {
    use tokio::io::AsyncBufReadExt;

    // A free loopback port: taken from the OS, then handed to the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(everything_server_path())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("listening on port") {
                return Ok(());
            }
            if line.contains("Failed") || line.contains("error") {
                return Err(line);
            }
        }
        Err("the server exited".to_owned())
    })
    .await
    .expect("the server listens within 30 s");
    listening.unwrap();
    // The rest of its log is not read: keep the pipe drained so it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    // Plain HTTP needs no TLS, but a reqwest client is built with a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let server = tokio::time::timeout(
        Duration::from_secs(30),
        McpServer::http(&url, reqwest::Client::new()),
    )
    .await
    .expect("the session starts within 30 s")
    .unwrap();
    assert!(server.name().contains("everything"), "{}", server.name());
    let tools = server.tools().await.unwrap();
    let sum = tools
        .iter()
        .find(|t| t.spec().name == "get-sum")
        .expect("get-sum");
    let toolbox = any_agent::Toolbox::new()
        .with_dyn(sum.clone(), Duration::from_secs(10))
        .unwrap();
    let call = |args: &str| ToolCall::new("1", "get-sum", args);
    assert_eq!(
        toolbox.call(&call(r#"{"a": 20, "b": 22}"#)).await.unwrap(),
        "The sum of 20 and 22 is 42."
    );
    let err = toolbox.call(&call(r#"{"a": 1}"#)).await.unwrap_err();
    assert!(err.to_string().contains("invalid arguments"), "{err}");

    // Nothing listening: a clear error, not a hang.
    drop(server);
    drop(tools);
    child.kill().await.unwrap();
    let gone = tokio::time::timeout(
        Duration::from_secs(30),
        McpServer::http(&url, reqwest::Client::new()),
    )
    .await
    .expect("fails within 30 s")
    .unwrap_err();
    assert!(
        gone.to_string().contains("did not start an MCP session"),
        "{gone}"
    );
}

/// Our tools served with `McpToolServer`, called by rmcp's client over an in-memory pipe:
/// typed schemas listed, calls validated, failures, time-outs and panics as error results.
#[cfg(feature = "mcp-server")]
#[tokio::test]
async fn a_toolbox_served_over_mcp_is_listed_and_called() {
    use any_agent::mcp::McpToolServer;
    use any_agent::{ToolError, Toolbox, tool_fn};
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;

    /// Arguments of `add`.
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Add {
        /// The first number.
        a: i64,
        /// The second number.
        b: i64,
    }
    let tools = Toolbox::new()
        .with(tool_fn("add", "Adds a and b.", |x: Add| async move {
            Ok::<_, ToolError>(x.a + x.b)
        }))
        .unwrap()
        .with(tool_fn("fail", "Always fails.", |_: Add| async move {
            Err::<i64, _>(ToolError::failed("out of order"))
        }))
        .unwrap()
        .with(tool_fn("boom", "Panics.", |_: Add| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<i64, ToolError>(0)
        }))
        .unwrap()
        .with_timeout(
            tool_fn("slow", "Takes too long.", |_: Add| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<i64, ToolError>(0)
            }),
            Duration::from_millis(50),
        )
        .unwrap();
    let (server_end, client_end) = tokio::io::duplex(1 << 16);
    let (server_read, server_write) = tokio::io::split(server_end);
    let serving = tokio::spawn(
        McpToolServer::new(tools)
            .name("ours")
            .instructions("Arithmetic.")
            .serve(server_read, server_write),
    );
    let client = ().serve(tokio::io::split(client_end)).await.unwrap();
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "ours");
    assert_eq!(info.instructions.as_deref(), Some("Arithmetic."));

    let listed = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["add", "fail", "boom", "slow"]);
    let schema = &listed[0].input_schema;
    assert_eq!(schema["properties"]["a"]["type"], "integer", "{schema:?}");
    assert_eq!(listed[0].description.as_deref(), Some("Adds a and b."));

    let call = |name: &str, args: serde_json::Value| {
        let serde_json::Value::Object(map) = args else {
            unreachable!()
        };
        CallToolRequestParams::new(name.to_owned()).with_arguments(map)
    };
    let text = |r: &rmcp::model::CallToolResult| {
        r.content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<String>()
    };
    let ok = client
        .call_tool(call("add", serde_json::json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!((text(&ok).as_str(), ok.is_error), ("42", Some(false)));
    for (name, args, expected) in [
        (
            "add",
            serde_json::json!({"a": "two", "b": 1}),
            "invalid arguments for tool `add`",
        ),
        ("fail", serde_json::json!({"a": 1, "b": 1}), "out of order"),
        ("boom", serde_json::json!({"a": 1, "b": 1}), "kaboom"),
        ("slow", serde_json::json!({"a": 1, "b": 1}), "slow"),
    ] {
        let result = client.call_tool(call(name, args)).await.unwrap();
        assert_eq!(result.is_error, Some(true), "{name}: {result:?}");
        assert!(
            text(&result).contains(expected),
            "{name}: {}",
            text(&result)
        );
    }
    let unknown = client
        .call_tool(call("nope", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("nope"), "{unknown}");

    // The server ends when the client closes the session.
    client.cancel().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server ends")
        .unwrap()
        .unwrap();
}
