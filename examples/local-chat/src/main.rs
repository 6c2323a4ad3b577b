//! Run with `cargo run --release -p example-local-chat`
//!
//! A two-turn conversation with the embedded default model (SmolLM2-135M-Instruct), streamed
//! token by token. No key, no network after the first run (which downloads the model once).

use std::io::Write;

use any_core::{ChatRequest, ChatServiceExt, Message};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> any_core::Result<()> {
    // ANCHOR: open
    let model = any_llm::local::default_model().await?;
    // ANCHOR_END: open
    let info = model.info();
    println!(
        "{} · {} layers · {}-token context\n",
        info.name, info.config.n_layer, info.context
    );

    let mut messages = vec![Message::system("You are a concise assistant.")];
    for question in [
        "What is the capital of France?",
        "And roughly how many people live there?",
    ] {
        println!("> {question}");
        messages.push(Message::user(question));
        // ANCHOR: stream
        let request = ChatRequest::builder()
            .messages(messages.clone())
            .temperature(0.0)
            .max_tokens(64)
            .build();
        let mut stream = model.stream(request).await?;
        let mut answer = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            print!("{}", chunk.text);
            std::io::stdout().flush()?;
            answer.push_str(&chunk.text);
            if let Some(usage) = chunk.usage {
                println!(
                    "\n[{} prompt tokens, {} reused from the previous turn, {} generated]\n",
                    usage.prompt_tokens,
                    usage.cached_prompt_tokens.unwrap_or(0),
                    usage.completion_tokens
                );
            }
        }
        // ANCHOR_END: stream
        messages.push(Message::assistant(answer));
    }
    Ok(())
}
