//! The cost of constrained decoding per token: decode speed of the same model with and
//! without a JSON Schema constraint, and the one-time costs (preparing the vocabulary for
//! llguidance on the first constrained request, compiling a schema on each).
//!
//! Run with `cargo bench -p any-llm --bench structured` (the default model, or `ANY_MODEL`;
//! `ANY_BENCH_THREADS` sets the threads, default all cores). Decode speed is measured from
//! the first streamed token to the last, so prompt evaluation is left out; each measurement
//! is the best of three runs. The mask alone is also timed, replaying the constrained answer's
//! tokens through a [`Constraint`](any_llm_local::constrain::Constraint) outside the model.

use std::time::{Duration, Instant};

use any_core::{ChatRequest, ChatServiceExt, ResponseFormat};
use any_llm_local::constrain::GrammarEngine;
use any_llm_local::tokenizer::EncodeOptions;
use any_llm_local::{LocalModel, LocalModelOptions, fetch};
use futures_util::StreamExt;
use serde_json::json;

const RUNS: usize = 3;
const MAX_TOKENS: u32 = 128;

/// Decode tokens per second of one request (tokens after the first, over the time from the
/// first chunk to the end), and how many tokens it generated.
async fn decode_speed(model: &LocalModel, req: ChatRequest) -> (f64, u32, Duration) {
    let start = Instant::now();
    let mut stream = model.stream(req).await.expect("the request starts");
    let call = start.elapsed();
    let mut first = None;
    let mut tokens = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("generation succeeds");
        first.get_or_insert_with(Instant::now);
        if let Some(u) = chunk.usage {
            tokens = u.completion_tokens;
        }
    }
    let elapsed = first.expect("at least one chunk").elapsed();
    (
        f64::from(tokens.saturating_sub(1)) / elapsed.as_secs_f64(),
        tokens,
        call,
    )
}

fn request(format: ResponseFormat) -> ChatRequest {
    ChatRequest::builder()
        .user("List ten famous scientists with their country and year of birth.")
        .temperature(0.0)
        .max_tokens(MAX_TOKENS)
        .response_format(format)
        .build()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = fetch::default_model_path().expect("the default model is available");
    let threads = std::env::var("ANY_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok());
    let model = LocalModel::open_with(
        path,
        LocalModelOptions {
            threads,
            ..Default::default()
        },
    )
    .expect("the model opens");
    let schema = json!({
        "type": "object",
        "properties": {"scientists": {"type": "array", "minItems": 10, "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "country": {"type": "string", "maxLength": 30},
                "born": {"type": "integer", "minimum": 1000, "maximum": 2020}
            },
            "required": ["name", "country", "born"],
            "additionalProperties": false
        }}},
        "required": ["scientists"],
        "additionalProperties": false
    });
    let constrained = ResponseFormat::JsonSchema {
        name: "scientists".into(),
        schema: schema.clone(),
        strict: true,
    };

    // The first constrained request also prepares the vocabulary for llguidance.
    let (_, _, first_call) = decode_speed(&model, request(constrained.clone())).await;
    let (mut free, mut json_mode, mut schema_mode) = (0.0f64, 0.0f64, 0.0f64);
    let (mut free_n, mut json_n, mut schema_n) = (0, 0, 0);
    let mut compile = Duration::MAX;
    for _ in 0..RUNS {
        let (s, n, _) = decode_speed(&model, request(ResponseFormat::Text)).await;
        free = free.max(s);
        free_n = n;
        let (s, n, _) = decode_speed(&model, request(ResponseFormat::Json)).await;
        json_mode = json_mode.max(s);
        json_n = n;
        let (s, n, call) = decode_speed(&model, request(constrained.clone())).await;
        schema_mode = schema_mode.max(s);
        schema_n = n;
        compile = compile.min(call);
    }
    // The mask alone: replay a constrained answer's tokens outside the model.
    let answer = model
        .chat(request(constrained.clone()))
        .await
        .expect("generation succeeds");
    let tokenizer = model.tokenizer();
    let ids = tokenizer.encode(
        answer.text(),
        EncodeOptions {
            add_special: false,
            parse_special: false,
        },
    );
    let t = Instant::now();
    let engine = GrammarEngine::new(tokenizer).expect("the vocabulary converts");
    let engine_time = t.elapsed();
    let mut mask_time = Duration::MAX;
    for _ in 0..RUNS {
        let mut constraint = engine.json_schema(&schema).expect("the schema compiles");
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        let mut total = Duration::ZERO;
        for &id in &ids {
            logits.fill(0.0);
            let t = Instant::now();
            constraint.mask(&mut logits).expect("a mask");
            total += t.elapsed();
            assert!(
                logits[id as usize].is_finite(),
                "the answer's tokens are allowed"
            );
            let t = Instant::now();
            constraint.accept(id).expect("an allowed token");
            total += t.elapsed();
        }
        mask_time = mask_time.min(total);
    }

    let info = model.info();
    println!("model: {} ({} threads)", info.name, info.threads);
    println!("decode, unconstrained:        {free:7.1} tok/s ({free_n} tokens)");
    println!("decode, JSON object:          {json_mode:7.1} tok/s ({json_n} tokens)");
    println!("decode, JSON Schema:          {schema_mode:7.1} tok/s ({schema_n} tokens)");
    println!(
        "schema minus unconstrained, per token: {:+.2} ms",
        (1.0 / schema_mode - 1.0 / free) * 1e3
    );
    println!(
        "mask alone, replaying the answer's {} tokens: {:.0} µs per token",
        ids.len(),
        mask_time.as_secs_f64() * 1e6 / ids.len() as f64
    );
    println!(
        "vocabulary prepared for llguidance: {:.0} ms",
        engine_time.as_secs_f64() * 1e3
    );
    println!(
        "first constrained request, until its stream starts (vocabulary + schema): {:.0} ms",
        first_call.as_secs_f64() * 1e3
    );
    println!(
        "later requests, until the stream starts (schema compile):                {:.1} ms",
        compile.as_secs_f64() * 1e3
    );
}
