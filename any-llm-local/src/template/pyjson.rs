//! `tojson` as HF transformers defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=…, sort_keys=…)`, so `", "` and `": "` between
//! items and no HTML escaping (minijinja's own `tojson` escapes `<` and `>`, which would put
//! `\u003c` into prompts the model never saw in training).

use std::fmt::Write;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// The `tojson` filter: `value | tojson`, `value | tojson(indent=2)`, `sort_keys=true`.
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    let style = Style {
        indent,
        sort_keys: sort_keys.unwrap_or(false),
    };
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

struct Style {
    indent: Option<usize>,
    sort_keys: bool,
}

impl Style {
    /// Starts item `i` of a container at nesting `depth`.
    fn item(&self, out: &mut String, i: usize, depth: usize) {
        match self.indent {
            Some(n) => {
                if i > 0 {
                    out.push(',');
                }
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', n * depth));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
    }

    fn close(&self, out: &mut String, depth: usize) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }
}

fn write_value(out: &mut String, v: &Value, style: &Style, depth: usize) -> Result<(), Error> {
    if depth > 256 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v),
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                style.item(out, i, depth + 1);
                match k.as_str() {
                    Some(s) => write_str(out, s),
                    // Python turns non-string keys into strings.
                    None => write_str(out, &k.to_string()),
                }
                out.push_str(": ");
                write_value(out, &v.get_item(k)?, style, depth + 1)?;
            }
            style.close(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                style.item(out, i, depth + 1);
                write_value(out, item, style, depth + 1)?;
            }
            style.close(out, depth);
            out.push(']');
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {} value is not JSON serializable", v.kind()),
            ));
        }
    }
    Ok(())
}

fn write_number(out: &mut String, v: &Value) {
    if v.is_integer() {
        // Integers wider than i64 (u64, i128) print through Display.
        let _ = write!(out, "{v}");
        return;
    }
    let Ok(f) = f64::try_from(v.clone()) else {
        let _ = write!(out, "{v}");
        return;
    };
    if !f.is_finite() {
        // Python writes the non-standard tokens NaN, Infinity and -Infinity.
        out.push_str(if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
    } else if f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-4) {
        // Python's repr: 1e+16, 1.5e-05.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
    } else if f.fract() == 0.0 {
        let _ = write!(out, "{f:.1}");
    } else {
        let _ = write!(out, "{f}");
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(json: &str, indent: Option<usize>) -> String {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        let mut out = String::new();
        write_value(
            &mut out,
            &Value::from_serialize(&v),
            &Style {
                indent,
                sort_keys: false,
            },
            0,
        )
        .expect("serializable");
        out
    }

    #[test]
    fn writes_like_python_json_dumps() {
        assert_eq!(
            dumps(r#"{"a": [1, 2.0, 0.5, null, true], "b": "<é\n>"}"#, None),
            r#"{"a": [1, 2.0, 0.5, null, true], "b": "<é\n>"}"#
        );
        assert_eq!(
            dumps(r#"{"a": [1], "b": {}}"#, Some(2)),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
        );
        assert_eq!(dumps("1e20", None), "1e+20");
        assert_eq!(dumps("0.00001", None), "1e-05");
    }
}
