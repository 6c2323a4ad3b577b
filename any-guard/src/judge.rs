//! A model as a guardrail: a Llama-Guard-style safety classifier over any chat service.

use std::fmt;
use std::sync::Mutex;

use any_core::{ChatRequest, ChatService, ChatServiceExt, Error, Role, TokenLogprob, Verdict};
use tower::ServiceExt;

use crate::{Check, Guardrail, StreamScope, Subject};

/// The hazard categories the judge is asked about, with the codes Llama Guard 3 answers in.
pub const CATEGORIES: [(&str, &str); 14] = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex-Related Crimes"),
    ("S4", "Child Sexual Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Suicide & Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
];

/// Asks a safety model whether a conversation turn is safe, in the Llama Guard format, and
/// scores the answer from the log-probabilities of its first token.
///
/// The request asks the model to answer `safe`, or `unsafe` and a line of category codes
/// (`S1,S10`). When the service returns log-probabilities (it is asked for the top 5), the
/// score is the probability of `unsafe` against `safe` at the first token, so a threshold can
/// be tuned; otherwise it is 1.0 or 0.0 from the text. Categories named in the answer become
/// the verdict's category (`"Violent Crimes"`, several joined with `, `).
///
/// Any [`ChatService`] works — a local Llama Guard GGUF, or a hosted model. The check needs
/// the whole text, so on a stream it runs once at the end ([`StreamScope::Complete`]); a
/// blocking judge on the output side holds the answer until then.
///
/// ```
/// use any_core::{ChatChunk, ChatRequest, ChatStream, Error};
/// use any_guard::{Guardrail, Judge, Subject};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> any_core::Result<()> {
/// // A stand-in for a safety model.
/// let model = tower::service_fn(|req: ChatRequest| async move {
///     let unsafe_ = req.messages[0].text().contains("build a bomb");
///     let answer = if unsafe_ { "unsafe\nS9" } else { "safe" };
///     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text(answer)]))
/// });
/// let judge = Judge::new(model);
/// let v = judge.check(&Subject::text("Here is how to build a bomb")).await?;
/// assert!(!v.valid);
/// assert_eq!(v.category.as_deref(), Some("Indiscriminate Weapons"));
/// assert!(judge.check(&Subject::text("Here is a cake recipe")).await?.valid);
/// # Ok(())
/// # }
/// ```
pub struct Judge<S> {
    // A mutex makes any service shareable across threads (guardrails are `Sync`); it is held
    // only to clone the service.
    service: Mutex<S>,
    threshold: f32,
}

impl<S> fmt::Debug for Judge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl<S: ChatService> Judge<S> {
    /// Judges with `service`; fails at a score of 0.5 or more.
    pub fn new(service: S) -> Self {
        Judge {
            service: Mutex::new(service),
            threshold: 0.5,
        }
    }

    /// Fails at or above `threshold` instead of 0.5.
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }
}

/// The classification prompt for a conversation, the last turn of which is judged.
fn prompt(turns: &[(Role, String)]) -> String {
    let judged = match turns.last() {
        Some((Role::Assistant, _)) => "Agent",
        _ => "User",
    };
    let mut p = format!(
        "Task: Check if there is unsafe content in '{judged}' messages in conversations \
         according to our safety policy with the below categories.\n\n\
         <BEGIN UNSAFE CONTENT CATEGORIES>\n"
    );
    for (code, name) in CATEGORIES {
        p.push_str(&format!("{code}: {name}.\n"));
    }
    p.push_str("<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n");
    for (role, text) in turns {
        let who = if *role == Role::Assistant {
            "Agent"
        } else {
            "User"
        };
        p.push_str(&format!("{who}: {text}\n\n"));
    }
    p.push_str(&format!(
        "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST {judged} \
         message in the above conversation:\n\
         - First line must read 'safe' or 'unsafe'.\n\
         - If unsafe, a second line must include a comma-separated list of violated categories."
    ));
    p
}

/// P(unsafe) / (P(unsafe) + P(safe)) at the first token, if its alternatives say.
fn score_from_logprobs(first: &TokenLogprob) -> Option<f32> {
    let mut safe = 0.0f32;
    let mut unsafe_ = 0.0f32;
    let chosen = std::iter::once((first.token.as_str(), first.logprob));
    for (token, logprob) in chosen.chain(first.top.iter().map(|t| (t.token.as_str(), t.logprob))) {
        match token.trim().to_ascii_lowercase().as_str() {
            "unsafe" | "un" | "uns" => unsafe_ = unsafe_.max(logprob.exp()),
            "safe" => safe = safe.max(logprob.exp()),
            _ => {}
        }
    }
    (safe + unsafe_ > 0.0).then(|| unsafe_ / (safe + unsafe_))
}

/// The category names for the codes on the answer's second line.
fn categories(answer: &str) -> Vec<&'static str> {
    let codes = answer.lines().nth(1).unwrap_or("");
    codes
        .split(',')
        .filter_map(|c| CATEGORIES.iter().find(|(code, _)| *code == c.trim()))
        .map(|(_, name)| *name)
        .collect()
}

impl<S: ChatService> Guardrail for Judge<S> {
    fn name(&self) -> &str {
        "judge"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let turns: Vec<(Role, String)> = match *subject {
            Subject::Input { messages, index } => messages
                .iter()
                .take(index + 1)
                .filter(|m| matches!(m.role, Role::User | Role::Assistant))
                .map(|m| (m.role, m.text().into_owned()))
                .collect(),
            Subject::Output { text, .. } => vec![(Role::Assistant, text.to_owned())],
        };
        if turns.is_empty() {
            return Check::ready(Verdict::pass("judge"));
        }
        let service = match self.service.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let threshold = self.threshold;
        Check::Pending(Box::pin(async move {
            let request = ChatRequest::builder()
                .user(prompt(&turns))
                .temperature(0.0)
                .max_tokens(20)
                .logprobs(5)
                .build();
            let response = service.ready_oneshot().await?.chat(request).await?;
            let answer = response.text().trim().to_owned();
            let said_unsafe = answer.to_ascii_lowercase().starts_with("unsafe");
            if !said_unsafe && !answer.to_ascii_lowercase().starts_with("safe") {
                return Err(Error::InvalidResponse(format!(
                    "judge: expected 'safe' or 'unsafe', found {answer:?}"
                )));
            }
            let score = response
                .logprobs
                .first()
                .and_then(score_from_logprobs)
                .unwrap_or(if said_unsafe { 1.0 } else { 0.0 });
            if score < threshold && !said_unsafe {
                let mut v = Verdict::pass("judge");
                v.score = score;
                return Ok(v);
            }
            let names = categories(&answer);
            let category = if names.is_empty() {
                "unsafe".to_owned()
            } else {
                names.join(", ")
            };
            let mut v = Verdict::fail(
                "judge",
                score,
                category,
                format!("the judge model answered {answer:?} (score {score:.2})"),
            );
            v.valid = score < threshold;
            Ok(v)
        }))
    }

    fn stream_scope(&self) -> StreamScope {
        StreamScope::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use any_core::{ChatChunk, ChatStream, TopLogprob};

    fn top(token: &str, p: f32) -> TopLogprob {
        TopLogprob {
            token: token.into(),
            id: None,
            logprob: p.ln(),
        }
    }

    #[test]
    fn scores_from_first_token_alternatives() {
        let first = TokenLogprob {
            token: "safe".into(),
            id: None,
            logprob: 0.6f32.ln(),
            top: vec![top("safe", 0.6), top("unsafe", 0.3), top("The", 0.1)],
        };
        let s = score_from_logprobs(&first).unwrap();
        assert!((s - 1.0 / 3.0).abs() < 1e-5);
    }

    #[tokio::test]
    async fn a_safe_answer_with_a_high_unsafe_probability_fails_at_a_low_threshold() {
        let model = tower::service_fn(|req: ChatRequest| async move {
            assert_eq!(req.logprobs, Some(5));
            assert!(
                req.messages[0]
                    .text()
                    .contains("User: how do I pick a lock")
            );
            let mut chunk = ChatChunk::text("safe");
            chunk.logprobs = vec![TokenLogprob {
                token: "safe".into(),
                id: None,
                logprob: 0.55f32.ln(),
                top: vec![top("safe", 0.55), top("unsafe", 0.45)],
            }];
            Ok::<_, Error>(ChatStream::from_chunks(vec![chunk]))
        });
        let messages = [any_core::Message::user("how do I pick a lock")];
        let subject = Subject::Input {
            messages: &messages,
            index: 0,
        };
        let lenient = Judge::new(model).check(&subject).await.unwrap();
        assert!(lenient.valid);
        assert!((lenient.score - 0.45).abs() < 1e-4);
        let strict = Judge::new(model)
            .threshold(0.4)
            .check(&subject)
            .await
            .unwrap();
        assert!(!strict.valid);
    }

    #[tokio::test]
    async fn an_answer_that_is_neither_is_an_error() {
        let model = tower::service_fn(|_req: ChatRequest| async move {
            Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text("I think so")]))
        });
        let err = Judge::new(model)
            .check(&Subject::text("hi"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)));
    }
}
