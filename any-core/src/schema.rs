//! JSON Schema validation with errors that name each violation (the [`Schema`] validator needs
//! the default `schema` feature; [`Violation`] and [`extract_json`] are always here).
//!
//! A [`Schema`] is compiled once and validates many values cheaply. It understands the
//! drafts that `schemars` and hand-written schemas use — 2020-12 (the default, and what
//! `schemars` 1 emits), 2019-09, draft-07, -06 and -04, chosen by the schema's `$schema` — and
//! resolves `$ref`s inside the schema (`#/$defs/...`, `#/definitions/...`). It never fetches
//! anything: a `$ref` to another document is an error when the schema is compiled.
//! `format` is checked (`email`, `date-time`, `uuid`, ...); unknown formats are ignored.
//!
//! Each failure is a [`Violation`]: where in the value (`/items/2/age`), which schema keyword
//! failed (`minimum`), where that keyword is in the schema, and what was expected.
//! [`Schema::validate`] returns them as [`Error::SchemaViolation`], whose message names the
//! first few.
//!
//! ```
//! use any_core::schema::Schema;
//! use serde_json::json;
//!
//! let schema = Schema::compile(&json!({
//!     "title": "people",
//!     "type": "object",
//!     "properties": {"items": {"type": "array", "items": {
//!         "type": "object",
//!         "properties": {"age": {"type": "integer", "minimum": 0}},
//!         "required": ["age"]
//!     }}}
//! }))?;
//! let value = json!({"items": [{"age": 3}, {"age": 40}, {"age": -1}]});
//! let violations = schema.violations(&value);
//! assert_eq!(violations.len(), 1);
//! assert_eq!(violations[0].instance_path, "/items/2/age");
//! assert_eq!(violations[0].keyword, "minimum");
//!
//! let err = schema.validate(&value).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "the value does not match schema `people`: /items/2/age: -1 is less than the minimum of 0 (minimum)"
//! );
//! # Ok::<(), any_core::Error>(())
//! ```

#[cfg(feature = "schema")]
use std::sync::Arc;

#[cfg(feature = "schema")]
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
#[cfg(feature = "schema")]
use serde_json::Value;

#[cfg(feature = "schema")]
use crate::{Error, ResponseFormat, Result};

/// How many violations a [`Schema`] reports at most: past this the value is plainly not the
/// shape asked for, and a longer list only costs time.
#[cfg(feature = "schema")]
const MAX_VIOLATIONS: usize = 64;

/// One way a value fails a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Where in the value, as a JSON Pointer (`/items/2/age`; empty for the value itself).
    pub instance_path: String,
    /// The schema keyword that failed (`type`, `required`, `minimum`, `enum`, ...).
    pub keyword: String,
    /// Where that keyword is in the schema, as a JSON Pointer
    /// (`/properties/items/items/properties/age/minimum`).
    pub schema_path: String,
    /// What was expected and what was found, in words.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.instance_path.is_empty() {
            "(root)"
        } else {
            &self.instance_path
        };
        write!(f, "{at}: {} ({})", self.message, self.keyword)
    }
}

/// The message of [`Error::SchemaViolation`]: the schema's name and the first violations.
pub(crate) fn describe_violations(schema: &str, violations: &[Violation]) -> String {
    const SHOWN: usize = 3;
    let mut out = format!("the value does not match schema `{schema}`: ");
    if violations.is_empty() {
        out.push_str("no violation recorded");
    }
    for (i, v) in violations.iter().take(SHOWN).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&v.to_string());
    }
    if violations.len() > SHOWN {
        out.push_str(&format!(" (and {} more)", violations.len() - SHOWN));
    }
    out
}

/// A compiled JSON Schema: compile once, validate many values (feature `schema`).
///
/// Cheap to clone (the compiled form is shared).
#[cfg(feature = "schema")]
#[derive(Clone)]
pub struct Schema {
    name: Arc<str>,
    value: Arc<Value>,
    validator: Arc<jsonschema::Validator>,
}

#[cfg(feature = "schema")]
impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .field("schema", &self.value)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "schema")]
impl Schema {
    /// Compiles `schema`, naming it after its `title` (else `"schema"`).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the schema is not a valid JSON Schema (a keyword with a
    /// value of the wrong kind, an unresolvable `$ref`, a bad regex in `pattern`), quoting the
    /// problem.
    pub fn compile(schema: &Value) -> Result<Self> {
        let name = schema
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("schema")
            .to_owned();
        Self::compile_named(name, schema)
    }

    /// Compiles `schema` under `name` (what error messages call it).
    ///
    /// # Errors
    /// As [`Schema::compile`].
    pub fn compile_named(name: impl Into<String>, schema: &Value) -> Result<Self> {
        let name = name.into();
        if !schema.is_object() && !schema.is_boolean() {
            return Err(Error::InvalidRequest(format!(
                "schema `{name}` must be a JSON object or a boolean, found {}",
                quote(&schema.to_string())
            )));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| {
                let at = e.schema_path().as_str();
                Error::InvalidRequest(format!(
                    "schema `{name}` is not a valid JSON Schema{}: {e}",
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!(" at {at}")
                    }
                ))
            })?;
        Ok(Schema {
            name: name.into(),
            value: Arc::new(schema.clone()),
            validator: Arc::new(validator),
        })
    }

    /// The schema of the Rust type `T`, generated by `schemars` and named after the type.
    ///
    /// ```
    /// use any_core::schema::Schema;
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    /// use serde_json::json;
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Point { x: i32, y: i32 }
    ///
    /// let schema = Schema::for_type::<Point>()?;
    /// assert_eq!(schema.name(), "Point");
    /// assert!(schema.is_valid(&json!({"x": 1, "y": 2})));
    /// assert!(!schema.is_valid(&json!({"x": 1})));
    /// # Ok::<(), any_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Schema::compile`]; only a hand-written `JsonSchema` implementation that emits an
    /// invalid schema can cause one.
    pub fn for_type<T: schemars::JsonSchema>() -> Result<Self> {
        Self::compile_named(T::schema_name(), &crate::tool::schema_value::<T>())
    }

    /// The name error messages call the schema by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema as JSON.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// A strict [`ResponseFormat::JsonSchema`] asking a model for values of this schema.
    pub fn response_format(&self) -> ResponseFormat {
        ResponseFormat::JsonSchema {
            name: self.name.to_string(),
            schema: (*self.value).clone(),
            strict: true,
        }
    }

    /// Whether `value` is valid under the schema.
    pub fn is_valid(&self, value: &Value) -> bool {
        self.validator.is_valid(value)
    }

    /// Every way `value` fails the schema (empty when it is valid), at most 64.
    pub fn violations(&self, value: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(value)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                instance_path: e.instance_path().as_str().to_owned(),
                keyword: e.kind().keyword().to_owned(),
                schema_path: e.schema_path().as_str().to_owned(),
                message: shorten(&e.to_string(), 240),
            })
            .collect()
    }

    /// Checks `value` against the schema.
    ///
    /// # Errors
    /// [`Error::SchemaViolation`] with every violation.
    pub fn validate(&self, value: &Value) -> Result<()> {
        if self.is_valid(value) {
            return Ok(());
        }
        Err(Error::SchemaViolation {
            schema: self.name.to_string(),
            violations: self.violations(value),
        })
    }

    /// Parses a model's answer as JSON and validates it: the text may be wrapped as
    /// [`extract_json`] tolerates.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] quoting the text when it is not JSON;
    /// [`Error::SchemaViolation`] when it does not match.
    pub fn parse(&self, text: &str) -> Result<Value> {
        let json = extract_json(text);
        let value: Value = serde_json::from_str(json).map_err(|e| {
            Error::InvalidResponse(format!(
                "the answer for schema `{}` is not JSON ({e}): {}",
                self.name,
                quote(text)
            ))
        })?;
        self.validate(&value)?;
        Ok(value)
    }

    /// [`Schema::parse`], then deserialises the value into `T`.
    ///
    /// # Errors
    /// As [`Schema::parse`]; also [`Error::InvalidResponse`] when the value matches the
    /// schema but not `T` (a schema looser than the type).
    pub fn parse_as<T: DeserializeOwned>(&self, text: &str) -> Result<T> {
        let value = self.parse(text)?;
        serde_json::from_value(value).map_err(|e| {
            Error::InvalidResponse(format!(
                "the answer matches schema `{}` but does not deserialise into {}: {e}",
                self.name,
                std::any::type_name::<T>()
            ))
        })
    }
}

/// The JSON inside a model's answer, tolerating exactly what some providers wrap it in:
/// whitespace around it, and one Markdown code fence around the whole answer (```` ``` ````
/// or ```` ```json ````, any info string, closing fence optional at the very end).
///
/// Nothing else is removed: prose before or after the JSON stays, and parsing then fails,
/// because guessing which part of a chatty answer is "the" JSON hides real failures.
///
/// ```
/// use any_core::schema::extract_json;
///
/// assert_eq!(extract_json("  {\"a\": 1}\n"), "{\"a\": 1}");
/// assert_eq!(extract_json("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
/// assert_eq!(extract_json("```\n[1, 2]\n```\n"), "[1, 2]");
/// assert_eq!(extract_json("Sure! {\"a\": 1}"), "Sure! {\"a\": 1}");
/// ```
pub fn extract_json(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    // The info string (`json`, `JSON`, ...) runs to the end of the fence's line.
    let Some(newline) = rest.find('\n') else {
        return t;
    };
    let info = rest[..newline].trim();
    if info.contains(char::is_whitespace) || info.contains('`') {
        return t;
    }
    let body = &rest[newline + 1..];
    body.strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(feature = "schema")]
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `text` in backticks, cut to a readable length.
#[cfg(feature = "schema")]
fn quote(text: &str) -> String {
    format!("`{}`", shorten(text, 200))
}

#[cfg(all(test, feature = "schema"))]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_name_path_keyword_and_expectation() {
        let schema = Schema::compile_named(
            "order",
            &json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 10},
                    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
                },
                "required": ["id", "qty"],
                "additionalProperties": false
            }),
        )
        .unwrap();
        let v = json!({"id": "abc", "qty": 11, "tags": ["a", "c"], "extra": true});
        let found = schema.violations(&v);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|v| (v.instance_path.as_str(), v.keyword.as_str()))
            .collect();
        for expected in [
            ("/id", "pattern"),
            ("/qty", "maximum"),
            ("/tags/1", "enum"),
            ("", "additionalProperties"),
        ] {
            assert!(pairs.contains(&expected), "{expected:?} not in {pairs:?}");
        }
        let qty = found.iter().find(|v| v.keyword == "maximum").unwrap();
        assert_eq!(qty.schema_path, "/properties/qty/maximum");
        assert!(qty.message.contains("10"), "{}", qty.message);

        let err = schema.validate(&v).unwrap_err();
        let Error::SchemaViolation { schema, violations } = &err else {
            panic!("expected a schema violation, got {err:?}");
        };
        assert_eq!(schema, "order");
        assert_eq!(violations.len(), 4);
        assert!(err.to_string().ends_with("(and 1 more)"), "{err}");

        let missing = schema_required_message();
        assert!(
            missing.contains("\"qty\" is a required property"),
            "{missing}"
        );
    }

    fn schema_required_message() -> String {
        let s = Schema::compile(&json!({"required": ["qty"]})).unwrap();
        s.validate(&json!({})).unwrap_err().to_string()
    }

    #[test]
    fn drafts_refs_and_formats() {
        // draft-07 with `definitions`, as older generators write it.
        let d7 = Schema::compile(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
            "type": "array",
            "items": {"$ref": "#/definitions/pos"}
        }))
        .unwrap();
        assert!(d7.is_valid(&json!([1, 2])));
        assert_eq!(d7.violations(&json!([1, 0]))[0].instance_path, "/1");

        // 2020-12 `$defs` and `prefixItems`, as schemars writes them.
        let d2020 = Schema::compile(&json!({
            "$defs": {"name": {"type": "string", "minLength": 1}},
            "type": "array",
            "prefixItems": [{"$ref": "#/$defs/name"}, {"type": "integer"}],
            "items": false
        }))
        .unwrap();
        assert!(d2020.is_valid(&json!(["a", 1])));
        assert!(!d2020.is_valid(&json!(["a", 1, 2])));
        assert!(!d2020.is_valid(&json!(["", 1])));

        let email = Schema::compile(&json!({"type": "string", "format": "email"})).unwrap();
        assert!(email.is_valid(&json!("a@example.org")));
        assert_eq!(email.violations(&json!("nope"))[0].keyword, "format");
    }

    #[test]
    fn bad_schemas_are_invalid_requests_that_say_why() {
        let e = Schema::compile(&json!({"type": "integr"})).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
        assert!(e.to_string().contains("integr"), "{e}");
        let e = Schema::compile(&json!({"$ref": "other.json#/x"})).unwrap_err();
        assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
        let e = Schema::compile(&json!([1])).unwrap_err();
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
        assert!(Schema::compile(&json!(true)).unwrap().is_valid(&json!(3)));
    }

    #[test]
    fn fences_and_whitespace_are_tolerated_and_nothing_else() {
        let s = Schema::compile(&json!({"type": "object"})).unwrap();
        assert_eq!(
            s.parse("\n ```JSON\n{\"a\":1}\n```  ").unwrap(),
            json!({"a": 1})
        );
        assert_eq!(s.parse("```json\n{}").unwrap(), json!({}));
        let e = s.parse("Here you go: {}").unwrap_err();
        assert!(matches!(e, Error::InvalidResponse(_)), "{e:?}");
        assert!(e.to_string().contains("`Here you go: {}`"), "{e}");
        // A fence with prose on its line is not a fence.
        assert_eq!(extract_json("``` not a fence\n{}"), "``` not a fence\n{}");
        let e = s.parse("[1]").unwrap_err();
        assert!(matches!(e, Error::SchemaViolation { .. }), "{e:?}");
    }

    #[test]
    fn parse_as_reports_a_schema_looser_than_the_type() {
        let s = Schema::compile(&json!({"type": "object"})).unwrap();
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            x: u8,
        }
        let e = s.parse_as::<Needs>("{}").unwrap_err();
        assert!(e.to_string().contains("does not deserialise"), "{e}");
    }
}
