//! [`Filter`]: which records a list or a search considers, by metadata, role and time.

use any_core::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MemoryRecord;

/// A condition on a record's metadata, role or times. Combine with [`Filter::and`],
/// [`Filter::or`] and [`Filter::not`].
///
/// Metadata keys name top-level keys of the record's metadata object. JSON values compare
/// as JSON, except that numbers compare by value (`1` equals `1.0`). A key the record does
/// not have satisfies no condition on it (but does satisfy its `not`).
///
/// ```
/// use any_memory::Filter;
/// use serde_json::json;
///
/// let f = Filter::eq("kind", "fact")
///     .and(Filter::is_in("topic", ["food", "health"]))
///     .and(Filter::range("importance", Some(0.5), None))
///     .or(Filter::created_between(Some(0), Some(1_000)));
/// let json = serde_json::to_value(&f).unwrap();
/// assert_eq!(serde_json::from_value::<Filter>(json).unwrap(), f);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `metadata[key] == value`.
    Eq {
        /// The metadata key.
        key: String,
        /// The value it must equal.
        value: Value,
    },
    /// `metadata[key]` equals one of `values`.
    In {
        /// The metadata key.
        key: String,
        /// The values it may equal.
        values: Vec<Value>,
    },
    /// `metadata[key]` is a number with `min <= n <= max` (an absent bound is no bound).
    Range {
        /// The metadata key.
        key: String,
        /// The least value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// The greatest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// The record was said by this role.
    Role(Role),
    /// `from <= created_at < until` (milliseconds since the Unix epoch; an absent bound is
    /// no bound).
    Created {
        /// The earliest time allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<i64>,
        /// The first time no longer allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// `from <= updated_at < until`.
    Updated {
        /// The earliest time allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<i64>,
        /// The first time no longer allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// Every condition holds (an empty list holds).
    And(Vec<Filter>),
    /// Some condition holds (an empty list does not).
    Or(Vec<Filter>),
    /// The condition does not hold.
    Not(Box<Filter>),
}

impl Filter {
    /// `metadata[key] == value`.
    pub fn eq(key: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Eq {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `metadata[key]` is one of `values`.
    pub fn is_in<V: Into<Value>>(
        key: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Filter::In {
            key: key.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// `metadata[key]` is a number in `[min, max]`.
    pub fn range(key: impl Into<String>, min: Option<f64>, max: Option<f64>) -> Self {
        Filter::Range {
            key: key.into(),
            min,
            max,
        }
    }

    /// Records said by `role`.
    pub fn role(role: Role) -> Self {
        Filter::Role(role)
    }

    /// Records created in `[from, until)`.
    pub fn created_between(from: Option<i64>, until: Option<i64>) -> Self {
        Filter::Created { from, until }
    }

    /// Records updated in `[from, until)`.
    pub fn updated_between(from: Option<i64>, until: Option<i64>) -> Self {
        Filter::Updated { from, until }
    }

    /// Both this and `other` hold.
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }

    /// This or `other` holds.
    pub fn or(self, other: Filter) -> Self {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            first => Filter::Or(vec![first, other]),
        }
    }

    /// This does not hold.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Filter::Not(Box::new(self))
    }

    /// Whether `record` satisfies the filter: the meaning every store implements.
    pub fn matches(&self, record: &MemoryRecord) -> bool {
        let within = |t: i64, from: &Option<i64>, until: &Option<i64>| {
            from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u)
        };
        match self {
            Filter::Eq { key, value } => record
                .metadata
                .get(key)
                .is_some_and(|v| json_equal(v, value)),
            Filter::In { key, values } => record
                .metadata
                .get(key)
                .is_some_and(|v| values.iter().any(|w| json_equal(v, w))),
            Filter::Range { key, min, max } => record
                .metadata
                .get(key)
                .and_then(Value::as_f64)
                .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
            Filter::Role(role) => record.role == *role,
            Filter::Created { from, until } => within(record.created_at, from, until),
            Filter::Updated { from, until } => within(record.updated_at, from, until),
            Filter::And(all) => all.iter().all(|f| f.matches(record)),
            Filter::Or(any) => any.iter().any(|f| f.matches(record)),
            Filter::Not(f) => !f.matches(record),
        }
    }
}

/// JSON equality with numbers compared by value.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Whether a record passes an optional filter.
pub(crate) fn passes(filter: Option<&Filter>, record: &MemoryRecord) -> bool {
    filter.is_none_or(|f| f.matches(record))
}
