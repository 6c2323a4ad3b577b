//! `any bench`: prefill and decode speed of a local model, measured as the llama.cpp anchor
//! (`shared/bench/llamacpp_bench.py`) measures it, so the two sets of figures compare.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use any_llm::local::tokenizer::EncodeOptions;
use any_llm::local::{LocalModelOptions, fetch};
use anyhow::{Context, Result, bail};
use clap::Args;

/// `any bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A GGUF model file (default: `ANY_MODEL`, else the default model).
    #[arg(long, short = 'm', value_name = "PATH")]
    model: Option<PathBuf>,
    /// Threads for the matrix work (default: all cores).
    #[arg(long, short = 't', value_name = "N")]
    threads: Option<usize>,
    /// The KV cache's number type: f16 (llama.cpp's default) or q8_0 (half the cache, faster
    /// decoding at long contexts).
    #[arg(long, value_name = "TYPE", default_value = "f16")]
    kv_cache: any_llm::local::KvCacheType,
    /// Prompt tokens evaluated in one forward pass from an empty cache.
    #[arg(long, value_name = "N", default_value_t = 512)]
    prefill: usize,
    /// Tokens generated one step at a time.
    #[arg(long, value_name = "N", default_value_t = 128)]
    decode: usize,
    /// Tokens of text already in the cache when decoding starts (the context depth). Above 0,
    /// decoding from an empty cache is measured as well, in turn with it, and the ratio shown.
    #[arg(long, value_name = "N", default_value_t = 0)]
    depth: usize,
    /// The text the prefill (and depth) tokens come from (default: the text of the GNU GPL v3,
    /// built into `any`; the same text the llama.cpp reference runs used).
    #[arg(long, value_name = "FILE")]
    text: Option<PathBuf>,
    /// Runs of each measurement; the best counts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The default prompt text: the GNU GPL v3 (verbatim copying permitted by its own terms), the
/// text `bench/llamacpp_bench.py` and the reference data use, so the figures compare.
const DEFAULT_TEXT: &str = include_str!("../data/gpl-3.txt");

/// The peak resident set of this process in MiB (`VmHWM`), where the OS reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

pub(crate) async fn bench(args: BenchArgs) -> Result<()> {
    if args.runs == 0 || args.prefill == 0 || args.decode == 0 {
        bail!("--runs, --prefill and --decode must be at least 1");
    }
    let path = match &args.model {
        Some(p) => p.clone(),
        None => fetch::default_model_path()?,
    };
    let text = match &args.text {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => DEFAULT_TEXT.to_owned(),
    };
    let context = (args.prefill).max(args.depth + 16 + args.decode).max(2048);
    let options = LocalModelOptions {
        threads: args.threads,
        kv_cache: args.kv_cache,
        context: Some(context),
    };
    let loading = Instant::now();
    let model = crate::local::open_file(&path, options)?;
    let load = loading.elapsed();
    let plain = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    let ids = model.tokenizer().encode(&text, plain);
    if ids.len() < args.prefill.max(args.depth) {
        let source = match &args.text {
            Some(p) => p.display().to_string(),
            None => "the built-in text".to_owned(),
        };
        bail!(
            "{source} has {} tokens; --prefill {} and --depth {} need that many (pass a longer --text FILE)",
            ids.len(),
            args.prefill,
            args.depth
        );
    }
    let prefill_ids = ids[..args.prefill].to_vec();
    let mut prompt = ids[..args.depth].to_vec();
    prompt.extend(model.tokenizer().encode("Once upon a time", plain));

    let mut prefill = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        prefill.push(model.time_prefill(prefill_ids.clone()).await?);
    }
    // With a depth, decoding from an empty cache is measured too, run for run in turn with
    // the deep one, so both see the same machine (neighbours on a shared host come and go).
    let shallow = model.tokenizer().encode("Once upon a time", plain);
    let (mut decode, mut decode0) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        if args.depth > 0 {
            decode0.push(model.time_decode(shallow.clone(), args.decode).await?);
        }
        decode.push(model.time_decode(prompt.clone(), args.decode).await?);
    }
    let prefill_tok_s = args.prefill as f64 / best(&prefill).as_secs_f64();
    let decode_tok_s = args.decode as f64 / best(&decode).as_secs_f64();
    let decode0_tok_s =
        (!decode0.is_empty()).then(|| args.decode as f64 / best(&decode0).as_secs_f64());
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    let threads = model.info().threads;
    let rss = peak_rss_mb();
    let load_ms = load.as_secs_f64() * 1e3;
    if args.json {
        let mut out = serde_json::json!({
            "model": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "threads": threads,
            "kv_cache": args.kv_cache.as_str(),
            "prefill_tokens": args.prefill,
            "prefill_tok_s": round1(prefill_tok_s),
            "decode_tokens": args.decode,
            "decode_depth": args.depth,
            "decode_tok_s": round1(decode_tok_s),
            "peak_rss_mb": rss.map(round1),
            "load_ms": round1(load_ms),
        });
        if let Some(d0) = decode0_tok_s {
            out["decode_depth0_tok_s"] = round1(d0).into();
            out["depth_ratio"] = ((decode_tok_s / d0 * 1000.0).round() / 1000.0).into();
        }
        println!("{out}");
    } else {
        println!("model      {}", path.display());
        println!("threads    {threads}");
        println!("kv cache   {}", args.kv_cache);
        println!("load       {load_ms:.1} ms");
        println!(
            "prefill    {prefill_tok_s:.1} tok/s ({} tokens, best of {})",
            args.prefill, args.runs
        );
        println!(
            "decode     {decode_tok_s:.1} tok/s ({} tokens at depth {}, best of {})",
            args.decode, args.depth, args.runs
        );
        if let Some(d0) = decode0_tok_s {
            println!(
                "decode     {d0:.1} tok/s at depth 0 (runs taken in turn): depth {} runs at {:.2}x",
                args.depth,
                decode_tok_s / d0
            );
        }
        if let Some(r) = rss {
            println!("peak RSS   {r:.1} MiB");
        }
    }
    Ok(())
}
