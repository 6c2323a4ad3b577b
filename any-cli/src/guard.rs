//! `any guard`: scan texts with the built-in guardrails, one JSON verdict per line, each
//! saying what a guard layer with the same policies would do with the text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use any_core::{Message, Verdict};
use any_guard::{
    Guardrail, InjectionClassifier, InvisibleText, Pii, Policy, PromptInjection, Secrets, Subject,
};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

/// Which side of a model the texts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Stage {
    /// Texts sent to a model (checked as user messages).
    Input,
    /// Texts a model produced.
    Output,
}

/// `any guard`.
#[derive(Debug, Args)]
pub(crate) struct GuardArgs {
    /// Comma-separated guardrails: pii, secrets, injection, classifier, invisible; each
    /// with its default policy (pii and secrets redact, the others block) or the one named
    /// after a colon: `pii:block`, `secrets:warn`, `injection:monitor`, `invisible:redact`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pii,secrets,injection,invisible"
    )]
    guards: Vec<String>,
    /// Whether the texts are model inputs or outputs.
    #[arg(long, value_enum, default_value_t = Stage::Input)]
    stage: Stage,
    /// Read a JSONL file of `{"text": ...}` objects instead of one text per line of standard
    /// input.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
}

/// A guardrail of `--guards` and the policy it is applied with: `name` or `name:policy`.
fn guard_with_policy(spec: &str) -> Result<(Box<dyn Guardrail>, Policy)> {
    let (name, policy) = spec.split_once(':').unwrap_or((spec, ""));
    let guardrail = guardrail(name)?;
    let policy = match policy.trim() {
        "" => guardrail.default_policy(),
        "block" => Policy::Block,
        "redact" => Policy::Redact,
        "warn" => Policy::Warn,
        "monitor" => Policy::Monitor,
        other => bail!("unknown policy `{other}` in `{spec}`; known: block, redact, warn, monitor"),
    };
    Ok((guardrail, policy))
}

/// What a guard layer does with a text given this guardrail's verdict under `policy`:
/// `"pass"`, `"warn"`, `"redact"` or `"block"` (a failing verdict with nothing to redact
/// blocks, as in the layer).
fn action(verdict: &Verdict, policy: Policy) -> &'static str {
    match policy {
        _ if verdict.valid => "pass",
        Policy::Block => "block",
        Policy::Redact if verdict.spans.is_empty() => "block",
        Policy::Redact => "redact",
        Policy::Warn => "warn",
        Policy::Monitor => "pass",
    }
}

/// The policy's name in the output.
fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Block => "block",
        Policy::Redact => "redact",
        Policy::Warn => "warn",
        Policy::Monitor => "monitor",
    }
}

pub(crate) fn guardrail(name: &str) -> Result<Box<dyn Guardrail>> {
    Ok(match name.trim() {
        "pii" => Box::new(Pii::default()),
        "secrets" => Box::new(Secrets::default()),
        "injection" | "prompt_injection" => Box::new(PromptInjection::default()),
        "classifier" | "injection_classifier" => Box::new(InjectionClassifier::default()),
        "invisible" | "invisible_text" => Box::new(InvisibleText),
        other => bail!(
            "unknown guardrail `{other}`; known: pii, secrets, injection, classifier, invisible"
        ),
    })
}

/// One verdict for all the guardrails: valid when every one passes, the highest score, the
/// failing categories, every span once (each naming the guardrail that found it); each
/// guardrail's own verdict, without its spans, with its policy and action, under
/// `"verdicts"`. `"action"` is what a guard layer does with the text (the strictest of the
/// guardrails' actions) and `"redacted"` the text it passes on when that is `"redact"`.
fn combine(
    text: &str,
    verdicts: Vec<Verdict>,
    guards: &[(Box<dyn Guardrail>, Policy)],
) -> Result<serde_json::Value> {
    let failing: Vec<&Verdict> = verdicts.iter().filter(|v| !v.valid).collect();
    let actions: Vec<&str> = verdicts
        .iter()
        .zip(guards)
        .map(|(v, (_, policy))| action(v, *policy))
        .collect();
    let overall = ["block", "redact", "warn"]
        .into_iter()
        .find(|a| actions.contains(a))
        .unwrap_or("pass");
    let redacted = (overall == "redact").then(|| {
        let mut replacements: HashMap<(usize, usize), Cow<'static, str>> = HashMap::new();
        let mut spans = Vec::new();
        for ((v, (guardrail, _)), a) in verdicts.iter().zip(guards).zip(&actions) {
            if *a == "redact" {
                for span in &v.spans {
                    replacements
                        .entry((span.start, span.end))
                        .or_insert_with(|| guardrail.replacement(span));
                    spans.push(span.clone());
                }
            }
        }
        any_guard::redact(text, &spans, |s| {
            replacements
                .get(&(s.start, s.end))
                .cloned()
                .unwrap_or(Cow::Borrowed(""))
        })
    });
    let mut spans = Vec::new();
    for v in &verdicts {
        for span in &v.spans {
            let mut span = serde_json::to_value(span)?;
            span["guardrail"] = v.guardrail.clone().into();
            spans.push(span);
        }
    }
    spans.sort_by_key(|s| (s["start"].as_u64(), s["end"].as_u64()));
    let own: Vec<serde_json::Value> = verdicts
        .iter()
        .zip(guards)
        .zip(&actions)
        .map(|((v, (_, policy)), action)| {
            let mut own = serde_json::to_value(v)?;
            if let Some(map) = own.as_object_mut() {
                map.remove("spans");
                map.insert("score".into(), score(v.score));
                map.insert("policy".into(), policy_name(*policy).into());
                map.insert("action".into(), (*action).into());
            }
            Ok(own)
        })
        .collect::<Result<_>>()?;
    Ok(serde_json::json!({
        "valid": failing.is_empty(),
        "action": overall,
        "redacted": redacted,
        "score": score(verdicts.iter().map(|v| v.score).fold(0.0f32, f32::max)),
        "category": joined(failing.iter().filter_map(|v| v.category.as_deref()), ","),
        "explanation": joined(failing.iter().filter_map(|v| v.explanation.as_deref()), "; "),
        "spans": spans,
        "verdicts": own,
    }))
}

/// A score as JSON: the f32's shortest decimal (0.6, not the 0.6000000238418579 a plain
/// widening to f64 gives).
fn score(value: f32) -> serde_json::Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// The parts joined, or `null` when there are none.
fn joined<'a>(parts: impl Iterator<Item = &'a str>, sep: &str) -> serde_json::Value {
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        serde_json::Value::Null
    } else {
        parts.join(sep).into()
    }
}

/// The most bytes one text (one line) may have; a longer one is an error naming its line,
/// so that one huge line cannot take the memory or the time of the whole run.
pub(crate) const MAX_TEXT_BYTES: usize = 16 << 20;

/// The lines of `reader`, numbered from 1, each at most [`MAX_TEXT_BYTES`] and valid UTF-8
/// (an error naming the line otherwise).
fn lines(mut reader: impl BufRead) -> impl Iterator<Item = Result<(usize, String)>> {
    let mut n = 0;
    std::iter::from_fn(move || {
        n += 1;
        let mut buf = Vec::new();
        let limit = MAX_TEXT_BYTES as u64 + 1;
        match Read::take(&mut reader, limit).read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Err(e) => Some(Err(
                anyhow::Error::new(e).context(format!("reading line {n}"))
            )),
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                } else if buf.len() > MAX_TEXT_BYTES {
                    return Some(Err(anyhow::anyhow!(
                        "line {n} is longer than the limit of {MAX_TEXT_BYTES} bytes per text"
                    )));
                }
                Some(String::from_utf8(buf).map(|text| (n, text)).map_err(|e| {
                    anyhow::anyhow!(
                        "line {n} is not valid UTF-8 (at byte {})",
                        e.utf8_error().valid_up_to()
                    )
                }))
            }
        }
    })
}

pub(crate) fn run(args: GuardArgs) -> Result<()> {
    let guards: Vec<(Box<dyn Guardrail>, Policy)> = args
        .guards
        .iter()
        .map(|g| guard_with_policy(g))
        .collect::<Result<_>>()?;
    let texts: Box<dyn Iterator<Item = Result<String>>> = match &args.jsonl {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            Box::new(lines(std::io::BufReader::new(file)).filter_map(|line| {
                let (n, line) = match line {
                    Ok((_, l)) if l.trim().is_empty() => return None,
                    Ok(numbered) => numbered,
                    Err(e) => return Some(Err(e)),
                };
                Some(
                    serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
                        .with_context(|| {
                            format!("line {n}: expected a JSON object with a string \"text\"")
                        }),
                )
            }))
        }
        None => Box::new(lines(std::io::stdin().lock()).map(|l| l.map(|(_, text)| text))),
    };
    let mut out = std::io::stdout().lock();
    for text in texts {
        let text = text?;
        let messages = [Message::user(text.as_str())];
        let subject = match args.stage {
            Stage::Input => Subject::Input {
                messages: &messages,
                index: 0,
            },
            Stage::Output => Subject::text(&text),
        };
        let verdicts = guards.iter().map(|(g, _)| g.check_now(&subject)).collect();
        writeln!(out, "{}", combine(&text, verdicts, &guards)?)?;
    }
    Ok(())
}
