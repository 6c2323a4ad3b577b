//! Resilience layers over real loopback endpoints: two servers of one model, one failing.
#![cfg(feature = "http")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use any_core::{ChatServiceExt, Error};
use any_llm::http::HttpClient;
use any_llm::providers::Connection;
use any_llm::providers::anthropic::AnthropicChat;
use any_llm::resilience::{FallbackLayer, FellBack, RetryLayer, TimeoutLayer, balance};
use axum::body::Body;
use axum::response::Response;
use serde_json::json;
use tower::{Layer, ServiceBuilder};

/// A Messages endpoint that answers `name` (or is overloaded, when `healthy` is false), and
/// counts the requests it gets.
async fn endpoint(name: &'static str, healthy: bool) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let handler = move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if healthy {
                (
                    200,
                    json!({"type": "message", "role": "assistant", "model": name,
                    "content": [{"type": "text", "text": name}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 1, "output_tokens": 1}}),
                )
            } else {
                (
                    529,
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                )
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        }
    };
    let app = axum::Router::new().route("/v1/messages", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

fn claude(base: &str) -> AnthropicChat {
    let c = Connection::new(
        "anthropic",
        base,
        Some("k".into()),
        HttpClient::shared().unwrap(),
    );
    AnthropicChat::new(c, "m").unwrap()
}

#[tokio::test]
async fn retry_over_a_balance_routes_around_the_failing_endpoint() {
    let (good, good_hits) = endpoint("good", true).await;
    let (bad, bad_hits) = endpoint("bad", false).await;
    let model = ServiceBuilder::new()
        .layer(RetryLayer::new().initial_backoff(Duration::from_millis(1)))
        .layer(TimeoutLayer::total(Duration::from_secs(10)))
        .service(balance([claude(&good), claude(&bad)]));
    for _ in 0..20 {
        assert_eq!(model.complete("hi").await.unwrap(), "good");
    }
    assert_eq!(good_hits.load(Ordering::SeqCst), 20);
    // The failing endpoint is rested after its first failure.
    assert!(
        bad_hits.load(Ordering::SeqCst) <= 1,
        "requests sent to the failing endpoint"
    );
}

#[tokio::test]
async fn fallback_to_a_second_endpoint_and_errors_without_one() {
    let (good, _) = endpoint("good", true).await;
    let (bad, bad_hits) = endpoint("bad", false).await;
    let model = FallbackLayer::new(claude(&good)).layer(claude(&bad));
    let response = model.chat("hi").await.unwrap();
    assert_eq!(response.text(), "good");
    let fell_back = response.extensions.get::<FellBack>().unwrap();
    assert!(
        fell_back.reason.contains("Overloaded"),
        "{}",
        fell_back.reason
    );

    // Retry alone gives up after its attempts and returns the provider's error.
    let only_bad = RetryLayer::new()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(1))
        .layer(claude(&bad));
    let before = bad_hits.load(Ordering::SeqCst);
    let err = only_bad.complete("hi").await.unwrap_err();
    assert!(matches!(
        err,
        Error::Provider {
            status: Some(529),
            ..
        }
    ));
    assert_eq!(bad_hits.load(Ordering::SeqCst) - before, 3);
}
