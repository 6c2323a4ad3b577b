//! One run of the loop, driven by the stream the caller reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{
    Accumulator, ChatChunk, ChatRequest, ChatResponse, ChatService, ChatStream, Error,
    FinishReason, Message, Result, Role, ToolCall, ToolCallDelta, ToolChoice, ToolSpec, Usage,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{Instrument, field};

use super::Config;
use crate::hook::first_flow;
use crate::trace::millis;
use crate::{AgentError, AgentTrace, Flow, ToolError, TraceStep};

/// A caller's request made ready for the loop.
pub(super) struct Prepared {
    request: ChatRequest,
    caller_tools: Vec<ToolSpec>,
}

/// Checks the request and merges the agent's instructions and tools into it.
pub(super) fn prepare(config: &Config, mut request: ChatRequest) -> Result<Prepared> {
    if let Some(instructions) = &config.instructions {
        match request.messages.first_mut() {
            Some(first) if first.role == Role::System => {
                let caller = first.text().into_owned();
                first.content = format!("{instructions}\n\n{caller}").into();
            }
            _ => request
                .messages
                .insert(0, Message::system(instructions.clone())),
        }
    }
    let caller_tools = std::mem::take(&mut request.tools);
    if let Some(clash) = caller_tools.iter().find(|t| config.tools.contains(&t.name)) {
        return Err(Error::InvalidRequest(format!(
            "the request's tool `{}` has the name of one of the agent's own tools",
            clash.name
        )));
    }
    request.tools = config.tools.specs();
    request.tools.extend(caller_tools.iter().cloned());
    if request.tool_choice.is_none() {
        request.tool_choice = config.first_tool_choice.clone();
    }
    // Checked with the agent's tools in: `tool_choice` may name one of them.
    request.validate()?;
    Ok(Prepared {
        request,
        caller_tools,
    })
}

type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The run as a stream: the loop's future is polled whenever the caller wants a chunk and
/// none is waiting, so it runs at the caller's pace, and dropping the stream drops the run —
/// the model call in flight and the tool calls with it.
struct Driven {
    run: Option<RunFuture>,
    rx: mpsc::UnboundedReceiver<Result<ChatChunk>>,
}

impl futures_util::Stream for Driven {
    type Item = Result<ChatChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Poll::Ready(item) = self.rx.poll_recv(cx) {
                return Poll::Ready(item);
            }
            match self.run.as_mut() {
                // The run ended: its sender is gone, so the receiver drains and ends.
                None => return Poll::Pending,
                Some(run) => match run.as_mut().poll(cx) {
                    Poll::Ready(()) => self.run = None,
                    Poll::Pending => {
                        if let Poll::Ready(item) = self.rx.poll_recv(cx) {
                            return Poll::Ready(item);
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

pub(super) fn stream<S: ChatService>(
    model: S,
    config: Arc<Config>,
    prepared: Prepared,
) -> ChatStream {
    let (tx, rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!(
        "invoke_agent",
        otel.name = format!("invoke_agent {}", config.name),
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %config.name,
    );
    let run = async move {
        let mut run = Run::new(model, config, prepared, tx.clone());
        if let Err(e) = run.go().await {
            let _ = tx.send(Err(e));
        }
    };
    ChatStream::new(Driven {
        run: Some(Box::pin(run.instrument(span))),
        rx,
    })
}

struct Run<S> {
    model: S,
    config: Arc<Config>,
    request: ChatRequest,
    caller_tools: Vec<ToolSpec>,
    tx: mpsc::UnboundedSender<Result<ChatChunk>>,
    trace: AgentTrace,
    started: Instant,
    deadline: Option<Instant>,
    /// Every call made so far, as (name, arguments).
    made: Vec<(String, String)>,
}

impl<S: ChatService> Run<S> {
    fn new(
        model: S,
        config: Arc<Config>,
        prepared: Prepared,
        tx: mpsc::UnboundedSender<Result<ChatChunk>>,
    ) -> Self {
        let started = Instant::now();
        let deadline = config.limits.max_duration.map(|d| started + d);
        let trace = AgentTrace {
            agent: config.name.clone(),
            input: prepared.request.messages.clone(),
            ..Default::default()
        };
        Run {
            model,
            config,
            request: prepared.request,
            caller_tools: prepared.caller_tools,
            tx,
            trace,
            started,
            deadline,
            made: Vec::new(),
        }
    }

    async fn go(&mut self) -> Result<()> {
        let max_steps = self.config.limits.max_steps;
        for step in 1..=max_steps {
            let response = self.model_step(step).await?;
            let calls = response.tool_calls().to_vec();
            if let (Some(call), Some(FinishReason::Length)) = (calls.last(), response.finish_reason)
            {
                return Err(AgentError::CallCutOff {
                    tool: call.name.clone(),
                    trace: self.trace_now(),
                }
                .into());
            }
            if calls.is_empty() || calls.iter().any(|c| self.is_callers(c)) {
                return self.finish(response, calls);
            }
            let repeated = calls
                .iter()
                .any(|c| self.made.contains(&(c.name.clone(), c.arguments.clone())));
            self.made
                .extend(calls.iter().map(|c| (c.name.clone(), c.arguments.clone())));
            self.request.messages.push(response.message);
            self.tool_step(step, calls).await?;
            // The caller's tool_choice was for the first turn; later turns choose freely —
            // unless the model repeated a call it had already made, a loop that small models
            // fall into: then the next turn answers from the results it has.
            let rounds_done = self
                .config
                .limits
                .max_tool_rounds
                .is_some_and(|n| step >= n);
            self.request.tool_choice = Some(
                if rounds_done || (repeated && self.config.answer_on_repeat) {
                    ToolChoice::None
                } else {
                    ToolChoice::Auto
                },
            );
        }
        Err(AgentError::StepLimit {
            limit: max_steps,
            trace: self.trace_now(),
        }
        .into())
    }

    fn is_callers(&self, call: &ToolCall) -> bool {
        !self.config.tools.contains(&call.name)
            && self.caller_tools.iter().any(|t| t.name == call.name)
    }

    /// One model call: its text streamed to the caller until its first tool call.
    async fn model_step(&mut self, step: u32) -> Result<ChatResponse> {
        let mut request = self.request.clone();
        if let Flow::Stop(reason) | Flow::Refuse(reason) =
            first_flow(&self.config.hooks, |h| h.before_model(&mut request))
        {
            return Err(self.stopped(reason));
        }
        let span = tracing::info_span!(
            "chat",
            otel.name = match request.model.as_deref() {
                Some(model) => format!("chat {model}"),
                None => "chat".to_owned(),
            },
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = request.model.as_deref(),
            gen_ai.usage.input_tokens = field::Empty,
            gen_ai.usage.output_tokens = field::Empty,
            gen_ai.response.finish_reasons = field::Empty,
        );
        let started = Instant::now();
        let tx = self.tx.clone();
        let model = self.model.clone();
        let call = async move {
            let mut stream = model.oneshot(request).await?;
            let mut acc = Accumulator::new();
            let mut calling = false;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                calling |= !chunk.tool_calls.is_empty();
                if !calling && !chunk.text.is_empty() {
                    let _ = tx.send(Ok(ChatChunk::text(chunk.text.clone())));
                }
                acc.push(chunk);
            }
            acc.finish()
        };
        let mut response = self.within(call.instrument(span.clone())).await??;
        if let Some(u) = response.usage {
            span.record("gen_ai.usage.input_tokens", u.prompt_tokens);
            span.record("gen_ai.usage.output_tokens", u.completion_tokens);
            add_usage(&mut self.trace.usage, u);
        }
        if let Some(r) = response.finish_reason {
            // The wire name (`tool_calls`); the convention's array holds one value here.
            let name = serde_json::to_value(r).ok();
            let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("other");
            span.record("gen_ai.response.finish_reasons", name);
        }
        let flow = first_flow(&self.config.hooks, |h| h.after_model(&mut response));
        self.trace.steps.push(TraceStep::Model {
            step,
            output: response.message.clone(),
            usage: response.usage,
            finish_reason: response.finish_reason,
            duration_ms: millis(started.elapsed()),
        });
        if let Flow::Stop(reason) | Flow::Refuse(reason) = flow {
            return Err(self.stopped(reason));
        }
        if let Some(limit) = self.config.limits.max_tokens {
            let used = self.trace.usage.total_tokens();
            if used > limit {
                return Err(AgentError::TokenLimit {
                    used,
                    limit,
                    trace: self.trace_now(),
                }
                .into());
            }
        }
        Ok(response)
    }

    /// Runs one turn's tool calls, at most `tool_concurrency` at once, and appends their
    /// results in the order the model asked for them.
    async fn tool_step(&mut self, step: u32, calls: Vec<ToolCall>) -> Result<()> {
        let hooks = self.config.hooks.clone();
        let tools = self.config.tools.clone();
        let mut stop = None;
        let mut prepared = Vec::with_capacity(calls.len());
        for mut call in calls {
            match first_flow(&hooks, |h| h.before_tool(&mut call)) {
                Flow::Continue => prepared.push((call, None)),
                Flow::Refuse(reason) => prepared.push((call, Some(ToolError::Refused(reason)))),
                Flow::Stop(reason) => {
                    stop = Some(reason);
                    break;
                }
            }
        }
        if let Some(reason) = stop {
            return Err(self.stopped(reason));
        }
        let runs = prepared.into_iter().map(|(call, refused)| {
            let tools = tools.clone();
            let span = tracing::info_span!(
                "execute_tool",
                otel.name = format!("execute_tool {}", call.name),
                gen_ai.operation.name = "execute_tool",
                gen_ai.tool.name = %call.name,
                gen_ai.tool.call.id = %call.id,
                error.r#type = field::Empty,
                otel.status_code = field::Empty,
            );
            async move {
                let started = Instant::now();
                let result = match refused {
                    Some(e) => Err(e),
                    None => tools.call(&call).instrument(span.clone()).await,
                };
                if let Err(e) = &result {
                    span.record("error.type", tool_error_kind(e));
                    span.record("otel.status_code", "error");
                }
                (call, result, started.elapsed())
            }
        });
        let concurrency = self.config.tool_concurrency;
        let batch = futures_util::stream::iter(runs)
            .buffered(concurrency)
            .collect::<Vec<_>>();
        let results = self.within(batch).await?;
        for (call, mut result, took) in results {
            let flow = first_flow(&hooks, |h| h.after_tool(&call, &mut result));
            let (output, error) = match result {
                Ok(text) => (text, false),
                Err(e) => (format!("error: {e}"), true),
            };
            self.trace.steps.push(TraceStep::Tool {
                step,
                call_id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                output: output.clone(),
                error,
                duration_ms: millis(took),
            });
            let mut message = Message::tool(call.id, output);
            message.name = Some(call.name);
            self.request.messages.push(message);
            if let Flow::Stop(reason) = flow {
                return Err(self.stopped(reason));
            }
        }
        Ok(())
    }

    /// Ends the run with the model's last answer: its text was streamed already; what is
    /// left is the caller's tool calls, if any, and the finish with the run's usage and
    /// trace.
    fn finish(&mut self, response: ChatResponse, callers_calls: Vec<ToolCall>) -> Result<()> {
        let mut finish_reason = response.finish_reason.unwrap_or(FinishReason::Stop);
        if !callers_calls.is_empty() {
            finish_reason = FinishReason::ToolCalls;
            let deltas = callers_calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| ToolCallDelta {
                    index: i as u32,
                    id: Some(c.id),
                    name: Some(c.name),
                    arguments: c.arguments,
                })
                .collect();
            let _ = self.tx.send(Ok(ChatChunk {
                tool_calls: deltas,
                ..Default::default()
            }));
        }
        self.trace.output = Some(response.text().to_owned());
        self.trace.finish_reason = Some(finish_reason);
        let trace = self.trace_now();
        let mut last = ChatChunk::finish(finish_reason, Some(self.trace.usage));
        last.model = response.model;
        last.extensions.insert(*trace);
        let _ = self.tx.send(Ok(last));
        Ok(())
    }

    /// `fut`, or the time-limit error if the run's deadline passes first.
    async fn within<F: Future>(&mut self, fut: F) -> Result<F::Output> {
        match self.deadline {
            None => Ok(fut.await),
            Some(deadline) => match tokio::time::timeout_at(deadline, fut).await {
                Ok(out) => Ok(out),
                Err(_) => Err(AgentError::TimeLimit {
                    limit: self.config.limits.max_duration.unwrap_or_default(),
                    trace: self.trace_now(),
                }
                .into()),
            },
        }
    }

    fn stopped(&mut self, reason: String) -> Error {
        AgentError::Stopped {
            reason,
            trace: self.trace_now(),
        }
        .into()
    }

    fn trace_now(&mut self) -> Box<AgentTrace> {
        self.trace.duration_ms = millis(self.started.elapsed());
        Box::new(self.trace.clone())
    }
}

fn add_usage(total: &mut Usage, u: Usage) {
    total.prompt_tokens += u.prompt_tokens;
    total.completion_tokens += u.completion_tokens;
    if let Some(c) = u.cached_prompt_tokens {
        *total.cached_prompt_tokens.get_or_insert(0) += c;
    }
}

fn tool_error_kind(e: &ToolError) -> &'static str {
    match e {
        ToolError::InvalidArguments { .. } => "invalid_arguments",
        ToolError::UnknownTool { .. } => "unknown_tool",
        ToolError::Failed(_) => "failed",
        ToolError::Timeout { .. } => "timeout",
        ToolError::Panicked { .. } => "panicked",
        ToolError::Refused(_) => "refused",
    }
}
