//! The [`Guardrail`] trait, what it checks ([`Subject`]), and composition ([`All`], [`Any`]).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{Message, Result, Role, Span, Verdict};
use futures_util::future::{Either, select};

use crate::Policy;

/// A boxed, sendable future, as model-backed guardrails return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a guardrail looks at: one message of a request, or the text of a response.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The message at `index` of a request's `messages`, with the whole conversation for
    /// guardrails that need context (a judge model).
    Input {
        /// The request's messages.
        messages: &'a [Message],
        /// Which message is being checked.
        index: usize,
    },
    /// Output text. While a response streams, `text` is a window of it and `complete` is
    /// `false`; the last check of a stream has `complete` set.
    Output {
        /// The text to check.
        text: &'a str,
        /// Whether the text is final (no more will arrive).
        complete: bool,
    },
}

impl<'a> Subject<'a> {
    /// A complete output text: the usual subject when checking a string directly.
    ///
    /// ```
    /// use any_guard::{Guardrail, Secrets, Subject};
    /// let v = Secrets::default().check_now(&Subject::text("key AKIAIOSFODNN7EXAMPLE"));
    /// assert!(!v.valid);
    /// ```
    pub fn text(text: &'a str) -> Self {
        Subject::Output {
            text,
            complete: true,
        }
    }

    /// The text under check: the message's text (text parts joined) or the output text.
    /// Verdict spans are byte ranges of this string.
    pub fn content(&self) -> Cow<'a, str> {
        match *self {
            Subject::Input { messages, index } => messages
                .get(index)
                .map(|m| m.content.text())
                .unwrap_or(Cow::Borrowed("")),
            Subject::Output { text, .. } => Cow::Borrowed(text),
        }
    }

    /// The role of the message under check (`Tool` for a tool's result, `System` for a system
    /// prompt or recalled context placed there); `None` for output text. Guardrails that
    /// judge kinds of text differently read it, as [`InjectionClassifier`] does with
    /// [`threshold_for`](crate::InjectionClassifier::threshold_for).
    ///
    /// [`InjectionClassifier`]: crate::InjectionClassifier
    ///
    /// ```
    /// use any_core::{Message, Role};
    /// use any_guard::Subject;
    /// let messages = [Message::user("hi"), Message::tool("call_1", "42")];
    /// assert_eq!(Subject::Input { messages: &messages, index: 1 }.role(), Some(Role::Tool));
    /// assert_eq!(Subject::text("output").role(), None);
    /// ```
    pub fn role(&self) -> Option<Role> {
        match *self {
            Subject::Input { messages, index } => messages.get(index).map(|m| m.role),
            Subject::Output { .. } => None,
        }
    }

    /// Whether more text may still follow (a streamed output not yet finished).
    pub fn is_partial(&self) -> bool {
        matches!(
            self,
            Subject::Output {
                complete: false,
                ..
            }
        )
    }
}

/// How much of a streamed output a guardrail needs to see at once, which decides how much
/// the output guard holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamScope {
    /// Findings are at most this many bytes long: the guard holds back only that tail and
    /// releases the rest as soon as it is checked.
    Window(usize),
    /// Judged on all the text so far, without holding anything back (a length limit: once
    /// over, the stream stops).
    Prefix,
    /// Judged only on the complete text (JSON validity): a blocking or redacting guard
    /// holds the whole output back until the end.
    Complete,
}

/// The result of [`Guardrail::check`]: ready at once (every built-in) or pending (a
/// model-backed guardrail).
///
/// It is a future, so `guardrail.check(&subject).await` works either way; built-ins skip the
/// allocation of a boxed future.
pub enum Check<'a> {
    /// The verdict is known.
    Ready(Option<Result<Verdict>>),
    /// The verdict needs more work.
    Pending(BoxFuture<'a, Result<Verdict>>),
}

impl std::fmt::Debug for Check<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Ready(v) => f.debug_tuple("Ready").field(v).finish(),
            Check::Pending(_) => f.debug_tuple("Pending").finish_non_exhaustive(),
        }
    }
}

impl Check<'_> {
    /// A check that is already decided.
    pub fn ready(verdict: Verdict) -> Self {
        Check::Ready(Some(Ok(verdict)))
    }

    /// The verdict if it is already known, without waiting: how synchronous code uses the
    /// built-ins.
    pub fn now(self) -> Option<Result<Verdict>> {
        match self {
            Check::Ready(v) => v,
            Check::Pending(_) => None,
        }
    }
}

impl Future for Check<'_> {
    type Output = Result<Verdict>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Check::Ready(v) => Poll::Ready(v.take().expect("Check polled after completion")),
            Check::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// Something that judges an input or an output and returns a [`Verdict`].
///
/// Built-in guardrails decide synchronously and return [`Check::Ready`]; a model-backed one
/// returns [`Check::Pending`] with its future. The trait is object safe, so guard layers hold
/// `Arc<dyn Guardrail>`.
///
/// ```
/// use any_core::Verdict;
/// use any_guard::{Check, Guardrail, Subject};
///
/// /// Rejects text that shouts.
/// struct NoShouting;
///
/// impl Guardrail for NoShouting {
///     fn name(&self) -> &str {
///         "no_shouting"
///     }
///     fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
///         let text = subject.content();
///         let shouting = text.chars().any(char::is_alphabetic)
///             && !text.chars().any(char::is_lowercase);
///         Check::ready(if shouting {
///             Verdict::fail("no_shouting", 0.6, "tone", "all capitals")
///         } else {
///             Verdict::pass("no_shouting")
///         })
///     }
/// }
///
/// assert!(!NoShouting.check_now(&Subject::text("STOP")).valid);
/// assert!(NoShouting.check_now(&Subject::text("Stop")).valid);
/// ```
pub trait Guardrail: Send + Sync + 'static {
    /// The name verdicts carry (`"pii"`, `"prompt_injection"`, ...).
    fn name(&self) -> &str;

    /// Judges the subject.
    ///
    /// Spans in the verdict are byte ranges of [`Subject::content`]. An `Err` means the
    /// guardrail could not judge (a judge model failed); guard layers pass that error on.
    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a>;

    /// How much of a streamed output this guardrail must see at once. The default, a
    /// 256-byte window, fits pattern-based guardrails.
    fn stream_scope(&self) -> StreamScope {
        StreamScope::Window(256)
    }

    /// The text that replaces a finding when redacting: `[LABEL]` by default.
    fn replacement(&self, span: &Span) -> Cow<'static, str> {
        Cow::Owned(format!("[{}]", span.label))
    }

    /// What a guard does with this guardrail's failing verdicts unless told otherwise: the
    /// policy of a bare guardrail given to [`GuardLayer`](crate::GuardLayer) or
    /// [`Guards::guard`](crate::Guards::guard), and of `any guard`.
    ///
    /// [`Policy::Block`] by default. Guardrails whose findings are data that can be cut out
    /// of an ordinary text rather than an attack on the model ([`Pii`](crate::Pii),
    /// [`Secrets`](crate::Secrets)) return [`Policy::Redact`], so a document that mentions
    /// an e-mail address goes through with `[EMAIL]` in its place instead of being refused.
    fn default_policy(&self) -> Policy {
        Policy::Block
    }

    /// Checks synchronously: for guardrails whose check is ready at once (all built-ins).
    ///
    /// A guardrail whose check is pending yields an invalid verdict saying so, rather than
    /// blocking a thread; await [`Guardrail::check`] for those.
    fn check_now(&self, subject: &Subject<'_>) -> Verdict {
        match self.check(subject).now() {
            Some(Ok(v)) => v,
            Some(Err(e)) => Verdict::fail(self.name(), 1.0, "error", e.to_string()),
            None => Verdict::fail(
                self.name(),
                1.0,
                "error",
                "this guardrail is asynchronous; await `check` instead",
            ),
        }
    }

    /// Both this and `other` must pass ([`All`]).
    fn and<G: Guardrail>(self, other: G) -> All<Self, G>
    where
        Self: Sized,
    {
        All(self, other)
    }

    /// Either this or `other` must pass ([`Any`]).
    fn or<G: Guardrail>(self, other: G) -> Any<Self, G>
    where
        Self: Sized,
    {
        Any(self, other)
    }
}

impl<G: Guardrail + ?Sized> Guardrail for Arc<G> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        (**self).check(subject)
    }
    fn stream_scope(&self) -> StreamScope {
        (**self).stream_scope()
    }
    fn replacement(&self, span: &Span) -> Cow<'static, str> {
        (**self).replacement(span)
    }
    fn default_policy(&self) -> Policy {
        (**self).default_policy()
    }
}

impl<G: Guardrail + ?Sized> Guardrail for Box<G> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        (**self).check(subject)
    }
    fn stream_scope(&self) -> StreamScope {
        (**self).stream_scope()
    }
    fn replacement(&self, span: &Span) -> Cow<'static, str> {
        (**self).replacement(span)
    }
    fn default_policy(&self) -> Policy {
        (**self).default_policy()
    }
}

/// The wider of two stream scopes: what a composition of both needs.
fn wider(a: StreamScope, b: StreamScope) -> StreamScope {
    use StreamScope::*;
    match (a, b) {
        (Complete, _) | (_, Complete) => Complete,
        (Window(x), Window(y)) => Window(x.max(y)),
        (Prefix, Window(n)) | (Window(n), Prefix) => Window(n),
        (Prefix, Prefix) => Prefix,
    }
}

/// The stricter of two policies: block, then redact, then warn, then monitor.
fn stricter(a: Policy, b: Policy) -> Policy {
    let rank = |p| match p {
        Policy::Block => 3,
        Policy::Redact => 2,
        Policy::Warn => 1,
        Policy::Monitor => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Runs two checks concurrently; returns early with the first verdict for which `decisive`
/// holds, otherwise both.
async fn race(
    a: Check<'_>,
    b: Check<'_>,
    decisive: impl Fn(&Verdict) -> bool,
) -> Result<Either<Verdict, (Verdict, Verdict)>> {
    match select(a, b).await {
        Either::Left((va, b)) => {
            let va = va?;
            if decisive(&va) {
                return Ok(Either::Left(va));
            }
            Ok(Either::Right((va, b.await?)))
        }
        Either::Right((vb, a)) => {
            let vb = vb?;
            if decisive(&vb) {
                return Ok(Either::Left(vb));
            }
            Ok(Either::Right((a.await?, vb)))
        }
    }
}

/// Passes only if both guardrails pass (`a.and(b)`). Both run concurrently; when one is
/// still pending, the first failing verdict is returned without waiting for the other.
///
/// When both are decided at once (the built-ins) and both fail, the verdict is the riskier
/// one with the findings of both, and its `redacted` text has all of them replaced: so
/// redacting with `Pii::default().and(Secrets::default())` leaves neither the e-mail address
/// nor the key.
///
/// ```
/// use any_guard::{Guardrail, Pii, Secrets, Subject};
/// let guard = Pii::default().and(Secrets::default());
/// assert!(guard.check_now(&Subject::text("hello")).valid);
/// assert_eq!(guard.check_now(&Subject::text("mail a@example.com")).guardrail, "pii");
/// let both = guard.check_now(&Subject::text("a@example.com AKIAIOSFODNN7EXAMPLE"));
/// assert_eq!(both.redacted.as_deref(), Some("[EMAIL] [AWS_ACCESS_KEY]"));
/// ```
#[derive(Debug, Clone)]
pub struct All<A, B>(pub A, pub B);

impl<A: Guardrail, B: Guardrail> Guardrail for All<A, B> {
    fn name(&self) -> &str {
        "all"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let (a, b) = (self.0.check(subject), self.1.check(subject));
        if let (Check::Ready(_), Check::Ready(_)) = (&a, &b) {
            let verdicts = match (a.now(), b.now()) {
                (Some(a), Some(b)) => a.and_then(|a| Ok((a, b?))),
                _ => unreachable!("both checks are ready"),
            };
            return Check::Ready(Some(verdicts.map(|(va, vb)| {
                if va.valid || vb.valid {
                    return combine(va, vb, true);
                }
                self.both_failing(&subject.content(), va, vb)
            })));
        }
        Check::Pending(Box::pin(async move {
            match race(a, b, |v| !v.valid).await? {
                Either::Left(v) => Ok(v),
                Either::Right((va, vb)) => Ok(combine(va, vb, true)),
            }
        }))
    }

    fn stream_scope(&self) -> StreamScope {
        wider(self.0.stream_scope(), self.1.stream_scope())
    }

    /// The stricter of the two defaults, since the verdict may come from either.
    fn default_policy(&self) -> Policy {
        stricter(self.0.default_policy(), self.1.default_policy())
    }
}

impl<A: Guardrail, B: Guardrail> All<A, B> {
    /// The riskier of two failing verdicts with the spans of both, and the text redacted
    /// with each side's own replacements.
    fn both_failing(&self, text: &str, a: Verdict, b: Verdict) -> Verdict {
        let from_a: std::collections::HashSet<(usize, usize)> =
            a.spans.iter().map(|s| (s.start, s.end)).collect();
        let mut spans = a.spans.clone();
        spans.extend(b.spans.iter().cloned());
        let redacted = crate::redact(text, &spans, |s| {
            if from_a.contains(&(s.start, s.end)) {
                self.0.replacement(s)
            } else {
                self.1.replacement(s)
            }
        });
        let mut v = riskier(a, b);
        spans.sort_by_key(|s| (s.start, s.end));
        v.spans = spans;
        v.redacted = Some(redacted);
        v
    }
}

/// Passes if either guardrail passes (`a.or(b)`). Both run concurrently; the first passing
/// verdict is returned without waiting for the other. When both fail, the riskier verdict is
/// returned.
///
/// ```
/// use any_guard::{Guardrail, JsonValid, LengthLimit, Subject};
/// // Short answers need not be JSON.
/// let guard = LengthLimit::chars(10).or(JsonValid::default());
/// assert!(guard.check_now(&Subject::text("fine")).valid);
/// assert!(guard.check_now(&Subject::text(r#"{"long": "enough to be JSON"}"#)).valid);
/// assert!(!guard.check_now(&Subject::text("a long answer, not JSON")).valid);
/// ```
#[derive(Debug, Clone)]
pub struct Any<A, B>(pub A, pub B);

impl<A: Guardrail, B: Guardrail> Guardrail for Any<A, B> {
    fn name(&self) -> &str {
        "any"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let (a, b) = (self.0.check(subject), self.1.check(subject));
        if let (Check::Ready(_), Check::Ready(_)) = (&a, &b) {
            return Check::Ready(Some(both(a.now(), b.now(), false)));
        }
        Check::Pending(Box::pin(async move {
            match race(a, b, |v| v.valid).await? {
                Either::Left(v) => Ok(v),
                Either::Right((va, vb)) => Ok(combine(va, vb, false)),
            }
        }))
    }

    fn stream_scope(&self) -> StreamScope {
        wider(self.0.stream_scope(), self.1.stream_scope())
    }

    /// The stricter of the two defaults, since the verdict may come from either.
    fn default_policy(&self) -> Policy {
        stricter(self.0.default_policy(), self.1.default_policy())
    }
}

fn both(a: Option<Result<Verdict>>, b: Option<Result<Verdict>>, all: bool) -> Result<Verdict> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a?, b?),
        _ => unreachable!("both checks are ready"),
    };
    Ok(combine(a, b, all))
}

/// The verdict of an all-of (`all`) or any-of composition, given both sides' verdicts.
fn combine(a: Verdict, b: Verdict, all: bool) -> Verdict {
    match (all, a.valid, b.valid) {
        (true, false, _) => a,
        (true, true, false) => b,
        (true, true, true) => merge_pass(a, b),
        (false, true, _) => a,
        (false, false, true) => b,
        (false, false, false) => riskier(a, b),
    }
}

fn merge_pass(a: Verdict, b: Verdict) -> Verdict {
    let mut v = Verdict::pass(format!("{}+{}", a.guardrail, b.guardrail));
    v.score = a.score.max(b.score);
    v.spans = a.spans;
    v.spans.extend(b.spans);
    v
}

fn riskier(a: Verdict, b: Verdict) -> Verdict {
    if b.score > a.score { b } else { a }
}
