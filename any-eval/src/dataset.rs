//! Datasets: cases read from JSONL or CSV.

use std::path::Path;

use any_core::Message;
use serde_json::{Map, Value};

use crate::{EvalError, Result};

/// What the service is asked: a prompt, or a whole conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// The messages, in order.
    Messages(Vec<Message>),
}

impl Input {
    /// The input as messages (a prompt becomes one user message).
    pub fn messages(&self) -> Vec<Message> {
        match self {
            Input::Text(t) => vec![Message::user(t.clone())],
            Input::Messages(m) => m.clone(),
        }
    }

    /// The text a report shows: the prompt, or the last message's text.
    pub fn summary(&self) -> String {
        match self {
            Input::Text(t) => t.clone(),
            Input::Messages(m) => m.last().map(|m| m.text().into_owned()).unwrap_or_default(),
        }
    }
}

/// One case: an input, and what a good answer looks like.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Case {
    /// The case's id (`id` in the file, else its line number).
    pub id: String,
    /// What the service is asked.
    pub input: Input,
    /// Acceptable answers (any one of them), for the reference-based metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<String>,
    /// For multiple choice: the options; `expected` then holds the right one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Text given to the service with the input (a retrieved passage, say), as a system
    /// message before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Anything else, kept for the report.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl Case {
    /// A case asking `input`, expecting `expected`.
    pub fn new(
        id: impl Into<String>,
        input: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Case {
            id: id.into(),
            input: Input::Text(input.into()),
            expected: vec![expected.into()],
            choices: Vec::new(),
            context: None,
            metadata: Map::new(),
        }
    }

    /// The messages sent for this case: the context as a system message, then the input.
    pub fn messages(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        if let Some(c) = &self.context {
            messages.push(Message::system(format!("Context:\n{c}")));
        }
        messages.extend(self.input.messages());
        messages
    }
}

/// Cases with a name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dataset {
    /// The name reports use (the file's stem, for a file).
    pub name: String,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// The fields a JSONL case may have.
const FIELDS: [&str; 7] = [
    "id", "input", "text", "expected", "choices", "context", "metadata",
];

fn bad(file: &Path, line: usize, field: Option<&str>, message: impl Into<String>) -> EvalError {
    EvalError::Dataset {
        file: file.to_path_buf(),
        line,
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

fn strings(value: Value, file: &Path, line: usize, field: &str) -> Result<Vec<String>> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(bad(
                    file,
                    line,
                    Some(field),
                    format!("item {i} is {}, not a string", kind(&other)),
                )),
            })
            .collect(),
        other => Err(bad(
            file,
            line,
            Some(field),
            format!(
                "expected a string or an array of strings, found {}",
                kind(&other)
            ),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Dataset {
    /// Reads a dataset file: JSONL (`.jsonl`, `.json`), or CSV (`.csv`).
    ///
    /// # Errors
    /// [`EvalError::Io`] when the file cannot be read; [`EvalError::Dataset`] naming the
    /// file, line and field of the first malformed case.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut data = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Self::from_csv(&text, path)?
        } else {
            Self::from_jsonl(&text, path)?
        };
        if let Some(stem) = path.file_stem() {
            data.name = stem.to_string_lossy().into_owned();
        }
        Ok(data)
    }

    /// Parses JSONL: one JSON object per line, blank lines skipped. Fields: `input` (a
    /// string, or an array of `{"role", "content"}` messages; required, or `text` instead: a
    /// document, as perplexity datasets name it), `expected` (a
    /// string or several), `choices`, `context`, `id`, `metadata` (an object). `name` names
    /// the source in errors.
    ///
    /// ```
    /// let d = any_eval::Dataset::from_jsonl(r#"{"input": "2+2?", "expected": ["4", "four"]}"#, "inline")?;
    /// assert_eq!(d.cases[0].expected, ["4", "four"]);
    /// assert_eq!(d.cases[0].id, "1");
    /// # Ok::<(), any_eval::EvalError>(())
    /// ```
    ///
    /// # Errors
    /// [`EvalError::Dataset`] for a line that is not a JSON object, lacks `input`, has a
    /// field of the wrong type, an unknown field, or an id used before.
    pub fn from_jsonl(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        let file = name.as_ref();
        let mut cases: Vec<Case> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(raw)
                .map_err(|e| bad(file, line, None, format!("not JSON: {e}")))?;
            let Value::Object(mut obj) = value else {
                return Err(bad(
                    file,
                    line,
                    None,
                    format!("expected a JSON object, found {}", kind(&value)),
                ));
            };
            let input = match (obj.remove("input"), obj.remove("text")) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        file,
                        line,
                        Some("text"),
                        "a case has `input` or `text` (a document), not both",
                    ));
                }
                (None, Some(Value::String(s))) => Some(Value::String(s)),
                (None, Some(other)) => {
                    return Err(bad(
                        file,
                        line,
                        Some("text"),
                        format!("expected a string, found {}", kind(&other)),
                    ));
                }
                (input, None) => input,
            };
            let input = match input {
                Some(Value::String(s)) => Input::Text(s),
                Some(v @ Value::Array(_)) => {
                    Input::Messages(serde_json::from_value(v).map_err(|e| {
                        bad(
                            file,
                            line,
                            Some("input"),
                            format!("not a list of messages: {e}"),
                        )
                    })?)
                }
                Some(other) => {
                    return Err(bad(
                        file,
                        line,
                        Some("input"),
                        format!(
                            "expected a string or an array of messages, found {}",
                            kind(&other)
                        ),
                    ));
                }
                None => {
                    let unknown: Vec<String> = obj
                        .keys()
                        .filter(|k| !FIELDS.contains(&k.as_str()))
                        .map(|k| format!("`{k}`"))
                        .collect();
                    let hint = if unknown.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (the line has unknown fields {}: a misspelling?)",
                            unknown.join(", ")
                        )
                    };
                    return Err(bad(file, line, Some("input"), format!("missing{hint}")));
                }
            };
            let id = match obj.remove("id") {
                None => line.to_string(),
                Some(Value::String(s)) => s,
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(bad(
                        file,
                        line,
                        Some("id"),
                        format!("expected a string or a number, found {}", kind(&other)),
                    ));
                }
            };
            if !seen.insert(id.clone()) {
                return Err(bad(
                    file,
                    line,
                    Some("id"),
                    format!("`{id}` is used by an earlier case"),
                ));
            }
            let expected = obj
                .remove("expected")
                .map(|v| strings(v, file, line, "expected"))
                .transpose()?
                .unwrap_or_default();
            let choices = obj
                .remove("choices")
                .map(|v| strings(v, file, line, "choices"))
                .transpose()?
                .unwrap_or_default();
            if !choices.is_empty()
                && !expected.is_empty()
                && !expected.iter().all(|e| choices.contains(e))
            {
                return Err(bad(
                    file,
                    line,
                    Some("expected"),
                    "a multiple-choice answer must be one of `choices`",
                ));
            }
            let context = match obj.remove("context") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(other) => {
                    return Err(bad(
                        file,
                        line,
                        Some("context"),
                        format!("expected a string, found {}", kind(&other)),
                    ));
                }
            };
            let metadata = match obj.remove("metadata") {
                None => Map::new(),
                Some(Value::Object(m)) => m,
                Some(other) => {
                    return Err(bad(
                        file,
                        line,
                        Some("metadata"),
                        format!("expected an object, found {}", kind(&other)),
                    ));
                }
            };
            if let Some(unknown) = obj.keys().next() {
                return Err(bad(
                    file,
                    line,
                    Some(unknown),
                    format!(
                        "unknown field (a case has {}; put anything else in `metadata`)",
                        FIELDS.join(", ")
                    ),
                ));
            }
            cases.push(Case {
                id,
                input,
                expected,
                choices,
                context,
                metadata,
            });
        }
        Ok(Dataset {
            name: file.to_string_lossy().into_owned(),
            cases,
        })
    }

    /// Parses CSV with a header row (RFC 4180 quoting). Columns: `input` (required), `id`,
    /// `context`; every column whose name starts with `expected` adds an acceptable answer
    /// and every one starting with `choice` an option (empty cells skipped); the rest go to
    /// `metadata` as strings.
    ///
    /// # Errors
    /// [`EvalError::Dataset`] for a missing `input` column, an unterminated quote, a record
    /// with a different number of fields than the header, or a repeated id.
    pub fn from_csv(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        let file = name.as_ref();
        let records = csv_records(text, file)?;
        let mut rows = records.into_iter();
        let Some((_, header)) = rows.next() else {
            return Ok(Dataset {
                name: file.to_string_lossy().into_owned(),
                cases: Vec::new(),
            });
        };
        let Some(input_col) = header.iter().position(|h| h.trim() == "input") else {
            return Err(bad(
                file,
                1,
                Some("input"),
                "the header has no `input` column",
            ));
        };
        let mut cases = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (line, row) in rows {
            if row.len() == 1 && row[0].is_empty() {
                continue;
            }
            if row.len() != header.len() {
                return Err(bad(
                    file,
                    line,
                    None,
                    format!("{} fields, the header has {}", row.len(), header.len()),
                ));
            }
            let mut case = Case {
                id: line.to_string(),
                input: Input::Text(row[input_col].clone()),
                expected: Vec::new(),
                choices: Vec::new(),
                context: None,
                metadata: Map::new(),
            };
            for (h, cell) in header.iter().zip(row) {
                let h = h.trim();
                match h {
                    "input" => {}
                    "id" => case.id = cell,
                    "context" => case.context = (!cell.is_empty()).then_some(cell),
                    _ if h.starts_with("expected") => {
                        if !cell.is_empty() {
                            case.expected.push(cell);
                        }
                    }
                    _ if h.starts_with("choice") => {
                        if !cell.is_empty() {
                            case.choices.push(cell);
                        }
                    }
                    _ => {
                        case.metadata.insert(h.to_owned(), Value::String(cell));
                    }
                }
            }
            if !seen.insert(case.id.clone()) {
                return Err(bad(
                    file,
                    line,
                    Some("id"),
                    format!("`{}` is used by an earlier case", case.id),
                ));
            }
            cases.push(case);
        }
        Ok(Dataset {
            name: file.to_string_lossy().into_owned(),
            cases,
        })
    }
}

/// CSV records with the line each starts on.
fn csv_records(text: &str, file: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1, 1);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(bad(file, start, None, "a quoted field is not closed"));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}
