//! JSON validity of an output.

use any_core::Verdict;

use crate::{Check, Guardrail, StreamScope, Subject};

/// Fails unless the output is one valid JSON value (a ```` ```json ```` fence around it is
/// allowed), optionally of a given top-level kind with required keys.
///
/// This checks syntax and the keys you name, not a full JSON Schema: a lean JSON Schema
/// validator is not part of the family's dependencies yet. On a stream it judges the complete
/// text, so a blocking `JsonValid` holds the output until the end.
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
        }
    }
}

/// The text inside a Markdown code fence, if the whole text is one.
fn unfence(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let body = rest.split_once('\n').map_or("", |(_, b)| b);
        return body.trim_end().strip_suffix("```").unwrap_or(body);
    }
    t
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
        let verdict = match serde_json::from_str::<serde_json::Value>(unfence(&text)) {
            Err(e) => fail(format!("expected JSON, found invalid JSON: {e}")),
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
