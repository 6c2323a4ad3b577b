//! [`AgentError`]: how a run ends without a final answer.

use std::time::Duration;

use crate::AgentTrace;

/// Why an agent run ended without a final answer. Each carries the trace up to that point.
///
/// It reaches callers inside [`any_core::Error::Other`]; [`AgentError::find`] gets it back.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model was called `limit` times and still asked for tools.
    #[error("the agent made {limit} model calls (its step limit) without a final answer")]
    StepLimit {
        /// The step limit.
        limit: u32,
        /// What happened.
        trace: Box<AgentTrace>,
    },
    /// The model calls used more tokens than allowed.
    #[error("the agent used {used} tokens, over its limit of {limit}")]
    TokenLimit {
        /// Tokens used (prompt and completion, all calls).
        used: u32,
        /// The limit.
        limit: u32,
        /// What happened.
        trace: Box<AgentTrace>,
    },
    /// The run took longer than allowed.
    #[error("the agent did not finish within {:.1} s", .limit.as_secs_f64())]
    TimeLimit {
        /// The limit.
        limit: Duration,
        /// What happened.
        trace: Box<AgentTrace>,
    },
    /// The model's answer was cut off (finish reason `length`: `max_tokens` or the context
    /// window) in the middle of a tool call. A cut-off call is not run: its arguments are
    /// incomplete.
    #[error(
        "the model's call of `{tool}` was cut off (finish reason `length`) before its \
         arguments were complete: raise max_tokens"
    )]
    CallCutOff {
        /// The tool it was calling.
        tool: String,
        /// What happened.
        trace: Box<AgentTrace>,
    },
    /// A hook stopped the run.
    #[error("a hook stopped the agent: {reason}")]
    Stopped {
        /// What the hook said.
        reason: String,
        /// What happened.
        trace: Box<AgentTrace>,
    },
}

impl AgentError {
    /// The trace of the run up to where it ended.
    pub fn trace(&self) -> &AgentTrace {
        match self {
            AgentError::StepLimit { trace, .. }
            | AgentError::TokenLimit { trace, .. }
            | AgentError::TimeLimit { trace, .. }
            | AgentError::CallCutOff { trace, .. }
            | AgentError::Stopped { trace, .. } => trace,
        }
    }

    /// The agent error inside a service error, if that is what it is.
    pub fn find(error: &any_core::Error) -> Option<&AgentError> {
        match error {
            any_core::Error::Other(e) => e.downcast_ref::<AgentError>(),
            _ => None,
        }
    }
}

impl From<AgentError> for any_core::Error {
    fn from(e: AgentError) -> Self {
        any_core::Error::Other(Box::new(e))
    }
}
