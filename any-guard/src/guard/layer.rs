//! [`GuardLayer`] and its configuration: which guardrails, with which [`Policy`].

use std::fmt;
use std::sync::Arc;

use any_core::Role;
use tower_layer::Layer;

use super::Guard;
use crate::{Guardrail, StreamScope};

/// What a guard layer does when a guardrail's verdict fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Stop: the call fails with [`any_core::Error::Blocked`] carrying the verdict. On an
    /// output stream, nothing of the unsafe text is released; the stream ends with the error.
    Block,
    /// Rewrite: findings are replaced (`[EMAIL]`) in the request's messages or in the
    /// streamed output. A failing verdict with no spans to replace (a length limit) cannot
    /// be redacted and blocks instead.
    Redact,
    /// Let it through, record the verdict in the response's extensions as [`Verdicts`], and
    /// emit a `tracing` warning.
    Warn,
    /// Let it through and emit a `tracing` event only.
    Monitor,
}

/// The failing verdicts a guard layer let through under [`Policy::Warn`], in the response's
/// extensions (`response.extensions.get::<Verdicts>()`).
///
/// Input verdicts are attached to the stream's extensions when it starts; output verdicts to
/// the stream's last chunk, together with the input ones, so a collected response holds all
/// of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts(pub Vec<any_core::Verdict>);

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) guardrail: Arc<dyn Guardrail>,
    pub(crate) policy: Policy,
}

/// Guardrails with their policies, for one side of a call: what [`GuardLayer::input`] and
/// [`GuardLayer::output`] take.
///
/// A bare guardrail converts into `Guards` with its
/// [default policy](Guardrail::default_policy): personal data and credentials are redacted,
/// everything else blocks. Name the policy to choose another.
///
/// ```
/// use any_guard::{Guards, Pii, Policy, PromptInjection, Secrets};
/// let guards = Guards::new()
///     .block(PromptInjection::default())
///     .redact(Pii::default())
///     .warn(Secrets::default());
/// assert_eq!(guards.len(), 3);
///
/// // Each with its default: the injection blocks, the personal data is redacted.
/// let defaults = Guards::new().guard(PromptInjection::default()).guard(Pii::default());
/// assert_eq!(defaults.policies(), [Policy::Block, Policy::Redact]);
/// ```
#[derive(Clone)]
pub struct Guards {
    pub(crate) entries: Vec<Entry>,
    pub(crate) roles: Vec<Role>,
    pub(crate) reversible: bool,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            entries: Vec::new(),
            roles: vec![Role::User, Role::Tool],
            reversible: false,
        }
    }
}

impl fmt::Debug for Guards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guards")
            .field(
                "entries",
                &self
                    .entries
                    .iter()
                    .map(|e| (e.guardrail.name(), e.policy))
                    .collect::<Vec<_>>(),
            )
            .field("roles", &self.roles)
            .field("reversible", &self.reversible)
            .finish()
    }
}

impl<G: Guardrail> From<G> for Guards {
    fn from(guardrail: G) -> Self {
        Guards::new().guard(guardrail)
    }
}

impl Guards {
    /// No guardrails yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `guardrail` with `policy`. Guardrails run concurrently; redactions from several
    /// guardrails are applied together.
    pub fn with(mut self, guardrail: impl Guardrail, policy: Policy) -> Self {
        self.entries.push(Entry {
            guardrail: Arc::new(guardrail),
            policy,
        });
        self
    }

    /// Adds `guardrail` with its [default policy](Guardrail::default_policy):
    /// [`Policy::Redact`] for [`Pii`](crate::Pii) and [`Secrets`](crate::Secrets),
    /// [`Policy::Block`] for the others.
    pub fn guard(self, guardrail: impl Guardrail) -> Self {
        let policy = guardrail.default_policy();
        self.with(guardrail, policy)
    }

    /// Adds `guardrail` with [`Policy::Block`].
    pub fn block(self, guardrail: impl Guardrail) -> Self {
        self.with(guardrail, Policy::Block)
    }

    /// Adds `guardrail` with [`Policy::Redact`].
    pub fn redact(self, guardrail: impl Guardrail) -> Self {
        self.with(guardrail, Policy::Redact)
    }

    /// Adds `guardrail` with [`Policy::Warn`].
    pub fn warn(self, guardrail: impl Guardrail) -> Self {
        self.with(guardrail, Policy::Warn)
    }

    /// Adds `guardrail` with [`Policy::Monitor`].
    pub fn monitor(self, guardrail: impl Guardrail) -> Self {
        self.with(guardrail, Policy::Monitor)
    }

    /// The input guards an application usually starts from: [`PromptInjection`] and
    /// [`InvisibleText`] block, [`Pii`] is redacted. (`any eval --guarded` and the
    /// examples use it.)
    ///
    /// ```
    /// use any_guard::{Guards, Policy};
    /// let guards = Guards::recommended_input();
    /// assert_eq!(guards.policies(), [Policy::Block, Policy::Block, Policy::Redact]);
    /// ```
    ///
    /// [`PromptInjection`]: crate::PromptInjection
    /// [`InvisibleText`]: crate::InvisibleText
    /// [`Pii`]: crate::Pii
    pub fn recommended_input() -> Self {
        Guards::new()
            .block(crate::PromptInjection::default())
            .block(crate::InvisibleText)
            .redact(crate::Pii::default())
    }

    /// The output guards to pair with [`recommended_input`](Self::recommended_input):
    /// [`Secrets`](crate::Secrets) redacted as the answer streams.
    pub fn recommended_output() -> Self {
        Guards::new().redact(crate::Secrets::default())
    }

    /// Which messages an input guard checks, by role: user and tool messages unless set
    /// (system prompts are the application's own; tool results are where indirect injection
    /// arrives).
    pub fn roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.roles = roles.into_iter().collect();
        self
    }

    /// Numbers redaction placeholders (`[EMAIL_1]`) and records their values in a
    /// [`RedactionMap`](crate::RedactionMap) in the request's and the response's extensions,
    /// so the application can restore them in the answer.
    pub fn reversible(mut self) -> Self {
        self.reversible = true;
        self
    }

    /// The policy of each guardrail, in the order they were added.
    pub fn policies(&self) -> Vec<Policy> {
        self.entries.iter().map(|e| e.policy).collect()
    }

    /// How many guardrails.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no guardrails.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The widest streaming window of the windowed guardrails: how much output is held back.
    pub(crate) fn window(&self) -> usize {
        self.entries
            .iter()
            .filter_map(|e| match e.guardrail.stream_scope() {
                StreamScope::Window(n) => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether some guardrail can only judge the complete output and may change it (block or
    /// redact), so nothing can be released before the end.
    pub(crate) fn holds_all(&self) -> bool {
        self.entries.iter().any(|e| {
            e.guardrail.stream_scope() == StreamScope::Complete
                && matches!(e.policy, Policy::Block | Policy::Redact)
        })
    }
}

/// Which side of a call a guard checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The request's messages, before the inner service sees them.
    Input,
    /// The response's text, as it streams back.
    Output,
}

/// A tower layer that checks requests or responses with guardrails (see [`Guard`]).
///
/// Cheap to clone: the guardrails are shared.
///
/// ```
/// use any_guard::{GuardLayer, Guards, Pii, PromptInjection};
/// let input = GuardLayer::input(
///     Guards::new().block(PromptInjection::default()).redact(Pii::default()),
/// );
/// let output = GuardLayer::output(Pii::default());
/// # let _ = (input, output);
/// ```
#[derive(Debug, Clone)]
pub struct GuardLayer {
    pub(crate) guards: Arc<Guards>,
    pub(crate) direction: Direction,
}

impl GuardLayer {
    /// Checks each request's messages before the inner service sees them.
    pub fn input(guards: impl Into<Guards>) -> Self {
        GuardLayer {
            guards: Arc::new(guards.into()),
            direction: Direction::Input,
        }
    }

    /// Checks each response's text as it streams back.
    pub fn output(guards: impl Into<Guards>) -> Self {
        GuardLayer {
            guards: Arc::new(guards.into()),
            direction: Direction::Output,
        }
    }

    /// Which side this layer checks.
    pub fn direction(&self) -> Direction {
        self.direction
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}
