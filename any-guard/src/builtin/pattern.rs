//! Guarding with a regular expression of your own.

use std::borrow::Cow;

use any_core::Span;
use regex::Regex;

use super::from_findings;
use crate::{Check, Guardrail, StreamScope, Subject};

/// Rejects text that matches a regular expression (or, with [`RegexGuard::require`], text
/// that does not). Matches are labelled and redacted as `[LABEL]`.
///
/// ```
/// use any_guard::{Guardrail, RegexGuard, Subject};
/// # fn main() -> Result<(), regex::Error> {
/// let tickets = RegexGuard::deny("TICKET", r"\bJIRA-\d+\b")?;
/// let v = tickets.check_now(&Subject::text("see JIRA-1234"));
/// assert_eq!(v.redacted.as_deref(), Some("see [TICKET]"));
///
/// let polite = RegexGuard::require("GREETING", r"(?i)^\s*(hello|hi)\b")?;
/// assert!(polite.check_now(&Subject::text("Hello there")).valid);
/// assert!(!polite.check_now(&Subject::text("What?")).valid);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RegexGuard {
    label: String,
    re: Regex,
    required: bool,
    window: usize,
}

impl RegexGuard {
    /// Fails on any match of `pattern`.
    ///
    /// # Errors
    /// If `pattern` is not a valid regular expression.
    pub fn deny(label: impl Into<String>, pattern: &str) -> Result<Self, regex::Error> {
        Ok(RegexGuard {
            label: label.into(),
            re: Regex::new(pattern)?,
            required: false,
            window: 256,
        })
    }

    /// Fails unless `pattern` matches somewhere. On a stream, judged on the complete text.
    ///
    /// # Errors
    /// If `pattern` is not a valid regular expression.
    pub fn require(label: impl Into<String>, pattern: &str) -> Result<Self, regex::Error> {
        Ok(RegexGuard {
            required: true,
            ..Self::deny(label, pattern)?
        })
    }

    /// The longest text a match can span, which bounds what a streamed output holds back
    /// (256 bytes unless set).
    pub fn max_match_len(mut self, bytes: usize) -> Self {
        self.window = bytes;
        self
    }
}

impl Guardrail for RegexGuard {
    fn name(&self) -> &str {
        "regex"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        if self.required {
            return Check::ready(if self.re.is_match(&text) || subject.is_partial() {
                any_core::Verdict::pass("regex")
            } else {
                any_core::Verdict::fail(
                    "regex",
                    1.0,
                    "format",
                    format!(
                        "expected text matching {} ({})",
                        self.label,
                        self.re.as_str()
                    ),
                )
            });
        }
        let spans = self
            .re
            .find_iter(&text)
            .filter(|m| !m.is_empty())
            .map(|m| Span {
                start: m.start(),
                end: m.end(),
                label: self.label.clone(),
            })
            .collect();
        Check::ready(from_findings("regex", "pattern", 1.0, &text, spans, |s| {
            Cow::Owned(format!("[{}]", s.label))
        }))
    }

    fn stream_scope(&self) -> StreamScope {
        if self.required {
            StreamScope::Complete
        } else {
            StreamScope::Window(self.window)
        }
    }
}
