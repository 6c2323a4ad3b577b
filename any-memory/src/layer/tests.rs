//! The layer's own logic, against a mock model: what it sends down, what it records.

use std::time::Duration;

use any_core::{
    ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason, Role, SessionId,
    UserId, Verdict,
};
use futures_util::StreamExt;
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::*;
use crate::InMemoryStore;

type Handle = mock::Handle<ChatRequest, ChatStream>;

fn stack(store: &InMemoryStore, policy: MemoryPolicy) -> (impl any_core::ChatService, Handle) {
    let (mock, handle) = mock::pair::<ChatRequest, ChatStream>();
    let svc = MemoryLayer::new(store.clone(), policy).layer(mock.map_err(Error::from_boxed));
    (svc, handle)
}

fn ask(session: &str, user: Option<&str>, text: &str) -> ChatRequest {
    let mut b = ChatRequest::builder()
        .system("Be brief.")
        .user(text)
        .extension(SessionId(session.into()));
    if let Some(u) = user {
        b = b.extension(UserId(u.into()));
    }
    b.build()
}

fn answer(text: &str) -> ChatStream {
    ChatStream::from_chunks(vec![
        ChatChunk::text(text),
        ChatChunk::finish(FinishReason::Stop, None),
    ])
}

async fn turns(store: &InMemoryStore, session: &str) -> Vec<(Role, String)> {
    store
        .list(ListQuery::new(Scope::session(session)))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.role, r.text))
        .collect()
}

async fn seed(store: &InMemoryStore, scope: Scope, pairs: &[(&str, &str)]) {
    for (q, a) in pairs {
        store
            .add_many(vec![
                NewMemory::new(scope.clone(), Role::User, *q).metadata("kind", TURN),
                NewMemory::new(scope.clone(), Role::Assistant, *a).metadata("kind", TURN),
            ])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn recall_goes_down_and_the_turn_is_recorded_after_a_clean_end() {
    let store = InMemoryStore::new();
    let ada = Scope::user("ada");
    seed(
        &store,
        ada.clone().with_session("old"),
        &[("My dog is called Pixel", "Nice name!")],
    )
    .await;
    seed(
        &store,
        ada.clone().with_session("now"),
        &[
            ("hello", "hi"),
            ("how are you", "fine"),
            ("the weather?", "sunny"),
        ],
    )
    .await;
    let (svc, mut handle) = stack(&store, MemoryPolicy::window(2).recall(2));
    let call = tokio::spawn(svc.oneshot(ask("now", Some("ada"), "What is my dog called?")));
    let (request, respond) = handle.next_request().await.unwrap();
    let seen: Vec<(Role, String)> = request
        .messages
        .iter()
        .map(|m| (m.role, m.text().into_owned()))
        .collect();
    assert_eq!(seen[0], (Role::System, "Be brief.".into()));
    assert_eq!(seen[1].0, Role::System);
    assert!(
        seen[1].1.contains("(user) My dog is called Pixel"),
        "{}",
        seen[1].1
    );
    // Only the last two turns of this session, in order, then the new message.
    assert_eq!(
        seen[2..],
        [
            (Role::User, "how are you".into()),
            (Role::Assistant, "fine".into()),
            (Role::User, "the weather?".into()),
            (Role::Assistant, "sunny".into()),
            (Role::User, "What is my dog called?".into()),
        ]
    );
    respond.send_response(answer("Pixel."));
    let mut stream = call.await.unwrap().unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.text, "Pixel.");
    // Not recorded until the stream has ended.
    assert_eq!(turns(&store, "now").await.len(), 6);
    while let Some(c) = stream.next().await {
        c.unwrap();
    }
    let t = turns(&store, "now").await;
    assert_eq!(t.len(), 8);
    assert_eq!(t[6], (Role::User, "What is my dog called?".into()));
    assert_eq!(t[7], (Role::Assistant, "Pixel.".into()));
    let rec = store
        .list(ListQuery::new(Scope::session("now")))
        .await
        .unwrap();
    assert_eq!(rec[7].scope, Scope::user("ada").with_session("now"));
}

#[tokio::test]
async fn nothing_is_recorded_when_the_call_fails_is_blocked_or_the_stream_errs() {
    let store = InMemoryStore::new();
    let (svc, mut handle) = stack(&store, MemoryPolicy::default());

    let call = tokio::spawn(svc.clone().oneshot(ask("s", None, "one")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error(Error::Timeout("30s".into()));
    assert!(matches!(call.await.unwrap(), Err(Error::Timeout(_))));

    let call = tokio::spawn(svc.clone().oneshot(ask("s", None, "two")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error(Error::Blocked(Box::new(Verdict::fail(
        "deny",
        1.0,
        "deny_list",
        "no",
    ))));
    assert!(matches!(call.await.unwrap(), Err(Error::Blocked(_))));

    let call = tokio::spawn(svc.clone().oneshot(ask("s", None, "three")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(ChatStream::new(futures_util::stream::iter(vec![
        Ok(ChatChunk::text("partial")),
        Err(Error::Provider {
            provider: "p".into(),
            status: Some(502),
            message: "gone".into(),
        }),
    ])));
    assert!(
        call.await
            .unwrap()
            .unwrap()
            .collect_response()
            .await
            .is_err()
    );

    // An output guard that blocks ends the stream with a content filter.
    let call = tokio::spawn(svc.clone().oneshot(ask("s", None, "four")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(ChatStream::from_chunks(vec![
        ChatChunk::text("some"),
        ChatChunk::finish(FinishReason::ContentFilter, None),
    ]));
    call.await
        .unwrap()
        .unwrap()
        .collect_response()
        .await
        .unwrap();

    assert!(turns(&store, "s").await.is_empty());
}

#[tokio::test]
async fn a_stream_dropped_before_its_end_records_nothing() {
    let store = InMemoryStore::new();
    let (svc, mut handle) = stack(&store, MemoryPolicy::default());
    let call = tokio::spawn(svc.oneshot(ask("s", None, "tell me a story")));
    let (_, respond) = handle.next_request().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<any_core::Result<ChatChunk>>();
    respond.send_response(ChatStream::new(tokio_stream_from(rx)));
    let mut stream = call.await.unwrap().unwrap();
    tx.send(Ok(ChatChunk::text("Once upon"))).unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().text, "Once upon");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(turns(&store, "s").await.is_empty());
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_request_without_a_session_fails_before_the_model() {
    let store = InMemoryStore::new();
    let (svc, mut handle) = stack(&store, MemoryPolicy::default());
    let err = svc.oneshot(ChatRequest::from("hi")).await.unwrap_err();
    assert!(err.to_string().contains("SessionId"), "{err}");
    handle.allow(0);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), handle.next_request())
            .await
            .map_or(true, |r| r.is_none())
    );
}

#[tokio::test]
async fn the_token_budget_keeps_the_newest_turns() {
    let store = InMemoryStore::new();
    let long = "x".repeat(400); // 100 estimated tokens
    seed(&store, Scope::session("s"), &[(&long, "a1"), ("q2", "a2")]).await;
    let (svc, mut handle) = stack(&store, MemoryPolicy::window(8).recall(0).token_budget(50));
    let call = tokio::spawn(svc.oneshot(ask("s", None, "next")));
    let (request, respond) = handle.next_request().await.unwrap();
    let texts: Vec<String> = request
        .messages
        .iter()
        .map(|m| m.text().into_owned())
        .collect();
    // Newest first until the budget is spent: "a1" fits, the long question does not, so the
    // window stops there.
    assert_eq!(texts, ["Be brief.", "a1", "q2", "a2", "next"]);
    respond.send_response(answer("ok"));
    call.await
        .unwrap()
        .unwrap()
        .collect_response()
        .await
        .unwrap();
}

#[tokio::test]
async fn old_turns_are_summarised_once_they_leave_the_window() {
    let store = InMemoryStore::new();
    seed(
        &store,
        Scope::session("s"),
        &[
            ("I live in Porto", "Noted."),
            ("I have two cats", "Lovely."),
            ("what now?", "Anything."),
        ],
    )
    .await;
    let (summarizer, mut sum_handle) = mock::pair::<ChatRequest, ChatStream>();
    let summarizer = summarizer.map_err(Error::from_boxed).boxed_chat();
    let policy = MemoryPolicy::window(1)
        .recall(0)
        .summarize_with(summarizer, 1);
    let (svc, mut handle) = stack(&store, policy);
    let call = tokio::spawn(svc.clone().oneshot(ask("s", None, "remind me")));
    let (sum_req, sum_respond) = sum_handle.next_request().await.unwrap();
    let prompt = sum_req.messages[0].text().into_owned();
    assert!(
        prompt.contains("user: I live in Porto") && prompt.contains("assistant: Lovely."),
        "{prompt}"
    );
    assert!(
        !prompt.contains("what now?"),
        "the window's turn was summarised: {prompt}"
    );
    sum_respond.send_response(answer("Lives in Porto; two cats."));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(
        request.messages[1].text(),
        "Summary of this conversation so far:\nLives in Porto; two cats."
    );
    assert_eq!(request.messages[2].text(), "what now?");
    respond.send_response(answer("ok"));
    call.await
        .unwrap()
        .unwrap()
        .collect_response()
        .await
        .unwrap();

    // One more turn has left the window (over the 1-token threshold): the summariser gets the
    // old summary and that turn only.
    let call = tokio::spawn(svc.oneshot(ask("s", None, "and?")));
    let (sum_req, sum_respond) = sum_handle.next_request().await.unwrap();
    let prompt = sum_req.messages[0].text().into_owned();
    assert!(
        prompt.contains("Summary so far:\nLives in Porto; two cats."),
        "{prompt}"
    );
    assert!(
        prompt.contains("what now?") && !prompt.contains("I live in Porto"),
        "{prompt}"
    );
    sum_respond.send_response(answer("Porto, two cats, asked what now."));
    let (request, respond) = handle.next_request().await.unwrap();
    assert!(
        request.messages[1]
            .text()
            .ends_with("Porto, two cats, asked what now.")
    );
    respond.send_response(answer("ok"));
    call.await
        .unwrap()
        .unwrap()
        .collect_response()
        .await
        .unwrap();
    let summaries = store
        .list(ListQuery::new(Scope::session("s")).filter(Filter::eq("kind", SUMMARY)))
        .await
        .unwrap();
    assert_eq!(summaries.len(), 2);
}

/// A store whose writes fail: the layer must say so at the end of the stream.
#[derive(Debug, Clone, Default)]
struct ReadOnly(InMemoryStore);

impl MemoryStore for ReadOnly {
    fn add_many(
        &self,
        _: Vec<NewMemory>,
    ) -> crate::BoxFuture<'_, crate::Result<Vec<MemoryRecord>>> {
        Box::pin(async {
            Err(crate::MemoryError::Backend {
                store: "read-only",
                message: "the disk is full".into(),
                source: None,
            })
        })
    }
    fn get<'a>(
        &'a self,
        id: &'a crate::MemoryId,
    ) -> crate::BoxFuture<'a, crate::Result<Option<MemoryRecord>>> {
        self.0.get(id)
    }
    fn list(&self, q: ListQuery) -> crate::BoxFuture<'_, crate::Result<Vec<MemoryRecord>>> {
        self.0.list(q)
    }
    fn update<'a>(
        &'a self,
        id: &'a crate::MemoryId,
        u: crate::MemoryUpdate,
    ) -> crate::BoxFuture<'a, crate::Result<MemoryRecord>> {
        self.0.update(id, u)
    }
    fn delete<'a>(&'a self, id: &'a crate::MemoryId) -> crate::BoxFuture<'a, crate::Result<bool>> {
        self.0.delete(id)
    }
    fn clear<'a>(&'a self, s: &'a Scope) -> crate::BoxFuture<'a, crate::Result<u64>> {
        self.0.clear(s)
    }
    fn search(&self, q: SearchQuery) -> crate::BoxFuture<'_, crate::Result<Vec<crate::Scored>>> {
        self.0.search(q)
    }
}

#[tokio::test]
async fn a_turn_that_could_not_be_recorded_ends_the_stream_with_the_error() {
    let (mock, mut handle) = mock::pair::<ChatRequest, ChatStream>();
    let svc = MemoryLayer::new(ReadOnly::default(), MemoryPolicy::default())
        .layer(mock.map_err(Error::from_boxed));
    let call = tokio::spawn(svc.oneshot(ask("s", None, "remember this")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(answer("I will."));
    let mut stream = call.await.unwrap().unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().text, "I will.");
    let _finish = stream.next().await.unwrap().unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("the disk is full"), "{err}");
    assert!(stream.next().await.is_none());
}
