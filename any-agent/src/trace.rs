//! [`AgentTrace`]: what an agent run did, step by step, serialisable to JSON.

use std::time::Duration;

use any_core::{FinishReason, Message, Usage};
use serde::{Deserialize, Serialize};

/// Every model call and tool call of one run, with inputs, outputs, token usage and
/// durations, and the final output.
///
/// The conversation can be replayed from it: `input` is what the first model call saw; each
/// model step's `output` and each tool step's `output` are the messages appended after it.
/// A finished run's trace travels in the response's extensions
/// (`response.extensions.get::<AgentTrace>()`); a run that ended in an
/// [`AgentError`](crate::AgentError) carries it in the error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTrace {
    /// The agent's name.
    pub agent: String,
    /// The messages of the first model call: instructions and the caller's conversation.
    pub input: Vec<Message>,
    /// The model calls and tool calls, in the order they finished (a step's tool calls in
    /// the order the model asked for them).
    pub steps: Vec<TraceStep>,
    /// Tokens used by all model calls together.
    pub usage: Usage,
    /// The run's wall time, in milliseconds.
    pub duration_ms: f64,
    /// The final answer's text, when the run produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why the final model call ended, when the run produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

/// One step of an [`AgentTrace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceStep {
    /// A model call.
    Model {
        /// Which model call of the run (1, 2, ...).
        step: u32,
        /// The assistant message it produced: text and tool calls.
        output: Message,
        /// Its token usage, where the model reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// Why it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finish_reason: Option<FinishReason>,
        /// How long it took, in milliseconds.
        duration_ms: f64,
    },
    /// A tool call.
    Tool {
        /// The model call that asked for it.
        step: u32,
        /// The call's id.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The arguments, as the model wrote them (after any hook's rewrite).
        arguments: String,
        /// The result text the model was shown.
        output: String,
        /// Whether the call failed (the output is then the error).
        error: bool,
        /// How long it took, in milliseconds.
        duration_ms: f64,
    },
}

impl AgentTrace {
    /// How many model calls the run made.
    pub fn model_calls(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, TraceStep::Model { .. }))
            .count()
    }

    /// The tool steps, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &TraceStep> {
        self.steps
            .iter()
            .filter(|s| matches!(s, TraceStep::Tool { .. }))
    }

    /// The trace as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A trace holds only strings, numbers and JSON-safe enums: it always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
