//! JSON validity of an output, and its conformance to a JSON Schema.

use any_core::Verdict;
use any_core::schema::{Schema, extract_json};

use crate::{Check, Guardrail, StreamScope, Subject};

/// Fails unless the output is one valid JSON value (surrounding whitespace and one
/// ```` ```json ```` fence around it are allowed, as [`extract_json`] says), optionally an
/// object with required keys ([`JsonValid::object_with`]) or conforming to a whole JSON Schema
/// ([`JsonValid::schema`]).
///
/// On a stream it judges the complete text, so a blocking `JsonValid` holds the output until
/// the end.
///
/// ```
/// use any_guard::{Guardrail, JsonValid, Subject};
/// let guard = JsonValid::object_with(["answer"]);
/// assert!(guard.check_now(&Subject::text(r#"{"answer": 42}"#)).valid);
/// assert!(guard.check_now(&Subject::text("```json\n{\"answer\": 1}\n```")).valid);
/// assert!(!guard.check_now(&Subject::text(r#"{"other": 1}"#)).valid);
/// assert!(!guard.check_now(&Subject::text("{\"answer\": ")).valid);
/// ```
#[derive(Debug, Clone, Default)]
pub struct JsonValid {
    object_keys: Option<Vec<String>>,
    schema: Option<Schema>,
}

impl JsonValid {
    /// Requires a JSON object that has each of `keys`.
    pub fn object_with<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        JsonValid {
            object_keys: Some(keys.into_iter().map(Into::into).collect()),
            schema: None,
        }
    }

    /// Requires JSON that conforms to `schema` (compiled once with
    /// [`Schema::compile`] or [`Schema::for_type`]). A failing verdict's explanation names
    /// the violations: where in the document, and which keyword.
    ///
    /// ```
    /// use any_core::schema::Schema;
    /// use any_guard::{Guardrail, JsonValid, Subject};
    /// use serde_json::json;
    ///
    /// let schema = Schema::compile(&json!({
    ///     "type": "object",
    ///     "properties": {"age": {"type": "integer", "minimum": 0}},
    ///     "required": ["age"]
    /// }))?;
    /// let guard = JsonValid::schema(schema);
    /// assert!(guard.check_now(&Subject::text(r#"{"age": 41}"#)).valid);
    /// let verdict = guard.check_now(&Subject::text(r#"{"age": -1}"#));
    /// assert!(!verdict.valid);
    /// assert!(verdict.explanation.unwrap().contains("/age"));
    /// # Ok::<(), any_core::Error>(())
    /// ```
    pub fn schema(schema: Schema) -> Self {
        JsonValid {
            object_keys: None,
            schema: Some(schema),
        }
    }
}

impl Guardrail for JsonValid {
    fn name(&self) -> &str {
        "json"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        if subject.is_partial() {
            return Check::ready(Verdict::pass("json"));
        }
        let text = subject.content();
        let fail = |why: String| Verdict::fail("json", 1.0, "format", why);
        let verdict = match serde_json::from_str::<serde_json::Value>(extract_json(&text)) {
            Err(e) => fail(format!("expected JSON, found invalid JSON: {e}")),
            Ok(value) if self.schema.is_some() => {
                let schema = self.schema.as_ref().expect("checked just above");
                let violations = schema.violations(&value);
                if violations.is_empty() {
                    Verdict::pass("json")
                } else {
                    let shown: Vec<String> =
                        violations.iter().take(5).map(ToString::to_string).collect();
                    let more = violations.len().saturating_sub(shown.len());
                    fail(format!(
                        "does not conform to schema `{}`: {}{}",
                        schema.name(),
                        shown.join("; "),
                        if more > 0 {
                            format!(" (and {more} more)")
                        } else {
                            String::new()
                        }
                    ))
                }
            }
            Ok(value) => match (&self.object_keys, value) {
                (None, _) => Verdict::pass("json"),
                (Some(keys), serde_json::Value::Object(map)) => {
                    let missing: Vec<&str> = keys
                        .iter()
                        .filter(|k| !map.contains_key(k.as_str()))
                        .map(String::as_str)
                        .collect();
                    if missing.is_empty() {
                        Verdict::pass("json")
                    } else {
                        fail(format!("expected keys {}, missing", missing.join(", ")))
                    }
                }
                (Some(_), other) => fail(format!(
                    "expected a JSON object, found {}",
                    match other {
                        serde_json::Value::Array(_) => "an array",
                        serde_json::Value::String(_) => "a string",
                        serde_json::Value::Number(_) => "a number",
                        serde_json::Value::Bool(_) => "a boolean",
                        _ => "null",
                    }
                )),
            },
        };
        Check::ready(verdict)
    }

    fn stream_scope(&self) -> StreamScope {
        StreamScope::Complete
    }
}
