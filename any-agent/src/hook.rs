//! [`Hook`]s: code that runs before and after each model call and tool call, and can
//! inspect, rewrite or stop.

use any_core::{ChatRequest, ChatResponse, ToolCall};

use crate::ToolError;

/// What a hook says about the run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Flow {
    /// Go on.
    #[default]
    Continue,
    /// Skip this tool call: its result is a [`ToolError::Refused`] with this reason, which the
    /// model sees. From a model hook, it ends the run as [`Flow::Stop`] does.
    Refuse(String),
    /// End the run now: it fails with [`AgentError::Stopped`](crate::AgentError::Stopped)
    /// and this reason.
    Stop(String),
}

/// Runs around every model call and tool call of an agent. Every method has a default that
/// does nothing, so a hook implements only what it needs.
///
/// Hooks run in the order they were added; the first that does not say
/// [`Flow::Continue`] decides.
///
/// ```
/// use any_agent::{Flow, Hook};
/// use any_core::ToolCall;
///
/// /// Refuses to delete anything, and logs every call.
/// struct NoDeletes;
///
/// impl Hook for NoDeletes {
///     fn before_tool(&self, call: &mut ToolCall) -> Flow {
///         if call.name.starts_with("delete") {
///             return Flow::Refuse("deleting is not allowed here".into());
///         }
///         Flow::Continue
///     }
/// }
/// ```
pub trait Hook: Send + Sync + 'static {
    /// Before a model call: may rewrite the request (its messages, tools, sampling).
    fn before_model(&self, request: &mut ChatRequest) -> Flow {
        let _ = request;
        Flow::Continue
    }

    /// After a model call: may rewrite the answer (its text and tool calls).
    fn after_model(&self, response: &mut ChatResponse) -> Flow {
        let _ = response;
        Flow::Continue
    }

    /// Before a tool call: may rewrite its arguments, refuse it, or stop.
    fn before_tool(&self, call: &mut ToolCall) -> Flow {
        let _ = call;
        Flow::Continue
    }

    /// After a tool call: may rewrite its result (what the model will see).
    fn after_tool(&self, call: &ToolCall, result: &mut Result<String, ToolError>) -> Flow {
        let _ = (call, result);
        Flow::Continue
    }
}

/// The first verdict of `hooks` that is not `Continue`.
pub(crate) fn first_flow(
    hooks: &[std::sync::Arc<dyn Hook>],
    mut f: impl FnMut(&dyn Hook) -> Flow,
) -> Flow {
    for hook in hooks {
        match f(hook.as_ref()) {
            Flow::Continue => {}
            other => return other,
        }
    }
    Flow::Continue
}
