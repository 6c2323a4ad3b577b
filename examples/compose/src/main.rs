//! Run with `cargo run --release -p example-compose`
//!
//! A stack of tower layers over the local default model: a house system prompt added to every
//! request, a timeout that comes back as `Error::Timeout`, a concurrency limit, and type erasure
//! to one `BoxChatService` — the shape every any-suite layer (guardrails, memory, agents) plugs
//! into.

use std::time::Duration;

use any_core::{BoxChatService, ChatRequest, ChatServiceExt, Error, Message, Role};
use tower::ServiceBuilder;

// ANCHOR: stack
/// Puts the house rules first, unless the caller brought a system prompt of its own.
fn with_house_rules(mut req: ChatRequest) -> ChatRequest {
    if req.messages.first().is_none_or(|m| m.role != Role::System) {
        req.messages
            .insert(0, Message::system("Answer in one short sentence."));
    }
    req
}

async fn build_stack() -> any_core::Result<BoxChatService> {
    let model = any_llm::local::default_model().await?;
    let stack = ServiceBuilder::new()
        .map_request(with_house_rules)
        // tower's timeout boxes its error; map it back to any-core's `Error`.
        .map_err(Error::from_boxed)
        .timeout(Duration::from_secs(60))
        .concurrency_limit(4)
        .service(model);
    Ok(stack.boxed_chat())
}
// ANCHOR_END: stack

#[tokio::main]
async fn main() -> any_core::Result<()> {
    // ANCHOR: use
    let stack = build_stack().await?;
    let request = ChatRequest::builder()
        .user("Why is the sky blue?")
        .temperature(0.0)
        .max_tokens(48)
        .build();
    let response = stack.chat(request).await?;
    println!("{}", response.text());
    // ANCHOR_END: use
    if let Some(usage) = response.usage {
        println!(
            "({} prompt tokens, {} generated)",
            usage.prompt_tokens, usage.completion_tokens
        );
    }
    Ok(())
}
