//! What the OpenAI-compatible server adds over calling a chat service directly.
//!
//! Run with `cargo bench -p any-llm --features server --bench server`. The service is a
//! trivial in-process one (three text chunks and a finish, no model), so the figures measure
//! the server — JSON parsing, the conversions, HTTP/1.1 on loopback, SSE framing — not a
//! model:
//!
//! - `direct`: `ChatServiceExt::chat` on the service, the baseline;
//! - `http/whole` and `http/stream`: one request at a time through the server on loopback
//!   (a kept-alive connection), non-streamed and streamed: the latency a client sees;
//! - `throughput/16-in-flight`: 64 non-streamed requests, 16 in flight at once, reported as
//!   requests per second.

use std::hint::black_box;

use any_core::{ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason, Usage};
use any_llm::server::Server;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;

const BODY: &str = r#"{"model": "bench", "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello in three words."}], "max_tokens": 16}"#;

fn trivial() -> impl any_core::ChatService + Sync {
    tower::service_fn(|_req: ChatRequest| async {
        Ok::<_, Error>(ChatStream::from_chunks(vec![
            ChatChunk::text("Hello"),
            ChatChunk::text(" there"),
            ChatChunk::text(" friend."),
            ChatChunk::finish(
                FinishReason::Stop,
                Some(Usage {
                    prompt_tokens: 20,
                    completion_tokens: 3,
                    cached_prompt_tokens: None,
                }),
            ),
        ]))
    })
}

fn server_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let service = trivial();
    let request: ChatRequest =
        serde_json::from_str::<any_llm::wire::openai::ChatCompletionRequest>(BODY)
            .expect("parses")
            .into_chat_request()
            .expect("converts");

    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let server = Server::builder()
            .chat(trivial())
            .models(["bench"])
            .max_concurrency(1024)
            .build();
        tokio::spawn(server.serve(listener, std::future::pending()));
        format!("http://{addr}/v1/chat/completions")
    });
    let client = reqwest::Client::new();
    let post = |body: String| {
        let req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = req.send().await.expect("answers");
            assert_eq!(r.status(), 200);
            r.bytes().await.expect("a body")
        }
    };
    let stream_body = BODY.replacen('{', r#"{"stream": true, "#, 1);

    let mut g = c.benchmark_group("server");
    g.sample_size(30);
    g.bench_function("direct", |b| {
        b.iter(|| rt.block_on(async { black_box(service.chat(request.clone()).await) }))
    });
    g.bench_function("http/whole", |b| {
        b.iter(|| rt.block_on(post(BODY.to_owned())))
    });
    g.bench_function("http/stream", |b| {
        b.iter(|| rt.block_on(post(stream_body.clone())))
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("throughput/16-in-flight", |b| {
        b.iter(|| {
            rt.block_on(async {
                futures_util::stream::iter(0..64)
                    .map(|_| post(BODY.to_owned()))
                    .buffer_unordered(16)
                    .for_each(|b| async move {
                        black_box(b);
                    })
                    .await
            })
        })
    });
    g.finish();
}

criterion_group!(benches, server_overhead);
criterion_main!(benches);
