//! Tools: typed functions a model may call, and their type-erased form.
//!
//! A [`Tool`] names its argument type (`Deserialize + JsonSchema`) and its output type
//! (`Serialize`); the JSON Schema the model sees is derived from the argument type, never
//! written by hand, so it cannot drift from the code that parses the arguments. [`tool_fn`]
//! makes one from an async closure.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use any_core::ToolSpec;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A function the model may call, with typed arguments and output.
///
/// ```
/// use any_agent::{Tool, ToolError};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Arguments of `add`.
/// #[derive(Deserialize, JsonSchema)]
/// struct AddArgs {
///     /// The first term.
///     a: f64,
///     /// The second term.
///     b: f64,
/// }
///
/// struct Add;
///
/// impl Tool for Add {
///     type Args = AddArgs;
///     type Output = f64;
///
///     fn name(&self) -> &str {
///         "add"
///     }
///
///     fn description(&self) -> &str {
///         "Adds two numbers."
///     }
///
///     async fn call(&self, args: AddArgs) -> Result<f64, ToolError> {
///         Ok(args.a + args.b)
///     }
/// }
///
/// let spec = any_agent::Tool::spec(&Add);
/// assert_eq!(spec.name, "add");
/// assert_eq!(spec.parameters["required"], serde_json::json!(["a", "b"]));
/// ```
pub trait Tool: Send + Sync + 'static {
    /// The arguments, parsed from the model's JSON; their schema is what the model sees.
    type Args: DeserializeOwned + JsonSchema + Send + 'static;
    /// What the tool returns; serialised to JSON for the model (a string is given as is).
    type Output: Serialize + Send + 'static;

    /// The name the model calls it by: 1 to 64 ASCII letters, digits, `_`, `-` or `.`.
    fn name(&self) -> &str;

    /// What it does, for the model: say when to use it.
    fn description(&self) -> &str;

    /// Runs the tool.
    ///
    /// # Errors
    /// A [`ToolError`], which the agent shows the model as the call's result, so it can try
    /// again or answer without it.
    fn call(
        &self,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;

    /// The tool's spec: its name, description and the JSON Schema of `Args`.
    fn spec(&self) -> ToolSpec {
        ToolSpec::from_type::<Self::Args>(self.name(), self.description())
    }
}

/// Why a tool call produced no result. The agent turns it into the call's result text
/// (`error: ...`), which the model reads and can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The model's arguments are not JSON, or do not match the tool's schema.
    #[error("invalid arguments for tool `{tool}`: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong, naming each violation.
        message: String,
    },
    /// The model called a tool that does not exist.
    #[error("there is no tool named `{name}`; the tools are: {available}")]
    UnknownTool {
        /// The name the model used.
        name: String,
        /// The names it could have used, comma-separated.
        available: String,
    },
    /// The tool ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The tool did not finish within its time limit.
    #[error("tool `{tool}` did not finish within {seconds:.1} s")]
    Timeout {
        /// The tool.
        tool: String,
        /// Its limit in seconds.
        seconds: f64,
    },
    /// The tool panicked; the agent caught it.
    #[error("tool `{tool}` crashed: {message}")]
    Panicked {
        /// The tool.
        tool: String,
        /// The panic's message, where it had one.
        message: String,
    },
    /// A hook refused the call.
    #[error("the call was refused: {0}")]
    Refused(String),
}

impl ToolError {
    /// A failure with this message: what a tool returns when it ran and could not do its job.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed(message.into())
    }
}

impl From<ToolError> for any_core::Error {
    fn from(e: ToolError) -> Self {
        any_core::Error::Other(Box::new(e))
    }
}

impl From<any_core::Error> for ToolError {
    fn from(e: any_core::Error) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// The boxed future of a type-erased tool call.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>>;

/// A tool with its types erased: JSON arguments in, result text out. Every [`Tool`] is one;
/// implement it directly for tools whose schema is only known at run time (tools from an MCP
/// server, say).
pub trait DynTool: Send + Sync + 'static {
    /// The tool's spec.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool on arguments that already passed the spec's schema.
    fn call_json(&self, arguments: serde_json::Value) -> ToolFuture<'_>;
}

impl<T: Tool> DynTool for T {
    fn spec(&self) -> ToolSpec {
        Tool::spec(self)
    }

    fn call_json(&self, arguments: serde_json::Value) -> ToolFuture<'_> {
        Box::pin(async move {
            let args: T::Args =
                serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments {
                    tool: self.name().to_owned(),
                    message: e.to_string(),
                })?;
            let output = self.call(args).await?;
            output_text(&output)
        })
    }
}

/// The text the model sees for a tool's output: a string as is, anything else as compact
/// JSON.
pub(crate) fn output_text<O: Serialize>(output: &O) -> Result<String, ToolError> {
    match serde_json::to_value(output) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(ToolError::Failed(format!(
            "the tool's output could not be serialised: {e}"
        ))),
    }
}

/// A tool made from an async closure by [`tool_fn`].
pub struct FnTool<A, O, F> {
    name: Cow<'static, str>,
    description: Cow<'static, str>,
    f: F,
    _types: PhantomData<fn(A) -> O>,
}

impl<A, O, F> std::fmt::Debug for FnTool<A, O, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A tool from an async closure: its arguments are the closure's argument type.
///
/// ```
/// use any_agent::{ToolError, tool_fn};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Arguments of `to_celsius`.
/// #[derive(Deserialize, JsonSchema)]
/// struct Fahrenheit {
///     /// Degrees Fahrenheit.
///     degrees: f64,
/// }
///
/// let tool = tool_fn("to_celsius", "Converts Fahrenheit to Celsius.", |a: Fahrenheit| async move {
///     Ok::<_, ToolError>((a.degrees - 32.0) * 5.0 / 9.0)
/// });
/// assert_eq!(any_agent::Tool::spec(&tool).name, "to_celsius");
/// ```
pub fn tool_fn<A, O, F, Fut>(
    name: impl Into<Cow<'static, str>>,
    description: impl Into<Cow<'static, str>>,
    f: F,
) -> FnTool<A, O, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    FnTool {
        name: name.into(),
        description: description.into(),
        f,
        _types: PhantomData,
    }
}

impl<A, O, F, Fut> Tool for FnTool<A, O, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    type Args = A;
    type Output = O;

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn call(&self, args: A) -> impl Future<Output = Result<O, ToolError>> + Send {
        (self.f)(args)
    }
}
