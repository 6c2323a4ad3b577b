//! A [`Filter`] as a SQL condition, so that the engine leaves out what the filter refuses
//! before any row reaches Rust.
//!
//! The condition is a *prefilter*: every row the filter accepts passes it, and the stores
//! still run [`Filter::matches`] on each row they read. Where SQL can say exactly what the
//! filter says (strings, booleans, nulls, roles, times) the condition is marked exact, and a
//! store may then also push its `LIMIT` to the engine. Numbers are compared within a
//! relative 1e-9 (the engine's and `serde_json`'s readings of a decimal may differ in the
//! last bit, and a number past 2^53 compares by its nearest double in Rust), so numeric
//! conditions are never exact; nor is anything SQL cannot say safely (an array or object
//! value, a metadata key SQLite's JSON paths cannot quote, a non-finite bound), which is left
//! to Rust alone.
//!
//! Every condition is a plain boolean, never SQL's NULL, so `NOT` means what
//! [`Filter::Not`] means: a record without the key satisfies the `not` of any condition on it.

use serde_json::Value;

use crate::Filter;

/// The SQL dialect a condition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite, metadata as JSON text in `m.metadata`.
    Sqlite,
    /// PostgreSQL, metadata as `JSONB` in `m.metadata`.
    Postgres,
}

/// A parameter of a pushed condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    Real(f64),
    Int(i64),
}

/// A pushed condition: SQL to `AND` onto a query's `WHERE`, and whether it is exactly the
/// filter (otherwise it accepts more).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pushed {
    pub sql: String,
    pub exact: bool,
}

/// `filter` as a condition in `dialect`, and its parameters, numbered from `first` (`?first`
/// in SQLite, `$first` in PostgreSQL). `None` when nothing of the filter can be said in SQL
/// (the store then reads every row of the scope, as without pushdown).
pub(crate) fn pushdown(
    filter: &Filter,
    dialect: Dialect,
    first: usize,
) -> Option<(Pushed, Vec<Arg>)> {
    let mut w = Writer {
        dialect,
        first,
        args: Vec::new(),
    };
    let p = w.filter(filter)?;
    Some((p, w.args))
}

/// `filter`, as far as SQL can say it, `AND`-ed onto `out`, its parameters handed to `push`
/// (numbered after the `bound` already there); whether the SQL says all of it (true without a
/// filter). What the two stores share; each turns an [`Arg`] into its own driver's parameter.
pub(crate) fn append(
    filter: Option<&Filter>,
    dialect: Dialect,
    bound: usize,
    out: &mut String,
    mut push: impl FnMut(Arg),
) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let Some((pushed, params)) = pushdown(filter, dialect, bound + 1) else {
        return false;
    };
    params.into_iter().for_each(&mut push);
    out.push_str(" AND ");
    out.push_str(&pushed.sql);
    pushed.exact
}

struct Writer {
    dialect: Dialect,
    first: usize,
    args: Vec<Arg>,
}

/// How far apart two numbers may be and still be pushed as possibly equal.
const RELATIVE: f64 = 1e-9;

/// `[lo, hi]` widened by [`RELATIVE`]; an absent side, or one no longer finite once widened,
/// is no bound (engines differ on infinite parameters: PostgreSQL before 14 cannot cast an
/// infinite float to numeric).
fn widen(lo: Option<f64>, hi: Option<f64>) -> (Option<f64>, Option<f64>) {
    (
        lo.map(|x| x - x.abs() * RELATIVE - f64::MIN_POSITIVE)
            .filter(|x| x.is_finite()),
        hi.map(|x| x + x.abs() * RELATIVE + f64::MIN_POSITIVE)
            .filter(|x| x.is_finite()),
    )
}

impl Writer {
    /// Takes a parameter; returns the placeholder that stands for it.
    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        let n = self.first + self.args.len() - 1;
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `filter` as SQL; a part that cannot be said takes back the parameters it bound.
    fn filter(&mut self, filter: &Filter) -> Option<Pushed> {
        let mark = self.args.len();
        let pushed = self.condition(filter);
        if pushed.is_none() {
            self.args.truncate(mark);
        }
        pushed
    }

    fn condition(&mut self, filter: &Filter) -> Option<Pushed> {
        match filter {
            Filter::Eq { key, value } => self.any_of(key, std::slice::from_ref(value)),
            Filter::In { key, values } => self.any_of(key, values),
            Filter::Range { key, min, max } => {
                if min.is_some_and(|x| !x.is_finite()) || max.is_some_and(|x| !x.is_finite()) {
                    return None;
                }
                let (ty, v) = self.key(key)?;
                let (lo, hi) = widen(*min, *max);
                let sql = format!("COALESCE({}, FALSE)", self.number_between(&ty, &v, lo, hi));
                Some(Pushed { sql, exact: false })
            }
            Filter::Role(role) => {
                let p = self.bind(Arg::Text(role.as_str().to_owned()));
                Some(self.exact(format!("m.role = {}", self.text(&p))))
            }
            Filter::Created { from, until } => Some(self.times("m.created_at", *from, *until)),
            Filter::Updated { from, until } => Some(self.times("m.updated_at", *from, *until)),
            Filter::And(all) => {
                let mut exact = true;
                let mut parts = Vec::new();
                for f in all {
                    match self.filter(f) {
                        Some(p) => {
                            exact &= p.exact;
                            parts.push(p.sql);
                        }
                        None => exact = false,
                    }
                }
                match parts.len() {
                    0 if all.is_empty() => Some(self.exact("TRUE".into())),
                    0 => None,
                    _ => Some(Pushed {
                        sql: format!("({})", parts.join(" AND ")),
                        exact,
                    }),
                }
            }
            Filter::Or(any) => {
                if any.is_empty() {
                    return Some(self.exact("FALSE".into()));
                }
                let mut exact = true;
                let mut parts = Vec::new();
                for f in any {
                    // One alternative SQL cannot say could accept any row.
                    let p = self.filter(f)?;
                    exact &= p.exact;
                    parts.push(p.sql);
                }
                Some(Pushed {
                    sql: format!("({})", parts.join(" OR ")),
                    exact,
                })
            }
            // The negation of a wider condition would be narrower: only an exact one negates.
            Filter::Not(f) => match self.filter(f) {
                Some(p) if p.exact => Some(self.exact(format!("NOT {}", p.sql))),
                _ => None,
            },
        }
    }

    fn exact(&self, sql: String) -> Pushed {
        Pushed {
            sql: format!("({sql})"),
            exact: true,
        }
    }

    /// A text parameter's placeholder, typed where the dialect needs it.
    fn text(&self, placeholder: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => placeholder.to_owned(),
            Dialect::Postgres => format!("{placeholder}::text"),
        }
    }

    fn times(&mut self, column: &str, from: Option<i64>, until: Option<i64>) -> Pushed {
        let mut parts = Vec::new();
        let cast = if self.dialect == Dialect::Postgres {
            "::int8"
        } else {
            ""
        };
        if let Some(f) = from {
            let p = self.bind(Arg::Int(f));
            parts.push(format!("{column} >= {p}{cast}"));
        }
        if let Some(u) = until {
            let p = self.bind(Arg::Int(u));
            parts.push(format!("{column} < {p}{cast}"));
        }
        if parts.is_empty() {
            parts.push("TRUE".into());
        }
        self.exact(parts.join(" AND "))
    }

    /// The JSON value at a metadata key: `(type, value)` expressions. `None` for a key SQLite's
    /// JSON paths cannot name.
    fn key(&mut self, key: &str) -> Option<(String, String)> {
        match self.dialect {
            Dialect::Sqlite => {
                if key.is_empty() || key.contains(['"', '\\']) {
                    return None;
                }
                let p = self.bind(Arg::Text(format!("$.\"{key}\"")));
                Some((
                    format!("json_type(m.metadata, {p})"),
                    format!("json_extract(m.metadata, {p})"),
                ))
            }
            Dialect::Postgres => {
                let p = self.bind(Arg::Text(key.to_owned()));
                let v = format!("(m.metadata -> {p}::text)");
                Some((format!("jsonb_typeof{v}"), v))
            }
        }
    }

    /// The JSON value `v` (of JSON type `ty`) is a number in `[lo, hi]` (an absent bound is no
    /// bound).
    fn number_between(&mut self, ty: &str, v: &str, lo: Option<f64>, hi: Option<f64>) -> String {
        let mut bounds = Vec::new();
        for (bound, op) in [(lo, ">="), (hi, "<=")] {
            if let Some(x) = bound {
                let p = self.bind(Arg::Real(x));
                bounds.push(match self.dialect {
                    Dialect::Sqlite => format!("{v} {op} {p}"),
                    // Through numeric, which holds any JSON number (a cast to float8 can
                    // overflow).
                    Dialect::Postgres => {
                        format!("({v} #>> '{{}}')::numeric {op} {p}::float8::numeric")
                    }
                });
            }
        }
        let bounds = if bounds.is_empty() {
            "TRUE".to_owned()
        } else {
            bounds.join(" AND ")
        };
        match self.dialect {
            Dialect::Sqlite => format!("({ty} IN ('integer', 'real') AND {bounds})"),
            Dialect::Postgres => {
                format!("(CASE WHEN {ty} = 'number' THEN {bounds} ELSE FALSE END)")
            }
        }
    }

    /// The value at `key` equals one of `values`.
    fn any_of(&mut self, key: &str, values: &[Value]) -> Option<Pushed> {
        if values.is_empty() {
            return Some(self.exact("FALSE".into()));
        }
        if values
            .iter()
            .any(|v| matches!(v, Value::Array(_) | Value::Object(_)))
        {
            return None;
        }
        let (ty, v) = self.key(key)?;
        let mut exact = true;
        let mut parts = Vec::new();
        for value in values {
            parts.push(match (self.dialect, value) {
                (_, Value::Number(n)) => {
                    exact = false;
                    let x = n.as_f64()?;
                    let (lo, hi) = widen(Some(x), Some(x));
                    self.number_between(&ty, &v, lo, hi)
                }
                (Dialect::Sqlite, Value::String(s)) => {
                    let p = self.bind(Arg::Text(s.clone()));
                    format!("({ty} = 'text' AND {v} = {p})")
                }
                (Dialect::Sqlite, Value::Bool(b)) => format!("{ty} = '{b}'"),
                (Dialect::Sqlite, Value::Null) => format!("{ty} = 'null'"),
                // JSONB compares strings, booleans and null exactly.
                (Dialect::Postgres, other) => {
                    let p = self.bind(Arg::Text(other.to_string()));
                    format!("{v} = {p}::text::jsonb")
                }
                (_, Value::Array(_) | Value::Object(_)) => unreachable!("refused above"),
            });
        }
        let sql = format!("COALESCE({}, FALSE)", parts.join(" OR "));
        Some(if exact {
            self.exact(sql)
        } else {
            Pushed {
                sql: format!("({sql})"),
                exact,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sql(f: &Filter, dialect: Dialect) -> (Option<Pushed>, Vec<Arg>) {
        match pushdown(f, dialect, 1) {
            Some((p, args)) => (Some(p), args),
            None => (None, Vec::new()),
        }
    }

    #[test]
    fn exactness_follows_what_sql_can_say() {
        let exact = |f: &Filter| sql(f, Dialect::Sqlite).0.map(|p| p.exact);
        assert_eq!(exact(&Filter::eq("kind", "fact")), Some(true));
        assert_eq!(exact(&Filter::eq("n", 1)), Some(false));
        assert_eq!(exact(&Filter::eq("tags", json!(["a"]))), None);
        assert_eq!(exact(&Filter::eq("a\"b", "x")), None);
        assert_eq!(exact(&Filter::eq("n", 1).not()), None);
        assert_eq!(exact(&Filter::eq("kind", "fact").not()), Some(true));
        // One unsayable alternative makes the whole `or` unsayable; an `and` keeps the rest.
        let odd = Filter::eq("tags", json!({"a": 1}));
        assert_eq!(exact(&Filter::eq("k", "v").or(odd.clone())), None);
        assert_eq!(exact(&Filter::eq("k", "v").and(odd)), Some(false));
        assert_eq!(exact(&Filter::And(vec![])), Some(true));
        assert_eq!(exact(&Filter::Or(vec![])), Some(true));
        assert_eq!(exact(&Filter::range("n", Some(f64::NAN), None)), None);
    }

    #[test]
    fn values_travel_as_parameters() {
        let f = Filter::eq("it's", "'; DROP TABLE memories; --");
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (p, args) = sql(&f, dialect);
            let p = p.unwrap();
            assert!(!p.sql.contains("DROP"), "{}", p.sql);
            assert!(!p.sql.contains("it's"), "{}", p.sql);
            assert_eq!(args.len(), 2);
        }
    }

    #[test]
    fn open_and_huge_bounds_bind_no_infinity() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (p, args) = sql(&Filter::range("n", Some(1.0), None), dialect);
            assert!(p.is_some());
            assert_eq!(args.len(), 2, "the key and the one bound: {args:?}");
            let (_, args) = sql(&Filter::eq("n", f64::MAX), dialect);
            assert!(
                args.iter()
                    .all(|a| !matches!(a, Arg::Real(x) if !x.is_finite())),
                "{args:?}"
            );
        }
    }

    #[test]
    fn what_is_left_to_rust_takes_back_its_parameters() {
        // The `or` binds its first alternative's key and value before meeting one it cannot
        // say; the `not` of a numeric (inexact) condition is dropped too.
        let odd = Filter::eq("k", "v").or(Filter::eq("tags", json!([1])));
        let f = Filter::eq("a", "x")
            .and(odd)
            .and(Filter::eq("n", 2).not())
            .and(Filter::eq("b", "y"));
        let (p, args) = sql(&f, Dialect::Postgres);
        let p = p.unwrap();
        assert!(!p.exact);
        assert_eq!(
            args,
            [
                Arg::Text("a".into()),
                Arg::Text("\"x\"".into()),
                Arg::Text("b".into()),
                Arg::Text("\"y\"".into())
            ]
        );
        assert!(
            p.sql.contains("$3") && p.sql.contains("$4") && !p.sql.contains("$5"),
            "{}",
            p.sql
        );
    }
}
