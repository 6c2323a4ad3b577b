//! The one shape every guardrail's judgement takes.
//!
//! It lives here, not in `any-guard`, because [`Error::Blocked`](crate::Error::Blocked)
//! carries it: a caller several layers up can branch on a blocked request without depending on
//! the guardrail crate.

use serde::{Deserialize, Serialize};

/// A labelled byte range of the text a guardrail checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Start, in bytes, inclusive.
    pub start: usize,
    /// End, in bytes, exclusive.
    pub end: usize,
    /// What was found there (`"EMAIL"`, `"aws_access_key"`, ...).
    pub label: String,
}

/// What a guardrail concluded about one input or output.
///
/// ```
/// use any_core::Verdict;
/// let v = Verdict::pass("pii");
/// assert!(v.valid);
/// assert_eq!(v.score, 0.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The guardrail that gave it.
    pub guardrail: String,
    /// Whether the subject passes.
    pub valid: bool,
    /// Risk in `0.0..=1.0`; higher is riskier.
    pub score: f32,
    /// What kind of problem, if any (`"prompt_injection"`, `"pii"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Why, for a person reading logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Where in the text the findings are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
    /// The text with findings redacted, where the guardrail redacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

impl Verdict {
    /// A passing verdict with score 0.
    pub fn pass(guardrail: impl Into<String>) -> Self {
        Verdict {
            guardrail: guardrail.into(),
            valid: true,
            score: 0.0,
            category: None,
            explanation: None,
            spans: Vec::new(),
            redacted: None,
        }
    }

    /// A failing verdict with `score`, `category` and an explanation.
    pub fn fail(
        guardrail: impl Into<String>,
        score: f32,
        category: impl Into<String>,
        explanation: impl Into<String>,
    ) -> Self {
        Verdict {
            valid: false,
            score: score.clamp(0.0, 1.0),
            category: Some(category.into()),
            explanation: Some(explanation.into()),
            ..Self::pass(guardrail)
        }
    }
}
