//! [`Metric`]: the trait, and the built-in metrics.

use std::time::Duration;

use any_core::Usage;

use crate::text;
use crate::{Case, EvalError, Result};

/// A boxed future, as the metric trait returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a service produced for one case, and how fast.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Output {
    /// The answer's text.
    pub text: String,
    /// From sending the request to the end of the stream.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// From sending the request to the first text.
    #[serde(default, with = "millis_opt", skip_serializing_if = "Option::is_none")]
    pub ttft: Option<Duration>,
    /// Token counts, where the service reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why there is no answer: the service's error after the retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the output came from the cache (its times are the first run's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

mod millis {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let ms: f64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_secs_f64(ms.max(0.0) / 1e3))
    }
}

mod millis_opt {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1e3)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let ms: Option<f64> = serde::Deserialize::deserialize(d)?;
        Ok(ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1e3)))
    }
}

/// One metric's verdict on one case.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// The value (for pass/fail metrics 1 or 0).
    pub value: f64,
    /// For pass/fail metrics, the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    /// Why, where the metric says (a judge's reasoning, a schema violation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The numbers behind the value, for a reader or a script (a document's log-likelihood
    /// and counts; a judge's score distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Score {
    /// A plain value.
    pub fn value(value: f64) -> Self {
        Score {
            value,
            pass: None,
            reason: None,
            detail: None,
        }
    }

    /// A pass or a fail (1 or 0).
    pub fn pass(pass: bool) -> Self {
        Score {
            value: f64::from(u8::from(pass)),
            pass: Some(pass),
            reason: None,
            detail: None,
        }
    }

    /// With a reason.
    #[must_use]
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// With the numbers behind the value.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// A metric: scores one case's output. Implement it for your own; the runner calls it once
/// per case that has an output (cases whose service call failed are counted as errors, not
/// scored).
///
/// ```
/// use any_eval::{BoxFuture, Case, Metric, Output, Score};
///
/// /// Passes answers of at most `max` words.
/// struct Brief { max: usize }
///
/// impl Metric for Brief {
///     fn name(&self) -> String { format!("brief<={}", self.max) }
///     fn score<'a>(&'a self, _case: &'a Case, output: &'a Output) -> BoxFuture<'a, any_eval::Result<Score>> {
///         let words = output.text.split_whitespace().count();
///         Box::pin(async move { Ok(Score::pass(words <= self.max)) })
///     }
/// }
/// ```
pub trait Metric: Send + Sync {
    /// The column name in reports.
    fn name(&self) -> String;

    /// Scores `output` for `case`.
    fn score<'a>(&'a self, case: &'a Case, output: &'a Output) -> BoxFuture<'a, Result<Score>>;

    /// The dataset-level value, when it is not the mean of the cases' (corpus BLEU adds up
    /// statistics first). `None` (the default) means the mean.
    fn aggregate(&self, _scored: &[(&Case, &Output)]) -> Option<f64> {
        None
    }
}

fn needs_expected(name: &str, case: &Case) -> Result<()> {
    if case.expected.is_empty() {
        return Err(EvalError::Metric {
            metric: name.to_owned(),
            message: format!(
                "case `{}` has no `expected` answer to compare with",
                case.id
            ),
        });
    }
    Ok(())
}

/// The built-in metrics a name selects (as `any eval --metric` takes them).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Builtin {
    /// `exact`: equal to an expected answer after [`text::normalize`] (pass/fail).
    ExactMatch,
    /// `contains`: an expected answer appears in the output, case-insensitively (pass/fail).
    ContainsAny,
    /// `contains_all`: every expected answer appears (pass/fail).
    ContainsAll,
    /// `regex:PATTERN`: the output matches PATTERN (pass/fail).
    Regex(regex::Regex),
    /// `f1`: token F1 ([`text::token_f1`]).
    TokenF1,
    /// `rouge1`, `rouge2`: ROUGE-N F1.
    RougeN(usize),
    /// `rougeL`: ROUGE-L F1.
    RougeL,
    /// `bleu`: sentence BLEU per case, corpus BLEU for the dataset.
    Bleu,
    /// `levenshtein`: edit similarity, 0–1.
    Levenshtein,
    /// `json`: the output parses as JSON (pass/fail).
    JsonValid,
    /// `schema:PATH`: the output is JSON valid under the JSON Schema in the file PATH
    /// (pass/fail, the violations as the reason).
    JsonSchema(Box<any_core::Schema>, String),
    /// `latency`: seconds from request to the stream's end.
    Latency,
    /// `ttft`: seconds to the first text.
    Ttft,
    /// `tokens_per_second`: completion tokens over the latency.
    TokensPerSecond,
    /// `tokens`: prompt plus completion tokens.
    Tokens,
}

/// Every name [`Builtin::from_name`] knows (`regex:` takes a pattern).
pub const BUILTIN_NAMES: &[&str] = &[
    "exact",
    "contains",
    "contains_all",
    "regex:PATTERN",
    "f1",
    "rouge1",
    "rouge2",
    "rougeL",
    "bleu",
    "levenshtein",
    "json",
    "schema:PATH",
    "latency",
    "ttft",
    "tokens_per_second",
    "tokens",
];

impl Builtin {
    /// The metric called `name`.
    ///
    /// # Errors
    /// [`EvalError::InvalidInput`] for an unknown name (listing the known ones) or a regex
    /// that does not compile.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "exact" | "exact_match" => Builtin::ExactMatch,
            "contains" => Builtin::ContainsAny,
            "contains_all" => Builtin::ContainsAll,
            "f1" | "token_f1" => Builtin::TokenF1,
            "rouge1" => Builtin::RougeN(1),
            "rouge2" => Builtin::RougeN(2),
            "rougeL" | "rougel" => Builtin::RougeL,
            "bleu" => Builtin::Bleu,
            "levenshtein" => Builtin::Levenshtein,
            "json" => Builtin::JsonValid,
            "latency" => Builtin::Latency,
            "ttft" => Builtin::Ttft,
            "tokens_per_second" => Builtin::TokensPerSecond,
            "tokens" => Builtin::Tokens,
            _ if name.starts_with("schema:") => {
                let path = &name["schema:".len()..];
                let text = std::fs::read_to_string(path).map_err(|e| {
                    EvalError::InvalidInput(format!("metric `{name}`: reading {path}: {e}"))
                })?;
                let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    EvalError::InvalidInput(format!("metric `{name}`: {path} is not JSON: {e}"))
                })?;
                let schema = any_core::Schema::compile(&value).map_err(|e| {
                    EvalError::InvalidInput(format!("metric `{name}`: {path}: {e}"))
                })?;
                Builtin::JsonSchema(Box::new(schema), path.to_owned())
            }
            _ => match name.strip_prefix("regex:") {
                Some(p) => Builtin::Regex(regex::Regex::new(p).map_err(|e| {
                    EvalError::InvalidInput(format!(
                        "metric `{name}`: the pattern does not compile: {e}"
                    ))
                })?),
                None => {
                    return Err(EvalError::InvalidInput(format!(
                        "unknown metric `{name}`; the built-in ones are {}",
                        BUILTIN_NAMES.join(", ")
                    )));
                }
            },
        })
    }

    fn compute(&self, case: &Case, out: &Output) -> Result<Score> {
        let name = self.name();
        let refs = &case.expected;
        Ok(match self {
            Builtin::ExactMatch => {
                needs_expected(&name, case)?;
                Score::pass(text::exact_match(&out.text, refs))
            }
            Builtin::ContainsAny | Builtin::ContainsAll => {
                needs_expected(&name, case)?;
                let hay = out.text.to_lowercase();
                let found = |r: &String| hay.contains(&r.to_lowercase());
                Score::pass(if matches!(self, Builtin::ContainsAny) {
                    refs.iter().any(found)
                } else {
                    refs.iter().all(found)
                })
            }
            Builtin::Regex(re) => Score::pass(re.is_match(&out.text)),
            Builtin::TokenF1 => {
                needs_expected(&name, case)?;
                Score::value(text::token_f1(&out.text, refs).f1)
            }
            Builtin::RougeN(n) => {
                needs_expected(&name, case)?;
                Score::value(text::rouge_n(&out.text, refs, *n).f1)
            }
            Builtin::RougeL => {
                needs_expected(&name, case)?;
                Score::value(text::rouge_l(&out.text, refs).f1)
            }
            Builtin::Bleu => {
                needs_expected(&name, case)?;
                Score::value(text::sentence_bleu(&out.text, refs))
            }
            Builtin::Levenshtein => {
                needs_expected(&name, case)?;
                Score::value(text::levenshtein_similarity(&out.text, refs))
            }
            Builtin::JsonValid => {
                match serde_json::from_str::<serde_json::Value>(out.text.trim()) {
                    Ok(_) => Score::pass(true),
                    Err(e) => Score::pass(false).because(e.to_string()),
                }
            }
            Builtin::JsonSchema(schema, _) => match schema.parse(out.text.trim()) {
                Ok(_) => Score::pass(true),
                Err(e) => Score::pass(false).because(e.to_string()),
            },
            Builtin::Latency => Score::value(out.latency.as_secs_f64()),
            Builtin::Ttft => match out.ttft {
                Some(t) => Score::value(t.as_secs_f64()),
                None => {
                    return Err(EvalError::Metric {
                        metric: name,
                        message: format!(
                            "case `{}`: the answer had no text, so no first token",
                            case.id
                        ),
                    });
                }
            },
            Builtin::TokensPerSecond | Builtin::Tokens => {
                let Some(u) = out.usage else {
                    return Err(EvalError::Metric {
                        metric: name,
                        message: format!("case `{}`: the service reported no token usage", case.id),
                    });
                };
                if matches!(self, Builtin::Tokens) {
                    Score::value(f64::from(u.total_tokens()))
                } else {
                    Score::value(
                        f64::from(u.completion_tokens) / out.latency.as_secs_f64().max(1e-9),
                    )
                }
            }
        })
    }
}

impl Metric for Builtin {
    fn name(&self) -> String {
        match self {
            Builtin::ExactMatch => "exact".into(),
            Builtin::ContainsAny => "contains".into(),
            Builtin::ContainsAll => "contains_all".into(),
            Builtin::Regex(re) => format!("regex:{}", re.as_str()),
            Builtin::TokenF1 => "f1".into(),
            Builtin::RougeN(n) => format!("rouge{n}"),
            Builtin::RougeL => "rougeL".into(),
            Builtin::Bleu => "bleu".into(),
            Builtin::Levenshtein => "levenshtein".into(),
            Builtin::JsonValid => "json".into(),
            Builtin::JsonSchema(_, path) => format!("schema:{path}"),
            Builtin::Latency => "latency".into(),
            Builtin::Ttft => "ttft".into(),
            Builtin::TokensPerSecond => "tokens_per_second".into(),
            Builtin::Tokens => "tokens".into(),
        }
    }

    fn score<'a>(&'a self, case: &'a Case, output: &'a Output) -> BoxFuture<'a, Result<Score>> {
        Box::pin(async move { self.compute(case, output) })
    }

    fn aggregate(&self, scored: &[(&Case, &Output)]) -> Option<f64> {
        match self {
            Builtin::Bleu => Some(text::corpus_bleu(
                scored
                    .iter()
                    .map(|(c, o)| (o.text.as_str(), c.expected.as_slice())),
            )),
            _ => None,
        }
    }
}

/// A metric from a function of the case and the output: the shortest way to plug a check
/// (a guardrail, a domain rule) into the runner.
///
/// ```
/// use any_eval::{Metric, Score, metric_fn};
///
/// let short = metric_fn("short", |_case, out| Score::pass(out.text.len() <= 80));
/// assert_eq!(short.name(), "short");
/// ```
pub fn metric_fn<F>(name: impl Into<String>, f: F) -> impl Metric
where
    F: Fn(&Case, &Output) -> Score + Send + Sync,
{
    FnMetric {
        name: name.into(),
        f,
    }
}

struct FnMetric<F> {
    name: String,
    f: F,
}

impl<F> Metric for FnMetric<F>
where
    F: Fn(&Case, &Output) -> Score + Send + Sync,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn score<'a>(&'a self, case: &'a Case, output: &'a Output) -> BoxFuture<'a, Result<Score>> {
        let score = (self.f)(case, output);
        Box::pin(async move { Ok(score) })
    }
}
