//! Remembering conversations: [`MemoryLayer`] recalls before each call and records each
//! turn after its answer has streamed to the end.
//!
//! The session and the user come from the request's [`SessionId`] and [`UserId`]
//! extensions. Before the call, the layer puts (within the policy's token budget) a summary
//! of older turns, relevant older memories and the session's last turns in front of the new
//! message. After the stream ends cleanly, it records the user's message and the answer in
//! one `add_many`: both or neither. A call that fails, a stream that yields an error or ends
//! with a content filter (a guardrail's block), and a stream dropped before its end record
//! nothing.
//!
//! Send only the new message: the layer supplies the history.
//!
//! ```
//! use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, SessionId};
//! use any_memory::{InMemoryStore, ListQuery, MemoryPolicy, MemoryStore, Scope, ServiceBuilderExt};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> any_core::Result<()> {
//! // A stand-in model that says how many messages it was given.
//! let model = tower::service_fn(|req: ChatRequest| async move {
//!     Ok::<_, Error>(ChatStream::from_chunks(vec![ChatChunk::text(format!("{} messages", req.messages.len()))]))
//! });
//! let store = InMemoryStore::new();
//! let chat = ServiceBuilder::new()
//!     .memory(store.clone(), MemoryPolicy::window(4))
//!     .service(model);
//! let ask = |text: &str| ChatRequest::builder().user(text).extension(SessionId("s1".into())).build();
//!
//! assert_eq!(chat.chat(ask("Hi, I'm Ada")).await?.text(), "1 messages");
//! // The second call sees the first turn: its question, its answer, and the new message.
//! assert_eq!(chat.chat(ask("What's my name?")).await?.text(), "3 messages");
//! assert_eq!(store.list(ListQuery::new(Scope::session("s1"))).await.map_err(Error::from)?.len(), 4);
//! # Ok(())
//! # }
//! ```

mod policy;
mod stream;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use any_core::{ChatRequest, ChatServiceExt, ChatStream, Error, Message, Role, SessionId, UserId};
use tower_layer::Layer;
use tower_service::Service;

pub use policy::MemoryPolicy;
use policy::estimate_tokens;

use crate::{Filter, ListQuery, MemoryRecord, MemoryStore, NewMemory, Scope, SearchQuery};

/// A tower layer that gives a chat service memory (see the [module docs](crate::layer)).
///
/// Cheap to clone: the store is shared.
#[derive(Debug, Clone)]
pub struct MemoryLayer {
    store: Arc<dyn MemoryStore>,
    policy: Arc<MemoryPolicy>,
}

impl MemoryLayer {
    /// Remembers in `store` as `policy` says.
    pub fn new(store: impl MemoryStore + 'static, policy: MemoryPolicy) -> Self {
        MemoryLayer {
            store: Arc::new(store),
            policy: Arc::new(policy),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }
}

impl<S> Layer<S> for MemoryLayer {
    type Service = Memory<S>;

    fn layer(&self, inner: S) -> Memory<S> {
        Memory {
            inner,
            layer: self.clone(),
        }
    }
}

/// A chat service with memory; made by [`MemoryLayer`].
///
/// Errors of the inner service pass through unchanged. The layer adds
/// [`Error::InvalidRequest`] for a request without a [`SessionId`], and store failures
/// (as [`Error::Other`] carrying the [`MemoryError`](crate::MemoryError)): before the call
/// they fail it; after the stream, a failed recording is the stream's last item, so a turn
/// that was not remembered is never silent.
#[derive(Debug, Clone)]
pub struct Memory<S> {
    inner: S,
    layer: MemoryLayer,
}

impl<S> Memory<S> {
    /// `inner`, remembering as `layer` says.
    pub fn new(inner: S, layer: MemoryLayer) -> Self {
        Memory { inner, layer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future a [`Memory`] service returns: recall, then the inner call.
pub type ResponseFuture = Pin<Box<dyn Future<Output = any_core::Result<ChatStream>> + Send>>;

impl<S> Service<ChatRequest> for Memory<S>
where
    S: Service<ChatRequest, Response = ChatStream, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatStream;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<any_core::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ChatRequest) -> ResponseFuture {
        // The ready service answers this call; the clone waits for the next `poll_ready`.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let Some(SessionId(session)) = request.extensions.get::<SessionId>().cloned() else {
                return Err(Error::InvalidRequest(
                    "the memory layer needs the request's SessionId extension (which \
                     conversation this is)"
                        .into(),
                ));
            };
            let user = request.extensions.get::<UserId>().map(|u| u.0.clone());
            let mut scope = Scope::session(session);
            scope.user = user;
            scope.agent = layer.policy.agent.clone();
            let turn = last_user_text(&request);
            let request = recall(&layer, &scope, request).await?;
            let stream = inner.call(request).await?;
            Ok(match turn {
                Some(text) => stream.map_stream(move |chunks| {
                    stream::record_turn(chunks, layer.store, scope, text)
                }),
                None => stream,
            })
        })
    }
}

/// The text of the request's last message, when it is the user's: the turn to record.
fn last_user_text(request: &ChatRequest) -> Option<String> {
    let last = request.messages.last()?;
    (last.role == Role::User).then(|| last.text().into_owned())
}

/// The metadata `kind` of recorded turns and of summaries.
const TURN: &str = "turn";
const SUMMARY: &str = "summary";

/// Puts the remembered context into `request`.
async fn recall(
    layer: &MemoryLayer,
    scope: &Scope,
    mut request: ChatRequest,
) -> any_core::Result<ChatRequest> {
    let policy = &layer.policy;
    let store = layer.store.as_ref();
    let session = Scope {
        user: None,
        ..scope.clone()
    };
    let mut budget = policy.token_budget;

    // The window, newest first, as far as the budget goes.
    let recent = store
        .list(
            ListQuery::new(session.clone())
                .filter(Filter::eq("kind", TURN))
                .newest_first()
                .limit(policy.window * 2),
        )
        .await?;
    let mut window: Vec<&MemoryRecord> = Vec::new();
    for r in &recent {
        let cost = estimate_tokens(&r.text);
        if cost > budget {
            break;
        }
        budget -= cost;
        window.push(r);
    }
    window.reverse();

    let summary = match &policy.summarizer {
        Some(model) => summarize(store, policy, &session, &recent, model).await?,
        None => None,
    }
    .filter(|s| estimate_tokens(&s.text) <= budget);
    if let Some(s) = &summary {
        budget -= estimate_tokens(&s.text);
    }

    let mut recalled = Vec::new();
    let query = last_user_text(&request).filter(|t| !t.trim().is_empty());
    if let (true, Some(query)) = (policy.recall > 0, query) {
        let wide = Scope {
            session: if scope.user.is_some() {
                None
            } else {
                scope.session.clone()
            },
            ..scope.clone()
        };
        let search = SearchQuery::new(wide, policy.retrieval)
            .with_text(query)
            .top_k(policy.recall + recent.len())
            .filter(Filter::eq("kind", SUMMARY).not());
        for hit in store.search(search).await? {
            if recalled.len() == policy.recall {
                break;
            }
            if recent.iter().any(|r| r.id == hit.record.id) {
                continue;
            }
            let cost = estimate_tokens(&hit.record.text) + 2;
            if cost > budget {
                continue;
            }
            budget -= cost;
            recalled.push(hit.record);
        }
    }

    let mut context = Vec::new();
    if let Some(s) = summary {
        context.push(Message::system(format!(
            "Summary of this conversation so far:\n{}",
            s.text
        )));
    }
    if !recalled.is_empty() {
        let mut text = String::from("Relevant memories from earlier conversations:");
        for r in &recalled {
            text.push_str(&format!("\n- ({}) {}", r.role, r.text));
        }
        context.push(Message::system(text));
    }
    context.extend(window.iter().map(|r| Message::new(r.role, r.text.clone())));
    let at = request
        .messages
        .iter()
        .position(|m| m.role != Role::System)
        .unwrap_or(request.messages.len());
    request.messages.splice(at..at, context);
    Ok(request)
}

/// The session's summary, brought up to date first when the turns that left the window since
/// the last summary add up to more than the policy's threshold.
async fn summarize(
    store: &dyn MemoryStore,
    policy: &MemoryPolicy,
    session: &Scope,
    window: &[MemoryRecord],
    model: &any_core::BoxChatService,
) -> any_core::Result<Option<MemoryRecord>> {
    let latest = store
        .list(
            ListQuery::new(session.clone())
                .filter(Filter::eq("kind", SUMMARY))
                .newest_first()
                .limit(1),
        )
        .await?
        .pop();
    // A summary covers the session's first `covers` turn records in list order (time, then
    // insertion): positions, not times, since a question and its answer share a millisecond.
    let covered = latest
        .as_ref()
        .and_then(|s| s.metadata.get("covers").and_then(|v| v.as_u64()))
        .unwrap_or(0) as usize;
    let turns = store
        .list(ListQuery::new(session.clone()).filter(Filter::eq("kind", TURN)))
        .await?;
    let outside = turns.len().saturating_sub(window.len());
    let older = turns.get(covered..outside).unwrap_or_default();
    let pending: usize = older.iter().map(|r| estimate_tokens(&r.text)).sum();
    if older.is_empty() || pending <= policy.summarize_after {
        return Ok(latest);
    }
    let mut prompt = String::from(
        "Summarise this conversation for the assistant's memory: keep names, facts, \
         preferences, decisions and open questions; drop pleasantries. Answer with the \
         summary only.\n\n",
    );
    if let Some(s) = &latest {
        prompt.push_str(&format!("Summary so far:\n{}\n\nLater turns:\n", s.text));
    }
    for r in older {
        prompt.push_str(&format!("{}: {}\n", r.role, r.text));
    }
    let text = model.complete(&prompt).await?;
    let summary = store
        .add(
            NewMemory::new(session.clone(), Role::System, text.trim())
                .metadata("kind", SUMMARY)
                .metadata("covers", outside),
        )
        .await?;
    Ok(Some(summary))
}

/// `ServiceBuilder` methods for memory: `.memory(store, policy)`.
pub trait ServiceBuilderExt<L> {
    /// Gives the service memory in `store`, recalled as `policy` says.
    fn memory(
        self,
        store: impl MemoryStore + 'static,
        policy: MemoryPolicy,
    ) -> tower::ServiceBuilder<tower_layer::Stack<MemoryLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    fn memory(
        self,
        store: impl MemoryStore + 'static,
        policy: MemoryPolicy,
    ) -> tower::ServiceBuilder<tower_layer::Stack<MemoryLayer, L>> {
        self.layer(MemoryLayer::new(store, policy))
    }
}
