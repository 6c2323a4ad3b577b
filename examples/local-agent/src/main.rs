//! Run with `cargo run --release -p example-local-agent`
//!
//! An agent on the embedded default model (SmolLM2-135M-Instruct) with two typed tools: the
//! model calls a tool (its arguments constrained to the tool's schema, so the call is always
//! well-formed), reads the result, and answers. The run's trace is printed as JSON. No key,
//! no network after the first run (which downloads the model once).

use any_agent::{Agent, AgentTrace, ToolError, tool_fn};
use any_core::{ChatRequest, ChatServiceExt, ToolChoice};
use schemars::JsonSchema;
use serde::Deserialize;

// ANCHOR: tools
/// Arguments of `add`. Unknown fields are refused, so the schema says
/// `additionalProperties: false` and the model can write nothing else.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Add {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

/// Arguments of `to_celsius`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Fahrenheit {
    /// Degrees Fahrenheit.
    degrees: f64,
}
// ANCHOR_END: tools

#[tokio::main]
async fn main() -> any_core::Result<()> {
    let model = any_llm::local::default_model().await?;
    // ANCHOR: agent
    let agent = Agent::builder(model)
        .name("calculator")
        .instructions("You answer questions about numbers. Use a tool, then give its result.")
        .tool(tool_fn("add", "Adds two numbers.", |x: Add| async move {
            Ok::<_, ToolError>(x.a + x.b)
        }))
        .tool(tool_fn(
            "to_celsius",
            "Converts a temperature from Fahrenheit to Celsius.",
            |f: Fahrenheit| async move { Ok::<_, ToolError>((f.degrees - 32.0) * 5.0 / 9.0) },
        ))
        .max_steps(3)
        .build()?;
    // ANCHOR_END: agent

    for question in [
        "What is 1234 plus 4321?",
        "What is 212 degrees Fahrenheit in Celsius?",
    ] {
        println!("> {question}");
        // ANCHOR: run
        // A 135M model seldom decides to call a tool by itself: `tool_choice` required makes
        // the first turn a call (later turns choose freely, so the model can answer).
        let request = ChatRequest::builder()
            .user(question)
            .tool_choice(ToolChoice::Required)
            .temperature(0.0)
            .max_tokens(64)
            .build();
        let answer = agent.chat(request).await?;
        // ANCHOR_END: run
        println!("{}\n", answer.text());
        if let Some(trace) = answer.extensions.get::<AgentTrace>() {
            println!("{}\n", trace.to_json());
        }
    }
    Ok(())
}
