//! [`Judge`]: an LLM grading answers against a rubric.

use any_core::{BoxChatService, ChatRequest, ChatService, ChatServiceExt, Message, ResponseFormat};
use serde_json::json;

use crate::{BoxFuture, Case, EvalError, Metric, Output, Result, Score};

/// The rubric [`Judge::new`] grades by when given none.
pub const DEFAULT_RUBRIC: &str = "The answer is correct: it says what the expected answer says \
(in any wording), and it does not add anything false.";

/// A model grading each answer against a rubric: pass or fail, with its reasoning.
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
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("name", &self.name)
            .field("rubric", &self.rubric)
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
        prompt.push_str(&format!(
            "\nAnswer to grade:\n{}\n\nReply with JSON: your reasoning in one or two sentences, \
             then whether the answer passes.",
            output.text
        ));
        let mut req = ChatRequest::new(vec![
            Message::system("You are a strict, fair grader."),
            Message::user(prompt),
        ]);
        req.sampling.temperature = Some(0.0);
        req.sampling.max_tokens = Some(256);
        req.response_format = ResponseFormat::JsonSchema {
            name: "verdict".into(),
            schema: json!({
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string", "maxLength": 600},
                    "pass": {"type": "boolean"}
                },
                "required": ["reasoning", "pass"],
                "additionalProperties": false
            }),
            strict: true,
        };
        req
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
            let response = self
                .service
                .clone()
                .chat(self.request(case, output))
                .await
                .map_err(|e| failed(format!("the judge's call failed: {e}")))?;
            let text = response.text().trim();
            let verdict: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| failed(format!("the judge's reply is not JSON ({e}): {text:?}")))?;
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
