//! Run with `cargo run --release -p example-switch-providers -- [provider:model]`
//!
//! The same code over any model: the embedded default model (`local`, the default: no key,
//! no network after the first run), or any OpenAI-compatible server or hosted API chosen by
//! the argument or the `ANY_EXAMPLE_MODEL` variable — `ollama:gemma3:4b`,
//! `llamacpp:any`, `openai:gpt-4o-mini` (with `OPENAI_API_KEY`), `anthropic:...`. When the
//! chosen model fails with an error worth retrying (the server is down, overloaded, slow),
//! the answer comes from the local model instead, and the program says so.

use std::io::Write;
use std::time::Duration;

use any_core::{ChatRequest, ChatServiceExt};
use any_llm::resilience::{FallbackLayer, FellBack, RetryLayer, TimeoutLayer};
use futures_util::StreamExt;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> any_core::Result<()> {
    let id = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ANY_EXAMPLE_MODEL").ok())
        .unwrap_or_else(|| "local".to_owned());

    // ANCHOR: stack
    let chosen = any_llm::model(&id)?;
    let model = ServiceBuilder::new()
        // Last resort: the built-in model, always there.
        .layer(FallbackLayer::new(any_llm::model("local")?))
        // Two more tries on rate limits, overloads and dropped connections.
        .layer(RetryLayer::new().max_attempts(3))
        // A server that does not start answering within 30 s counts as down.
        .layer(TimeoutLayer::first_chunk(Duration::from_secs(30)))
        .service(chosen);
    // ANCHOR_END: stack

    // ANCHOR: ask
    let request = ChatRequest::builder()
        .system("You are a concise assistant.")
        .user("Name three primary colours.")
        .max_tokens(64)
        .temperature(0.0)
        .build();
    let mut stream = model.stream(request).await?;
    if let Some(fell_back) = stream.extensions().get::<FellBack>() {
        eprintln!(
            "({id} failed: {}; answering with the local model)",
            fell_back.reason
        );
    }
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        stdout.write_all(chunk?.text.as_bytes())?;
        stdout.flush()?;
    }
    writeln!(stdout)?;
    // ANCHOR_END: ask
    Ok(())
}
