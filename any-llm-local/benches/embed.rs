//! Sentence-encoder throughput: sentences per second at batch 1 (one text per request) and
//! batch 32 (32 texts per request), on the user and assistant turns of the memory example's
//! conversation (`examples/memory-chat/data/recall.jsonl`, 860 short turns).
//!
//! Run with `cargo bench -p any-llm-local --bench embed` (the default sentence encoder, or
//! `ANY_EMBED_MODEL`; `ANY_BENCH_THREADS` sets the threads, default all cores;
//! `ANY_BENCH_SECONDS` the time per batch size, default 20). `scripts/embed-reference
//! --bench` times sentence-transformers the same way on the same texts.

use std::time::{Duration, Instant};

use any_llm_local::bert::{EncoderOptions, SentenceEncoder};
use any_llm_local::fetch;

const TEXTS: &str = include_str!("../../examples/memory-chat/data/recall.jsonl");

fn main() {
    let texts: Vec<String> = TEXTS
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "turn")
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = Duration::from_secs(env("ANY_BENCH_SECONDS").unwrap_or(20));
    let mut options = EncoderOptions::default();
    if let Some(t) = env("ANY_BENCH_THREADS") {
        options = EncoderOptions::threads(t as usize);
    }
    let dir = fetch::default_embedder_dir().expect("the default sentence encoder");
    let encoder = SentenceEncoder::open_with(dir, options).expect("the encoder opens");
    let tokens: usize = texts
        .iter()
        .map(|t| encoder.tokenizer().encode(t).len())
        .sum();
    println!(
        "{} texts ({:.1} tokens each on average), {} threads",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        encoder.info().threads
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        // Warm-up: page the weights in, size the buffers.
        encoder.embed_texts(&texts[..64]).await.expect("embeds");
        for batch in [1usize, 32] {
            let start = Instant::now();
            let (mut done, mut i) = (0usize, 0usize);
            while start.elapsed() < seconds {
                let chunk: Vec<String> = (0..batch)
                    .map(|j| texts[(i + j) % texts.len()].clone())
                    .collect();
                encoder.embed_texts(&chunk).await.expect("embeds");
                i += batch;
                done += batch;
            }
            let elapsed = start.elapsed().as_secs_f64();
            println!(
                "batch {batch}: {:.1} sentences/s ({done} in {elapsed:.1} s)",
                done as f64 / elapsed
            );
        }
    });
}
