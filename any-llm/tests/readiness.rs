//! The resilience layers answer `poll_ready` from the services below them, so a `LoadShed`
//! (or a `ConcurrencyLimit`) above them sees backpressure, and readiness comes back once the
//! service below is ready again.

use std::task::Poll;
use std::time::Duration;

use any_core::{BoxError, ChatChunk, ChatRequest, ChatService, ChatStream, Error};
use any_llm::resilience::{FallbackLayer, RetryLayer, TimeoutLayer, balance};
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_test::mock::{self, Handle, Spawn};

type Mock = mock::Mock<ChatRequest, ChatStream>;

/// A mock chat service, not ready until its handle allows it.
fn blocked() -> (
    impl ChatService + Sync + use<>,
    Handle<ChatRequest, ChatStream>,
) {
    let (service, mut handle) = mock::pair::<ChatRequest, ChatStream>();
    handle.allow(0);
    let service = ServiceBuilder::new()
        .map_err(Error::from_boxed as fn(BoxError) -> Error)
        .service::<Mock>(service);
    (service, handle)
}

/// Answers the next request `handle` receives with `text`.
async fn answer(handle: &mut Handle<ChatRequest, ChatStream>, text: &'static str) {
    let (_, respond) = handle.next_request().await.expect("a request");
    respond.send_response(ChatStream::from_chunks(vec![ChatChunk::text(text)]));
}

/// `svc` over a blocked service is not ready, becomes ready when the service below is, and
/// its call reaches that service.
async fn propagates<S: ChatService>(svc: S, handle: &mut Handle<ChatRequest, ChatStream>) {
    let mut svc = Spawn::new(svc);
    assert!(svc.poll_ready().is_pending(), "ready, expected pending");
    assert!(svc.poll_ready().is_pending(), "ready, expected pending");
    handle.allow(1);
    assert!(
        svc.is_woken(),
        "readiness below wakes the task waiting above"
    );
    assert!(
        matches!(svc.poll_ready(), Poll::Ready(Ok(()))),
        "expected ready"
    );
    let call = svc.call(ChatRequest::from("hi"));
    let (stream, ()) = tokio::join!(call, answer(handle, "below"));
    let response = stream
        .expect("a stream")
        .collect_response()
        .await
        .expect("an answer");
    assert_eq!(response.text(), "below");
    // The call used the permit: the service is not ready again until allowed again.
    assert!(svc.poll_ready().is_pending(), "ready, expected pending");
}

/// `LoadShed` over `svc` over a blocked service sheds the request instead of queueing it.
async fn sheds<S: ChatService>(svc: S) {
    let mut shed = LoadShed::new(svc);
    let err = shed
        .ready()
        .await
        .expect("LoadShed is always ready")
        .call(ChatRequest::from("hi"))
        .await
        .expect_err("shed");
    assert!(err.is::<Overloaded>(), "{err}");
}

#[tokio::test]
async fn retry_is_ready_when_its_inner_service_is() {
    let (inner, mut handle) = blocked();
    propagates(RetryLayer::new().layer(inner), &mut handle).await;
    let (inner, _handle) = blocked();
    sheds(RetryLayer::new().layer(inner)).await;
}

#[tokio::test]
async fn timeout_is_ready_when_its_inner_service_is() {
    let layer = TimeoutLayer::first_chunk(Duration::from_secs(5));
    let (inner, mut handle) = blocked();
    propagates(layer.layer(inner), &mut handle).await;
    let (inner, _handle) = blocked();
    sheds(layer.layer(inner)).await;
}

#[tokio::test]
async fn fallback_is_ready_when_its_primary_is_whatever_the_fallback() {
    // A ready fallback does not make a blocked primary ready.
    let (backup, _backup_handle) = mock::pair::<ChatRequest, ChatStream>();
    let backup = ServiceBuilder::new()
        .map_err(Error::from_boxed)
        .service(backup);
    let (primary, mut handle) = blocked();
    propagates(
        FallbackLayer::new(backup.clone()).layer(primary),
        &mut handle,
    )
    .await;
    let (primary, _handle) = blocked();
    sheds(FallbackLayer::new(backup).layer(primary)).await;
}

#[tokio::test]
async fn balance_is_ready_when_some_endpoint_is() {
    let (a, mut a_handle) = blocked();
    let (b, mut b_handle) = blocked();
    let mut svc = Spawn::new(balance([a, b]));
    assert!(svc.poll_ready().is_pending(), "ready, expected pending");
    // Only b becomes ready: the balance is ready, and the call goes to b.
    b_handle.allow(1);
    assert!(svc.is_woken());
    assert!(
        matches!(svc.poll_ready(), Poll::Ready(Ok(()))),
        "expected ready"
    );
    let call = svc.call(ChatRequest::from("hi"));
    let (stream, ()) = tokio::join!(call, answer(&mut b_handle, "b"));
    let response = stream
        .expect("a stream")
        .collect_response()
        .await
        .expect("an answer");
    assert_eq!(response.text(), "b");
    assert!(svc.poll_ready().is_pending(), "ready, expected pending");
    a_handle.allow(1);
    assert!(
        matches!(svc.poll_ready(), Poll::Ready(Ok(()))),
        "expected ready"
    );

    let (a, _a) = blocked();
    let (b, _b) = blocked();
    sheds(balance([a, b])).await;
}
