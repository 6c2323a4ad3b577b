//! [`Agent`]: the loop of model calls and tool calls, itself a chat service.

mod run;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use any_core::schema::Schema;
use any_core::{
    ChatFuture, ChatRequest, ChatService, ChatStream, Error, Message, Result, ToolChoice,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower::{Service, ServiceExt};

use crate::tool::{DynTool, Tool, ToolError};
use crate::toolbox::DEFAULT_TOOL_TIMEOUT;
use crate::{Hook, Toolbox};

/// When a run gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most model calls in one run (default 10).
    pub max_steps: u32,
    /// The most tokens (prompt and completion, all model calls together), if limited.
    pub max_tokens: Option<u32>,
    /// The longest a run may take, if limited.
    pub max_duration: Option<Duration>,
    /// The most turns of tool calls, if limited: after that many, the next model call
    /// answers without tools (`tool_choice` none). Small models that keep calling tools
    /// answer with `Some(1)` or `Some(2)`.
    pub max_tool_rounds: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 10,
            max_tokens: None,
            max_duration: None,
            max_tool_rounds: None,
        }
    }
}

pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) instructions: Option<String>,
    pub(crate) tools: Toolbox,
    pub(crate) limits: Limits,
    pub(crate) tool_concurrency: usize,
    pub(crate) hooks: Vec<Arc<dyn Hook>>,
    pub(crate) answer_on_repeat: bool,
    pub(crate) first_tool_choice: Option<ToolChoice>,
}

/// An agent: a model, instructions and tools, run as a loop — the model answers or asks for
/// tool calls; the calls run (concurrently, bounded) and their results go back to the model;
/// until a final answer or a [limit](Limits).
///
/// An agent is itself a [`ChatService`]: it takes the caller's conversation and streams the
/// final answer, so it can be guarded, given memory, evaluated, served, and used as another
/// agent's tool ([`Agent::into_tool`]). The run's [`AgentTrace`](crate::AgentTrace) travels
/// in the response's extensions.
///
/// What the caller sends passes to every model call: its sampling, response format and
/// extensions; its `tool_choice` applies to the first call only (later calls choose freely,
/// or the loop could never end; after a turn that repeats an earlier call, the next call
/// answers without tools — see [`AgentBuilder::answer_on_repeat`]). Tools in the caller's request are the caller's to run: a
/// turn that calls one of them ends the run and is handed back as tool calls
/// (`finish_reason` `tool_calls`), as a model would.
///
/// Text the model writes in a turn is streamed as it comes, until the turn's first tool
/// call; so the stream carries the final answer, and any words the model says before
/// calling tools.
///
/// Dropping the stream cancels the run: the model call in flight and the tool calls running.
///
/// ```
/// use any_agent::{Agent, ToolError, tool_fn};
/// use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason, Role, ToolCallDelta};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Arguments of `add`.
/// #[derive(Deserialize, JsonSchema)]
/// struct Add {
///     /// First term.
///     a: i64,
///     /// Second term.
///     b: i64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// // A stand-in model: calls `add` first, then answers with the tool's result.
/// let model = tower::service_fn(|req: ChatRequest| async move {
///     let last = req.messages.last().unwrap();
///     let chunks = if last.role == Role::Tool {
///         vec![ChatChunk::text(format!("The sum is {}.", last.text()))]
///     } else {
///         let call = ToolCallDelta { index: 0, id: Some("c1".into()), name: Some("add".into()),
///                                    arguments: r#"{"a": 2, "b": 40}"#.into() };
///         vec![ChatChunk { tool_calls: vec![call], ..Default::default() },
///              ChatChunk::finish(FinishReason::ToolCalls, None)]
///     };
///     Ok::<_, Error>(ChatStream::from_chunks(chunks))
/// });
/// let agent = Agent::builder(model)
///     .instructions("Use the tools for arithmetic.")
///     .tool(tool_fn("add", "Adds a and b.", |x: Add| async move { Ok::<_, ToolError>(x.a + x.b) }))
///     .build()?;
/// let answer = agent.chat("What is 2 + 40?").await?;
/// assert_eq!(answer.text(), "The sum is 42.");
/// let trace = answer.extensions.get::<any_agent::AgentTrace>().unwrap();
/// assert_eq!(trace.model_calls(), 2);
/// # Ok(())
/// # }
/// ```
pub struct Agent<S> {
    model: S,
    config: Arc<Config>,
}

impl<S: Clone> Clone for Agent<S> {
    fn clone(&self) -> Self {
        Agent {
            model: self.model.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Agent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.config.name)
            .field("tools", &self.config.tools)
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl<S> Agent<S> {
    /// Starts building an agent over `model`.
    pub fn builder(model: S) -> AgentBuilder<S> {
        AgentBuilder {
            model,
            name: "agent".into(),
            instructions: None,
            tools: Ok(Toolbox::new()),
            limits: Limits::default(),
            tool_concurrency: 4,
            hooks: Vec::new(),
            answer_on_repeat: true,
            first_tool_choice: None,
        }
    }

    /// The agent's name (in traces and spans).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The agent's tools.
    pub fn tools(&self) -> &Toolbox {
        &self.config.tools
    }

    /// The model.
    pub fn get_ref(&self) -> &S {
        &self.model
    }

    /// The model, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.model
    }

    /// The model, giving up the agent.
    pub fn into_inner(self) -> S {
        self.model
    }
}

impl<S: ChatService> Agent<S> {
    /// Runs the agent and returns its final answer as `T`, checked against `T`'s JSON Schema.
    ///
    /// Every model call is asked for `T`'s schema as its response format. An answer that
    /// does not parse or match is shown to the model with the violations, once; a second
    /// miss is the error.
    ///
    /// # Errors
    /// The run's errors; [`Error::SchemaViolation`] or [`Error::InvalidResponse`] when the
    /// second answer still does not match.
    pub async fn run_typed<T>(&self, request: impl Into<ChatRequest>) -> Result<T>
    where
        T: DeserializeOwned + JsonSchema,
    {
        let schema = Schema::for_type::<T>()?;
        let mut request = request.into();
        request.response_format = schema.response_format();
        let first = self.clone().oneshot(request.clone()).await?;
        let first = first.collect_response().await?;
        let violation = match schema.parse_as::<T>(first.text()) {
            Ok(value) => return Ok(value),
            Err(e @ (Error::SchemaViolation { .. } | Error::InvalidResponse(_))) => e,
            Err(other) => return Err(other),
        };
        request
            .messages
            .push(Message::assistant(first.text().to_owned()));
        request.messages.push(Message::user(format!(
            "That answer is not what was asked for: {violation}. Answer again with JSON that \
             matches the schema, and nothing else."
        )));
        let second = self.clone().oneshot(request).await?;
        schema.parse_as(second.collect_response().await?.text())
    }
}

impl<S: ChatService + Sync> Agent<S> {
    /// This agent as a tool another agent can call with a task in words; the tool's output
    /// is this agent's final answer.
    pub fn into_tool(
        self,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> AgentTool<S> {
        AgentTool {
            agent: self,
            name: name.into(),
            description: description.into(),
        }
    }
}

impl<S: ChatService> Service<ChatRequest> for Agent<S> {
    type Response = ChatStream;
    type Error = Error;
    type Future = ChatFuture;

    /// Always ready: each run clones the model and waits for it to be ready before each call,
    /// so backpressure from the model shows as a slower run, not here.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> ChatFuture {
        let model = self.model.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let prepared = run::prepare(&config, request)?;
            Ok(run::stream(model, config, prepared))
        })
    }
}

/// Builds an [`Agent`]; see [`Agent::builder`].
#[must_use = "a builder does nothing until .build() is called"]
pub struct AgentBuilder<S> {
    model: S,
    name: String,
    instructions: Option<String>,
    tools: Result<Toolbox>,
    limits: Limits,
    tool_concurrency: usize,
    hooks: Vec<Arc<dyn Hook>>,
    answer_on_repeat: bool,
    first_tool_choice: Option<ToolChoice>,
}

impl<S> std::fmt::Debug for AgentBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<S> AgentBuilder<S> {
    /// Names the agent (default `"agent"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The instructions, given to the model as the system message (before the caller's own
    /// system message, if it sends one).
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool, with the default time limit (60 s).
    pub fn tool<T: Tool>(self, tool: T) -> Self {
        self.tool_dyn(Arc::new(tool), DEFAULT_TOOL_TIMEOUT)
    }

    /// Adds a tool that may run for at most `timeout`.
    pub fn tool_with_timeout<T: Tool>(self, tool: T, timeout: Duration) -> Self {
        self.tool_dyn(Arc::new(tool), timeout)
    }

    /// Adds a type-erased tool.
    pub fn tool_dyn(mut self, tool: Arc<dyn DynTool>, timeout: Duration) -> Self {
        self.tools = self.tools.and_then(|t| t.with_dyn(tool, timeout));
        self
    }

    /// Adds type-erased tools (an MCP server's, say) with the default time limit.
    pub fn tools_dyn(mut self, tools: impl IntoIterator<Item = Arc<dyn DynTool>>) -> Self {
        for tool in tools {
            self = self.tool_dyn(tool, DEFAULT_TOOL_TIMEOUT);
        }
        self
    }

    /// Replaces the tools with these.
    pub fn tools(mut self, tools: Toolbox) -> Self {
        self.tools = Ok(tools);
        self
    }

    /// Sets all limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The most model calls in one run.
    pub fn max_steps(mut self, steps: u32) -> Self {
        self.limits.max_steps = steps;
        self
    }

    /// The most tokens all model calls of a run may use together.
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.limits.max_tokens = Some(tokens);
        self
    }

    /// The longest a run may take.
    pub fn max_duration(mut self, duration: Duration) -> Self {
        self.limits.max_duration = Some(duration);
        self
    }

    /// The most turns of tool calls; after that many the model answers without tools.
    pub fn max_tool_rounds(mut self, rounds: u32) -> Self {
        self.limits.max_tool_rounds = Some(rounds);
        self
    }

    /// How many tool calls of one turn run at once (default 4).
    pub fn tool_concurrency(mut self, n: usize) -> Self {
        self.tool_concurrency = n;
        self
    }

    /// Whether a turn that repeats a call already made in the run (same tool, same
    /// arguments) makes the next model call answer without tools (`tool_choice` none).
    /// On by default: small models copy their last turn and would call the same tool until
    /// the step limit.
    pub fn answer_on_repeat(mut self, on: bool) -> Self {
        self.answer_on_repeat = on;
        self
    }

    /// The `tool_choice` of a run's first model call when the caller's request sets none —
    /// [`ToolChoice::Required`] makes a small model's first turn a tool call even for
    /// callers that cannot ask for one (an HTTP client of a served agent sends no tools, and
    /// a request may not require a tool it does not carry). Later calls choose freely.
    pub fn first_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.first_tool_choice = Some(choice);
        self
    }

    /// Adds a hook; hooks run in the order added.
    pub fn hook(mut self, hook: impl Hook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// The agent.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for two tools of one name, a tool name or schema that is not
    /// valid, a step limit or tool concurrency of 0.
    pub fn build(self) -> Result<Agent<S>> {
        let tools = self.tools?;
        if self.limits.max_steps == 0 {
            return Err(Error::InvalidRequest(
                "max_steps must be at least 1, found 0".into(),
            ));
        }
        if self.tool_concurrency == 0 {
            return Err(Error::InvalidRequest(
                "tool_concurrency must be at least 1, found 0".into(),
            ));
        }
        Ok(Agent {
            model: self.model,
            config: Arc::new(Config {
                name: self.name,
                instructions: self.instructions,
                tools,
                limits: self.limits,
                tool_concurrency: self.tool_concurrency,
                hooks: self.hooks,
                answer_on_repeat: self.answer_on_repeat,
                first_tool_choice: self.first_tool_choice,
            }),
        })
    }
}

/// The task another agent gives an agent used as a tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct AgentTask {
    /// The task, in full: the agent sees nothing else of the conversation.
    pub task: String,
}

/// An [`Agent`] used as a tool; made by [`Agent::into_tool`].
pub struct AgentTool<S> {
    agent: Agent<S>,
    name: String,
    description: String,
}

impl<S> std::fmt::Debug for AgentTool<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTool")
            .field("name", &self.name)
            .field("agent", &self.agent)
            .finish()
    }
}

impl<S: ChatService + Sync> Tool for AgentTool<S> {
    type Args = AgentTask;
    type Output = String;

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn call(&self, args: AgentTask) -> std::result::Result<String, ToolError> {
        let stream = self
            .agent
            .clone()
            .oneshot(ChatRequest::from(args.task))
            .await?;
        Ok(stream.collect_response().await?.text().to_owned())
    }
}
