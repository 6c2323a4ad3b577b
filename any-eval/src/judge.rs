//! [`Judge`]: an LLM grading answers against a rubric, pass/fail or on a scale.

use std::collections::BTreeMap;

use any_core::{
    BoxChatService, ChatRequest, ChatResponse, ChatService, ChatServiceExt, Message,
    ResponseFormat, TokenLogprob,
};
use serde_json::json;

use crate::{BoxFuture, Case, EvalError, Metric, Output, Result, Score};

/// The rubric [`Judge::new`] grades by when given none.
pub const DEFAULT_RUBRIC: &str = "The answer is correct: it says what the expected answer says \
(in any wording), and it does not add anything false.";

/// How many alternatives per token a scoring judge asks for (OpenAI's most).
const TOP_LOGPROBS: u8 = 20;

/// A model grading each answer against a rubric: pass or fail with its reasoning, or a
/// G-Eval-style score on a scale ([`Judge::scale`]).
///
/// The judge is asked for JSON `{"reasoning": "...", "pass": true|false}` under a JSON Schema
/// (`response_format`), so a provider that enforces schemas, and the local backend's
/// constrained decoding, always return a verdict that parses; reasoning comes first so the
/// verdict can follow from it. The judge sees the case's input, its expected answers (when
/// there are any) and the answer, and is called at temperature 0.
///
/// ```
/// use any_core::{ChatChunk, ChatRequest, ChatStream};
/// use any_eval::{Case, Judge, Metric, Output};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_eval::Result<()> {
/// // A stand-in judge that always passes; any ChatService (a provider, the local model) works.
/// let lenient = tower::service_fn(|_req: ChatRequest| async {
///     Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![ChatChunk::text(
///         r#"{"reasoning": "It says Paris.", "pass": true}"#,
///     )]))
/// });
/// let judge = Judge::new(lenient);
/// let out = Output { text: "Paris".into(), ..Output::default() };
/// let score = judge.score(&Case::new("q", "Capital of France?", "Paris"), &out).await?;
/// assert_eq!((score.pass, score.reason.as_deref()), (Some(true), Some("It says Paris.")));
/// # Ok(())
/// # }
/// ```
pub struct Judge {
    service: BoxChatService,
    rubric: String,
    name: String,
    scale: Option<(u8, u8)>,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("name", &self.name)
            .field("rubric", &self.rubric)
            .field("scale", &self.scale)
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// A judge on `service` with [`DEFAULT_RUBRIC`], reported as `judge`.
    pub fn new<S: ChatService + Sync>(service: S) -> Self {
        Judge {
            service: service.boxed_chat(),
            rubric: DEFAULT_RUBRIC.to_owned(),
            name: "judge".to_owned(),
            scale: None,
        }
    }

    /// Grades by `rubric` instead.
    #[must_use]
    pub fn rubric(mut self, rubric: impl Into<String>) -> Self {
        self.rubric = rubric.into();
        self
    }

    /// Reports as `name` (several judges with different rubrics in one run).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Scores on the integer scale `lo..=hi` instead of pass/fail, as G-Eval (Liu et al.,
    /// 2023) does: the judge replies `{"reasoning": "...", "score": N}` under a schema that
    /// allows only the scale's integers, with its top log-probabilities; the score is the
    /// expectation of the scale's values weighted by the probabilities the judge gave each
    /// one's token at the score's position (renormalised over those tokens), and the
    /// metric's value is that expectation mapped onto 0..1 (`lo` → 0, `hi` → 1). A fine
    /// grade — 3.7 rather than 4 — that separates answers a sampled integer would tie.
    ///
    /// Where the judge gives no log-probabilities (a provider that returns none, or refuses
    /// the request for them with [`any_core::Error::Unsupported`], whereupon it is asked
    /// again without), or the score's token cannot be found among them, the value is the
    /// sampled score, and the result says so: its `detail` has `"from": "sampled"` and why,
    /// its reason starts "sampled score".
    /// Otherwise `detail` has `"from": "logprobs"`, the expectation, the sampled score and
    /// each value's probability.
    ///
    /// ```
    /// use any_core::{ChatChunk, ChatRequest, ChatStream, TokenLogprob, TopLogprob};
    /// use any_eval::{Case, Judge, Metric, Output};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> any_eval::Result<()> {
    /// // A stand-in judge that answers 4, having given "4" probability 0.6 and "5" 0.4.
    /// let token = |t: &str, p: f32| TopLogprob { token: t.into(), id: None, logprob: p.ln() };
    /// let judge = tower::service_fn(move |_req: ChatRequest| async move {
    ///     let mut score = ChatChunk::text("4");
    ///     score.logprobs.push(TokenLogprob {
    ///         token: "4".into(),
    ///         id: None,
    ///         logprob: 0.6f32.ln(),
    ///         top: vec![token("4", 0.6), token("5", 0.4)],
    ///     });
    ///     Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![
    ///         ChatChunk::text(r#"{"reasoning": "Right, a little terse.", "score": "#),
    ///         score,
    ///         ChatChunk::text("}"),
    ///     ]))
    /// });
    /// let judge = Judge::new(judge).scale(1, 5)?;
    /// let out = Output { text: "Paris".into(), ..Output::default() };
    /// let score = judge.score(&Case::new("q", "Capital of France?", "Paris"), &out).await?;
    /// // 4 × 0.6 + 5 × 0.4 = 4.4 on 1–5, or 0.85 on 0–1.
    /// assert!((score.value - 0.85).abs() < 1e-6);
    /// assert_eq!(score.detail.unwrap()["from"], "logprobs");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`EvalError::InvalidInput`] unless `lo < hi <= 9`: each score must be one token, and
    /// one digit is one token in every tokenizer we know.
    pub fn scale(mut self, lo: u8, hi: u8) -> Result<Self> {
        if lo >= hi || hi > 9 {
            return Err(EvalError::InvalidInput(format!(
                "a judge's scale runs from one digit to a larger one (as 1-5), not {lo}-{hi}"
            )));
        }
        self.scale = Some((lo, hi));
        Ok(self)
    }

    /// The request the judge gets for `case` and `output`.
    pub fn request(&self, case: &Case, output: &Output) -> ChatRequest {
        let mut prompt = format!(
            "Grade an answer by this rubric.\n\nRubric: {}\n\nQuestion:\n{}\n",
            self.rubric,
            case.input.summary()
        );
        if !case.expected.is_empty() {
            prompt.push_str(&format!(
                "\nExpected answer:\n{}\n",
                case.expected.join("\n or: ")
            ));
        }
        prompt.push_str(&format!("\nAnswer to grade:\n{}\n\n", output.text));
        let verdict = match self.scale {
            None => {
                prompt.push_str(
                    "Reply with JSON: your reasoning in one or two sentences, then whether the \
                     answer passes.",
                );
                json!({"type": "boolean"})
            }
            Some((lo, hi)) => {
                prompt.push_str(&format!(
                    "Reply with JSON: your reasoning in one or two sentences, then a score from \
                     {lo} (fails the rubric) to {hi} (meets it fully)."
                ));
                json!({"type": "integer", "enum": (lo..=hi).collect::<Vec<u8>>()})
            }
        };
        let key = if self.scale.is_some() {
            "score"
        } else {
            "pass"
        };
        let mut req = ChatRequest::new(vec![
            Message::system("You are a strict, fair grader."),
            Message::user(prompt),
        ]);
        req.sampling.temperature = Some(0.0);
        req.sampling.max_tokens = Some(256);
        if self.scale.is_some() {
            req.logprobs = Some(TOP_LOGPROBS);
        }
        let mut schema = json!({
            "type": "object",
            "properties": {"reasoning": {"type": "string", "maxLength": 600}},
            "required": ["reasoning", key],
            "additionalProperties": false
        });
        schema["properties"][key] = verdict;
        req.response_format = ResponseFormat::JsonSchema {
            name: "verdict".into(),
            schema,
            strict: true,
        };
        req
    }
}

/// Each scale value's probability at the score's position, renormalised over the scale:
/// the last token of the reply that holds a digit is the score's (the score comes after the
/// reasoning, and a JSON object's closing brace after it), and the alternatives counted are
/// that token with its digit replaced by another of the scale's (`" 4"` → `" 3"`, `" 5"`).
///
/// # Errors
/// Why the logprobs cannot give the distribution, for the result to say.
fn distribution(
    logprobs: &[TokenLogprob],
    (lo, hi): (u8, u8),
    sampled: u8,
) -> std::result::Result<BTreeMap<u8, f64>, String> {
    if logprobs.is_empty() {
        return Err("the judge returned no log-probabilities".into());
    }
    let digit_at = |t: &str| {
        let mut digits = t.bytes().enumerate().filter(|(_, b)| b.is_ascii_digit());
        match (digits.next(), digits.next()) {
            (Some((at, d)), None) => Some((at, d - b'0')),
            _ => None,
        }
    };
    let chosen = logprobs
        .iter()
        .rev()
        .find(|t| t.token.bytes().any(|b| b.is_ascii_digit()))
        .ok_or("no token of the reply holds a digit")?;
    let (at, digit) = digit_at(&chosen.token)
        .ok_or_else(|| format!("the score's token {:?} holds several digits", chosen.token))?;
    if digit != sampled {
        return Err(format!(
            "the last digit token {:?} is not the score {sampled}",
            chosen.token
        ));
    }
    let (before, after) = (&chosen.token[..at], &chosen.token[at + 1..]);
    let mut seen = std::collections::HashSet::new();
    let mut mass: BTreeMap<u8, f64> = BTreeMap::new();
    let candidates = std::iter::once((chosen.id, chosen.token.as_str(), chosen.logprob)).chain(
        chosen
            .top
            .iter()
            .map(|t| (t.id, t.token.as_str(), t.logprob)),
    );
    for (id, token, logprob) in candidates {
        let Some((a, d)) = digit_at(token) else {
            continue;
        };
        let same_shape = a == at && token[..a] == *before && token[a + 1..] == *after;
        // One entry per token: the chosen one is usually among its alternatives too.
        if same_shape && (lo..=hi).contains(&d) && seen.insert((id, token)) {
            *mass.entry(d).or_default() += f64::from(logprob).exp();
        }
    }
    let total: f64 = mass.values().sum();
    if !(total.is_finite() && total > 0.0) {
        return Err(format!(
            "the score's token has probability {total} over the scale"
        ));
    }
    Ok(mass.into_iter().map(|(d, p)| (d, p / total)).collect())
}

impl Judge {
    /// The score from a scoring judge's reply; `unsupported` says why it was asked without
    /// log-probabilities, if it was.
    fn scaled(
        &self,
        response: &ChatResponse,
        verdict: &serde_json::Value,
        unsupported: Option<String>,
    ) -> Option<Score> {
        let (lo, hi) = self.scale?;
        let sampled = verdict["score"]
            .as_u64()
            .and_then(|s| u8::try_from(s).ok())
            .filter(|s| (lo..=hi).contains(s))?;
        let reasoning = verdict["reasoning"].as_str().unwrap_or_default().trim();
        let unit = |x: f64| (x - f64::from(lo)) / f64::from(hi - lo);
        let probs = match unsupported {
            Some(why) => Err(why),
            None => distribution(&response.logprobs, (lo, hi), sampled),
        };
        Some(match probs {
            Ok(probs) => {
                let expected: f64 = probs.iter().map(|(&d, p)| f64::from(d) * p).sum();
                let shown: Vec<String> =
                    probs.iter().map(|(d, p)| format!("{d}: {p:.3}")).collect();
                Score::value(unit(expected))
                    .because(format!(
                        "{expected:.2} on {lo}–{hi}, the judge's probabilities ({}) \
                             weighting its scores; {reasoning}",
                        shown.join(", ")
                    ))
                    .with_detail(json!({
                        "from": "logprobs",
                        "scale": [lo, hi],
                        "expected": expected,
                        "sampled": sampled,
                        "probabilities": probs
                            .iter()
                            .map(|(d, p)| (d.to_string(), json!(p)))
                            .collect::<serde_json::Map<_, _>>(),
                    }))
            }
            Err(why) => Score::value(unit(f64::from(sampled)))
                .because(format!(
                    "sampled score {sampled} on {lo}–{hi}, not weighted ({why}); {reasoning}"
                ))
                .with_detail(json!({
                    "from": "sampled",
                    "scale": [lo, hi],
                    "sampled": sampled,
                    "why": why,
                })),
        })
    }
}

impl Metric for Judge {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn score<'a>(&'a self, case: &'a Case, output: &'a Output) -> BoxFuture<'a, Result<Score>> {
        Box::pin(async move {
            let failed = |message: String| EvalError::Metric {
                metric: self.name.clone(),
                message: format!("case `{}`: {message}", case.id),
            };
            let request = self.request(case, output);
            let mut unsupported = None;
            let response = match self.service.clone().chat(request.clone()).await {
                // A provider that refuses log-probabilities (Anthropic's) still scores: ask
                // again without them, and say so in the result.
                Err(any_core::Error::Unsupported(why)) if request.logprobs.is_some() => {
                    let mut plain = request;
                    plain.logprobs = None;
                    unsupported = Some(format!("the judge gives no log-probabilities: {why}"));
                    self.service.clone().chat(plain).await
                }
                other => other,
            }
            .map_err(|e| failed(format!("the judge's call failed: {e}")))?;
            let text = response.text().trim();
            let verdict: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| failed(format!("the judge's reply is not JSON ({e}): {text:?}")))?;
            if let Some((lo, hi)) = self.scale {
                return self
                    .scaled(&response, &verdict, unsupported)
                    .ok_or_else(|| {
                        failed(format!(
                            "the judge's reply has no integer `score` from {lo} to {hi}: {text}"
                        ))
                    });
            }
            let pass = verdict["pass"].as_bool().ok_or_else(|| {
                failed(format!("the judge's reply has no boolean `pass`: {text}"))
            })?;
            let reasoning = verdict["reasoning"].as_str().unwrap_or_default().trim();
            let score = Score::pass(pass);
            Ok(if reasoning.is_empty() {
                score
            } else {
                score.because(reasoning)
            })
        })
    }
}
