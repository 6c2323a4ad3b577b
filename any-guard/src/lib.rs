//! Guardrails for any-suite: one verdict shape for every guardrail, composed as a tower layer.
//!
//! Part of [any-suite](https://docs.rs/any-core): small crates that each define one trait,
//! composed as `tower` layers over any model. Every crate of the family speaks the types of
//! [`any_core`]; a guardrail's judgement is an [`any_core::Verdict`], and a blocked call fails
//! with [`any_core::Error::Blocked`], so callers several layers up can branch on it without
//! depending on this crate.
//!
//! - [`Guardrail`]: judges a [`Subject`] — one message of a request, or output text (possibly
//!   partial, while it streams) — and returns a [`Verdict`](any_core::Verdict): valid or not,
//!   a risk score in `0..=1`, a category, an explanation, labelled byte spans of the findings
//!   and, for guardrails that redact, the redacted text. Compose with
//!   [`and`](Guardrail::and) / [`or`](Guardrail::or); both sides run concurrently and stop
//!   early once the outcome is known.
//! - Built-ins that need no model: [`Pii`] (validated with checksums), [`Secrets`],
//!   [`PromptInjection`], [`InvisibleText`], [`DenyList`], [`LengthLimit`], [`RegexGuard`],
//!   [`JsonValid`]. Learned, with its weights in the crate: [`InjectionClassifier`], a
//!   calibrated prompt-injection detector, and [`EmbeddingInjectionClassifier`], the same with
//!   a head over the text's sentence embedding from any embedding service. Model-backed: [`Judge`], a Llama-Guard-style
//!   classifier over any [`ChatService`](any_core::ChatService), scored from token
//!   log-probabilities.
//! - [`GuardLayer`] (or [`ServiceBuilderExt::guard_input`] /
//!   [`guard_output`](ServiceBuilderExt::guard_output)): a [`Policy`] per guardrail — block,
//!   redact, warn (recorded as [`Verdicts`] in the response), monitor (tracing only); a
//!   guardrail given without one takes its [default](Guardrail::default_policy): [`Pii`] and
//!   [`Secrets`] redact, the others block. Output is guarded as it streams, holding back only
//!   what a finding could still be completing.
//!
//! ```
//! use any_guard::{Guardrail, Pii, PromptInjection, Subject};
//!
//! let guard = PromptInjection::default().and(Pii::default());
//! let verdict = guard.check_now(&Subject::text("My card is 4111 1111 1111 1111"));
//! assert!(!verdict.valid);
//! assert_eq!(verdict.redacted.as_deref(), Some("My card is [CREDIT_CARD]"));
//! ```
//!
//! This crate has no feature flags. [`JsonValid::schema`] checks an output's conformance to a
//! JSON Schema with [`any_core::schema`], the validator `chat_typed` uses.
#![forbid(unsafe_code)]

mod builtin;
mod guard;
mod guardrail;
mod judge;
mod normalize;
mod redact;

pub use builtin::{
    DenyList, EmbeddingInjectionClassifier, InjectionClassifier, InvisibleText, JsonValid,
    LengthLimit, ModelError, Pii, PiiKind, PromptInjection, RegexGuard, Secrets, approx_tokens,
};
pub use guard::{
    Direction, Guard, GuardLayer, Guards, Policy, ResponseFuture, ServiceBuilderExt, Verdicts,
};
pub use guardrail::{All, Any, BoxFuture, Check, Guardrail, StreamScope, Subject};
pub use judge::{CATEGORIES as JUDGE_CATEGORIES, Judge};
pub use redact::{RedactionMap, redact};
