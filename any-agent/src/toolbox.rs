//! [`Toolbox`]: the tools an agent may call, each with its compiled schema and time limit.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use any_core::schema::Schema;
use any_core::{Error, Result, ToolCall, ToolSpec};
use futures_util::FutureExt;

use crate::tool::{DynTool, Tool, ToolError};

/// The time a tool call may take unless its tool says otherwise.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(60);

struct Entry {
    tool: Arc<dyn DynTool>,
    spec: ToolSpec,
    schema: Schema,
    timeout: Duration,
}

/// A set of tools with unique names: their specs for the model, and the one place calls are
/// checked and run.
///
/// Each call's arguments are parsed and validated against the tool's schema before the tool
/// sees them; a violation, an unknown tool, a failure, a timeout and a panic all become a
/// [`ToolError`] — the call's result for the model — never a crashed loop.
///
/// ```
/// use any_agent::{ToolError, Toolbox, tool_fn};
/// use any_core::ToolCall;
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
/// assert_eq!(tools.call(&ToolCall::new("1", "double", r#"{"n": 21}"#)).await?, "42");
/// let err = tools.call(&ToolCall::new("2", "double", r#"{"n": "x"}"#)).await.unwrap_err();
/// assert!(err.to_string().contains("invalid arguments for tool `double`"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Toolbox {
    entries: Arc<Vec<Entry>>,
    index: Arc<HashMap<String, usize>>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Toolbox {
    /// An empty toolbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a typed tool, with the default time limit.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when its name is taken or not a valid tool name, or its
    /// schema does not compile.
    pub fn with<T: Tool>(self, tool: T) -> Result<Self> {
        self.with_dyn(Arc::new(tool), DEFAULT_TOOL_TIMEOUT)
    }

    /// Adds a typed tool that may run for at most `timeout`.
    ///
    /// # Errors
    /// As [`Toolbox::with`].
    pub fn with_timeout<T: Tool>(self, tool: T, timeout: Duration) -> Result<Self> {
        self.with_dyn(Arc::new(tool), timeout)
    }

    /// Adds a type-erased tool (one whose schema is known only at run time).
    ///
    /// # Errors
    /// As [`Toolbox::with`].
    pub fn with_dyn(mut self, tool: Arc<dyn DynTool>, timeout: Duration) -> Result<Self> {
        let spec = tool.spec();
        check_name(&spec.name)?;
        if self.index.contains_key(&spec.name) {
            return Err(Error::InvalidRequest(format!(
                "two tools are named `{}`: tool names must be unique",
                spec.name
            )));
        }
        let schema = Schema::compile_named(spec.name.clone(), &spec.parameters).map_err(|e| {
            Error::InvalidRequest(format!(
                "tool `{}`: its parameter schema does not compile: {e}",
                spec.name
            ))
        })?;
        let mut entries = Arc::try_unwrap(self.entries).unwrap_or_else(|a| clone_entries(&a));
        Arc::make_mut(&mut self.index).insert(spec.name.clone(), entries.len());
        entries.push(Entry {
            tool,
            spec,
            schema,
            timeout,
        });
        self.entries = Arc::new(entries);
        Ok(self)
    }

    /// Every tool's spec, in the order they were added.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// The tools' names, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.spec.name.as_str()).collect()
    }

    /// Whether a tool of this name is here.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs one call: finds the tool, parses and validates the arguments, runs it within its
    /// time limit, catching a panic.
    ///
    /// # Errors
    /// A [`ToolError`] saying why there is no result; the agent shows it to the model.
    pub async fn call(&self, call: &ToolCall) -> Result<String, ToolError> {
        let Some(&i) = self.index.get(&call.name) else {
            return Err(ToolError::UnknownTool {
                name: call.name.clone(),
                available: self.names().join(", "),
            });
        };
        let entry = &self.entries[i];
        let invalid = |message: String| ToolError::InvalidArguments {
            tool: call.name.clone(),
            message,
        };
        let text = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let arguments: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("the arguments are not JSON ({e}): {text}")))?;
        let violations = entry.schema.violations(&arguments);
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(invalid(list.join("; ")));
        }
        let run = AssertUnwindSafe(entry.tool.call_json(arguments)).catch_unwind();
        match tokio::time::timeout(entry.timeout, run).await {
            Err(_) => Err(ToolError::Timeout {
                tool: call.name.clone(),
                seconds: entry.timeout.as_secs_f64(),
            }),
            Ok(Err(panic)) => Err(ToolError::Panicked {
                tool: call.name.clone(),
                message: panic_message(panic.as_ref()),
            }),
            Ok(Ok(result)) => result,
        }
    }
}

fn clone_entries(entries: &[Entry]) -> Vec<Entry> {
    entries
        .iter()
        .map(|e| Entry {
            tool: e.tool.clone(),
            spec: e.spec.clone(),
            schema: e.schema.clone(),
            timeout: e.timeout,
        })
        .collect()
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "tool name {name:?} must be 1 to 64 ASCII letters, digits, `_`, `-` or `.`"
        )))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}
