//! Chat templates: the Jinja template a GGUF file carries in `tokenizer.chat_template`, rendered
//! as HF transformers renders it, so the prompt the model sees is the one it was trained on.
//!
//! Rendering uses minijinja with HF's settings (`trim_blocks` and `lstrip_blocks` on), the
//! Python string and dict methods real templates call (`.strip()`, `.startswith()`,
//! `.items()`, … from `minijinja-contrib`), and HF's extras: `raise_exception(msg)` (a
//! [`TemplateError::Raised`] carrying the message), `strftime_now(fmt)` (UTC) and a `tojson`
//! that writes what Python's `json.dumps` writes.
//!
//! Messages are JSON values (`role`, `content`, `tool_calls`, `tool_call_id`, `name`, …), so
//! whatever a chat request serialises to can be passed through. Two normalisations make
//! OpenAI-shaped messages fit templates written for HF:
//!
//! - multi-part `content` (`[{"type": "text", "text": …}, …]`) is joined into one string,
//!   parts separated by a newline, unless the template handles typed parts itself (found by
//!   rendering a probe message when the template is built);
//! - a tool call's `arguments` given as a JSON string is parsed into an object, since
//!   templates `tojson` them.
//!
//! ```
//! # use any_llm_local::template::ChatTemplate;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let template = ChatTemplate::chatml();
//! let messages = [serde_json::json!({"role": "user", "content": "Hi"})];
//! let prompt = template.render(&messages, None, true, "", "")?;
//! assert_eq!(prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! # Ok(()) }
//! ```

mod pyjson;
mod strftime;

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde_json::Value as Json;

use crate::gguf::GgufFile;

/// The metadata key holding a model's chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// The ChatML template, used when a model file carries none.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' \
    + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// How many instructions one render may run: a real template over a long conversation
/// takes a few hundred thousand; a template that loops without end (nested `range(10000)`)
/// stops here, after about a second, with [`TemplateError::TooLong`].
pub const TEMPLATE_FUEL: u64 = 5_000_000;
const PROBE: &str = "\u{1}probe-text\u{1}";

/// A `Result` whose error is [`TemplateError`].
pub type Result<T, E = TemplateError> = std::result::Result<T, E>;

/// Why a template could not be built or rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template does not parse.
    #[error("chat template syntax error{}: {message}", at_line(line, source_line))]
    Syntax {
        /// The 1-based line of the error, when known.
        line: Option<usize>,
        /// That line of the template.
        source_line: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The template called `raise_exception(message)`: it rejects these messages (for
    /// instance roles that do not alternate).
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    /// Rendering failed for another reason (an undefined method, a type error, …).
    #[error("chat template render error{}: {message}", at_line(line, source_line))]
    Render {
        /// The 1-based line of the error, when known.
        line: Option<usize>,
        /// That line of the template.
        source_line: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// The render ran past [`TEMPLATE_FUEL`] instructions.
    #[error(
        "the chat template ran past its limit of {TEMPLATE_FUEL} steps (a loop that does \
         not end, or a conversation far too long)"
    )]
    TooLong,
    /// A message is not a JSON object.
    #[error("message {index} is not a JSON object with a role: {found}")]
    BadMessage {
        /// Its position in the list.
        index: usize,
        /// The value, abbreviated.
        found: String,
    },
    /// `tokenizer.chat_template` exists but is not a string.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

/// The typed error stays reachable as the [`any_core::Error::Model`]'s
/// [`source`](std::error::Error::source), so a caller can downcast to it.
impl From<TemplateError> for any_core::Error {
    fn from(err: TemplateError) -> Self {
        any_core::Error::model_with_source(err.to_string(), err)
    }
}

fn at_line(line: &Option<usize>, source_line: &Option<String>) -> String {
    match (line, source_line) {
        (Some(l), Some(s)) => format!(" at line {l} (`{s}`)"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// The error `raise_exception` returns; recognised in render errors by type.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: std::sync::Arc<str>,
    /// Whether the template reads typed content parts itself (else they are joined).
    typed_content: bool,
}

impl ChatTemplate {
    /// Compiles `source`.
    ///
    /// # Errors
    ///
    /// [`TemplateError::Syntax`] naming the line, if the template does not parse.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(
                    Error::new(ErrorKind::InvalidOperation, "raise_exception called")
                        .with_source(Raised(msg)),
                )
            },
        );
        env.add_function("strftime_now", |fmt: String| {
            strftime::DateTime::now().format(&fmt)
        });
        env.add_filter("tojson", pyjson::tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| convert(&e, source, true))?;
        let mut template = Self {
            env,
            source: source.into(),
            typed_content: true,
        };
        let probe =
            serde_json::json!([{"role": "user", "content": [{"type": "text", "text": PROBE}]}]);
        let probe: Vec<Json> = probe.as_array().cloned().unwrap_or_default();
        template.typed_content = match template.render(&probe, None, false, "", "") {
            Ok(out) => out.contains(PROBE) && !out.contains("\"type\"") && !out.contains("'type'"),
            Err(_) => false,
        };
        Ok(template)
    }

    /// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`).
    pub fn chatml() -> Self {
        // A constant that parses; a failure here is a bug in this crate.
        Self::new(CHATML).unwrap_or_else(|e| unreachable!("the ChatML template is valid: {e}"))
    }

    /// The template in `tokenizer.chat_template`, or [`ChatTemplate::chatml`] when the file
    /// has none.
    ///
    /// # Errors
    ///
    /// The key holds something other than a string, or a template that does not parse.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        match file.metadata().get_opt_str(CHAT_TEMPLATE_KEY)? {
            Some(source) => Self::new(source),
            None => {
                tracing::debug!("no {CHAT_TEMPLATE_KEY} in the model file; using ChatML");
                Ok(Self::chatml())
            }
        }
    }

    /// The template's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation.
    ///
    /// `tools` are the function definitions (`{"type": "function", "function": {…}}`) a
    /// template lists in its system prompt; `add_generation_prompt` opens the assistant's
    /// turn; `bos_token` and `eos_token` are the texts templates may write.
    ///
    /// # Errors
    ///
    /// [`TemplateError::Raised`] when the template rejects the conversation,
    /// [`TemplateError::Render`] for other failures, [`TemplateError::BadMessage`] for a
    /// message that is not an object.
    pub fn render(
        &self,
        messages: &[Json],
        tools: Option<&[Json]>,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        self.render_with(
            messages,
            tools,
            add_generation_prompt,
            bos_token,
            eos_token,
            &Json::Null,
        )
    }

    /// [`ChatTemplate::render`] with extra variables (an object such as
    /// `{"enable_thinking": false}`) that some templates read.
    ///
    /// # Errors
    ///
    /// As [`ChatTemplate::render`].
    pub fn render_with(
        &self,
        messages: &[Json],
        tools: Option<&[Json]>,
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
        extra: &Json,
    ) -> Result<String> {
        let messages = messages
            .iter()
            .enumerate()
            .map(|(index, m)| self.normalize(index, m))
            .collect::<Result<Vec<_>>>()?;
        let base = context! {
            messages => Value::from_serialize(&messages),
            tools => tools.map(Value::from_serialize),
            add_generation_prompt,
            bos_token,
            eos_token,
        };
        let ctx = match extra {
            Json::Object(_) => context! { ..base, ..Value::from_serialize(extra) },
            _ => base,
        };
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| convert(&e, self.source(), false))?;
        template
            .render(ctx)
            .map_err(|e| convert(&e, self.source(), false))
    }

    fn normalize(&self, index: usize, message: &Json) -> Result<Json> {
        let Json::Object(map) = message else {
            let mut found = message.to_string();
            found.truncate(80);
            return Err(TemplateError::BadMessage { index, found });
        };
        let mut map = map.clone();
        if !self.typed_content
            && let Some(Json::Array(parts)) = map.get("content")
        {
            let text: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Json::String(s) => Some(s.as_str()),
                    Json::Object(o) => o.get("text").and_then(Json::as_str),
                    _ => None,
                })
                .collect();
            map.insert("content".into(), Json::String(text.join("\n")));
        }
        if let Some(Json::Array(calls)) = map.get_mut("tool_calls") {
            for call in calls {
                let target = match call.get_mut("function") {
                    Some(f @ Json::Object(_)) => f,
                    _ => call,
                };
                if let Some(args) = target.get_mut("arguments")
                    && let Json::String(s) = args
                    && let Ok(parsed @ Json::Object(_)) = serde_json::from_str::<Json>(s)
                {
                    *args = parsed;
                }
            }
        }
        Ok(Json::Object(map))
    }
}

/// A minijinja error as a [`TemplateError`], with the template line it points at.
fn convert(err: &Error, source: &str, compiling: bool) -> TemplateError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(Raised(msg)) = e.downcast_ref::<Raised>() {
            return TemplateError::Raised(msg.clone());
        }
        cause = e.source();
    }
    let line = err.line();
    let source_line = line
        .and_then(|l| source.lines().nth(l.checked_sub(1)?))
        .map(|s| {
            let s = s.trim();
            match s.char_indices().nth(100) {
                Some((cut, _)) => format!("{}…", &s[..cut]),
                None => s.to_owned(),
            }
        });
    if err.kind() == ErrorKind::OutOfFuel {
        return TemplateError::TooLong;
    }
    let syntax = compiling || err.kind() == ErrorKind::SyntaxError;
    let message = match err.detail() {
        Some(detail) if syntax => detail.to_owned(),
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if syntax {
        TemplateError::Syntax {
            line,
            source_line,
            message,
        }
    } else {
        TemplateError::Render {
            line,
            source_line,
            message,
        }
    }
}
