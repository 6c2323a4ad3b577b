//! Candle's quantized llama on the same GGUF file, measured the way `any bench` and the
//! llama.cpp anchor measure: prefill of the first N tokens of a text in one forward pass from an
//! empty cache, then greedy decoding of M tokens after "Once upon a time", best of 3 each.
//!
//! Token ids come from `any tokenize` (the same tokenizer llama.cpp agrees with), passed as
//! JSON arrays, so the three engines see identical inputs:
//!
//! ```text
//! cargo run --release --manifest-path bench/candle/Cargo.toml -- MODEL.gguf \
//!     "$(any tokenize "$(cat any-cli/data/gpl-3.txt)")" "$(any tokenize 'Once upon a time')" \
//!     [--prefill 512] [--decode 128]
//! ```
//!
//! Threads: candle uses its rayon pool; set `RAYON_NUM_THREADS`.
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: candle-anchor MODEL.gguf TEXT_IDS_JSON PROMPT_IDS_JSON [--prefill N] [--decode N]".into());
    }
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (prefill_n, decode_n) = (flag("--prefill", 512), flag("--decode", 128));
    let text: Vec<u32> = serde_json::from_str(&args[2])?;
    let prompt: Vec<u32> = serde_json::from_str(&args[3])?;
    let ids = &text[..prefill_n.min(text.len())];
    let device = Device::Cpu;
    let load = Instant::now();
    let mut file = std::fs::File::open(&args[1])?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;

    let mut best = f64::MAX;
    for _ in 0..3 {
        let input = Tensor::new(ids, &device)?.unsqueeze(0)?;
        let t = Instant::now();
        let logits = model.forward(&input, 0)?;
        logits.to_vec2::<f32>()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let prefill = ids.len() as f64 / best;

    let mut best = f64::MAX;
    for _ in 0..3 {
        let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?;
        let mut pos = prompt.len();
        let t = Instant::now();
        for _ in 0..decode_n {
            let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            logits = model.forward(&input, pos)?;
            pos += 1;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": "candle",
            "threads": candle_core::utils::get_num_threads(),
            "prefill_tokens": ids.len(),
            "prefill_tok_s": (prefill * 10.0).round() / 10.0,
            "decode_tokens": decode_n,
            "decode_tok_s": ((decode_n as f64 / best) * 10.0).round() / 10.0,
            "load_ms": (load_ms * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
