//! The local backend on the real default model against llama.cpp's own outputs
//! (`tests/data/reference/`, copied from the project's shared reference data): prompt ids, top-10 next-token logits, 24-token greedy
//! continuations and perplexity.

mod support;

use support::ids;

use any_core::Sampling;
use any_llm_local::{LocalModel, top_logits};
use futures_util::StreamExt;
use serde_json::Value;

/// The largest difference allowed between one of our top-10 logits and llama.cpp's.
///
/// The backend reproduces llama.cpp's CPU arithmetic operation for operation (see
/// `src/attention.rs`), so our logits equal its own; the reference file prints them to four
/// decimals, which leaves 0.00005 of rounding. Measured: 0.00005 on every prompt.
const LOGIT_TOLERANCE: f32 = 0.0002;

fn model() -> &'static LocalModel {
    support::shared_model()
}

fn reference() -> Value {
    let path = support::reference_dir().join("smollm2-q4_1.llamacpp.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON parses")
}

#[tokio::test]
async fn prompt_ids_and_top10_logits_match_llama_cpp() {
    let model = model();
    let mut worst = 0.0f32;
    for p in reference()["prompts"].as_array().expect("prompts") {
        let prompt = p["prompt"].as_str().expect("prompt text");
        let expected_ids = ids(&p["ids"]);
        assert_eq!(
            model.tokenize_raw(prompt),
            expected_ids,
            "ids of {prompt:?}"
        );
        let logits = model.logits(expected_ids).await.expect("logits");
        let ours = top_logits(&logits, 10);
        let theirs: Vec<(u32, f32)> = p["top10_logits"]
            .as_array()
            .expect("top10")
            .iter()
            .map(|pair| {
                (
                    pair[0].as_u64().expect("id") as u32,
                    pair[1].as_f64().expect("logit") as f32,
                )
            })
            .collect();
        assert_eq!(
            ours[0].0, theirs[0].0,
            "top-1 token after {prompt:?}: ours {ours:?}, llama.cpp {theirs:?}"
        );
        for &(id, logit) in &theirs {
            let diff = (logits[id as usize] - logit).abs();
            worst = worst.max(diff);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "logit of token {id} after {prompt:?}: ours {}, llama.cpp {logit} (diff {diff})",
                logits[id as usize]
            );
        }
    }
    eprintln!("largest top-10 logit difference from llama.cpp: {worst:.4}");
}

#[tokio::test]
async fn greedy_continuations_match_llama_cpp() {
    let model = model();
    let greedy = Sampling {
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..Default::default()
    };
    for p in reference()["prompts"].as_array().expect("prompts") {
        let prompt_ids = ids(&p["ids"]);
        let expected = ids(&p["greedy24"]);
        let mut stream = model
            .generate_ids(prompt_ids.clone(), &greedy, Some(0))
            .expect("starts");
        let (mut got, mut text) = (Vec::new(), String::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            got.extend(chunk.logprobs.iter().filter_map(|l| l.id));
            text.push_str(&chunk.text);
        }
        assert_eq!(
            got,
            expected[..got.len()],
            "greedy continuation of {:?}",
            p["prompt"]
        );
        if got.len() == expected.len() {
            assert_eq!(text, p["greedy24_text"].as_str().expect("text"));
            continue;
        }
        // We stop at the end of the turn; llama.cpp's reference generated past it. The token we
        // stopped at must be an end-of-generation token, and past it our greedy choice must
        // still be llama.cpp's at every step (scored with the reference's tokens as context).
        let eog = expected[got.len()];
        assert!(
            model.tokenizer().is_eog(eog),
            "we stopped after {got:?} but llama.cpp went on with {eog}"
        );
        let mut all = prompt_ids.clone();
        all.extend_from_slice(&expected);
        for k in got.len() + 1..expected.len() {
            let logits = model
                .logits(all[..prompt_ids.len() + k].to_vec())
                .await
                .expect("logits");
            assert_eq!(
                any_llm_local::sampler::argmax(&logits),
                expected[k],
                "greedy step {k} of {:?} (past the end of the turn)",
                p["prompt"]
            );
        }
    }
}

#[tokio::test]
async fn perplexity_is_within_one_percent_of_llama_cpp() {
    let model = model();
    let dir = support::reference_dir();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("smollm2-q4_1.perplexity.json")).expect("reads"),
    )
    .expect("parses");
    let text = std::fs::read_to_string(dir.join("gpl-3.txt")).expect("gpl-3.txt");
    for r in reference["results"].as_array().expect("results") {
        let ctx = r["ctx"].as_u64().expect("ctx") as usize;
        let p = model.perplexity(&text, ctx).await.expect("perplexity");
        let expected = r["ppl"].as_f64().expect("ppl");
        assert_eq!(p.windows as u64, r["windows"].as_u64().expect("windows"));
        assert_eq!(p.scored as u64, r["scored"].as_u64().expect("scored"));
        let rel = (p.ppl - expected).abs() / expected;
        eprintln!(
            "ctx {ctx}: ppl {:.4} vs llama.cpp {expected:.4} ({:.3}%)",
            p.ppl,
            rel * 100.0
        );
        assert!(
            rel < 0.01,
            "ctx {ctx}: ppl {} vs llama.cpp {expected}",
            p.ppl
        );
    }
}

/// The default model with a Q8_0 KV cache, opened once for the tests below (the book's "KV
/// cache" section shows this code).
fn q8_model() -> &'static LocalModel {
    static MODEL: std::sync::OnceLock<LocalModel> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| open_q8(support::default_model_path()).expect("opens"))
}

fn open_q8(path: std::path::PathBuf) -> any_core::Result<LocalModel> {
    // ANCHOR: kv_cache
    use any_llm_local::{KvCacheType, LocalModel, LocalModelOptions};

    let options = LocalModelOptions {
        kv_cache: KvCacheType::Q8_0,
        threads: Some(2),
        ..Default::default()
    };
    let model = LocalModel::open_with(path, options)?;
    assert_eq!(model.info().kv_cache, KvCacheType::Q8_0);
    // ANCHOR_END: kv_cache
    Ok(model)
}

/// A Q8_0 cache changes the numbers (llama.cpp's reference uses f16), so these tests bound
/// the change instead of asking for equality: the perplexity test's own 1% (measured: +0.27% at
/// 512 tokens), and the same most likely next token after every reference prompt.
#[tokio::test]
async fn a_q8_0_kv_cache_keeps_perplexity_and_top_tokens() {
    let model = q8_model();
    for p in reference()["prompts"].as_array().expect("prompts") {
        let logits = model.logits(ids(&p["ids"])).await.expect("logits");
        let theirs = p["top10_logits"][0][0].as_u64().expect("id") as u32;
        assert_eq!(
            top_logits(&logits, 1)[0].0,
            theirs,
            "top-1 after {:?}",
            p["prompt"]
        );
    }
    let dir = support::reference_dir();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("smollm2-q4_1.perplexity.json")).expect("reads"),
    )
    .expect("parses");
    let text = std::fs::read_to_string(dir.join("gpl-3.txt")).expect("gpl-3.txt");
    let r = &reference["results"][0];
    let ctx = r["ctx"].as_u64().expect("ctx") as usize;
    let expected = r["ppl"].as_f64().expect("ppl");
    let p = model.perplexity(&text, ctx).await.expect("perplexity");
    let rel = (p.ppl - expected) / expected;
    eprintln!(
        "q8_0 cache, ctx {ctx}: ppl {:.4} vs llama.cpp (f16 cache) {expected:.4} ({:+.3}%)",
        p.ppl,
        rel * 100.0
    );
    assert!(rel.abs() < 0.01, "ctx {ctx}: ppl {} vs {expected}", p.ppl);
}

/// Decoding with a Q8_0 cache scores its keys against queries quantized to 8 bits (as
/// llama.cpp does with a quantized cache), so a greedy continuation may part from the f16
/// reference where two tokens are nearly tied. Bounded: wherever ours parts from llama.cpp's,
/// the two tokens' logits (f16 cache, same context) are within `NEAR_TIE` of each other.
/// Measured: parted after 6 and 2 tokens at gaps of 0.021 and 0.014; two prompts agree to
/// the end.
#[tokio::test]
async fn q8_0_greedy_continuations_part_only_at_near_ties() {
    const NEAR_TIE: f32 = 0.1;
    let model = q8_model();
    let greedy = Sampling {
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..Default::default()
    };
    for p in reference()["prompts"].as_array().expect("prompts") {
        let expected = ids(&p["greedy24"]);
        let mut stream = model
            .generate_ids(ids(&p["ids"]), &greedy, Some(0))
            .expect("starts");
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend(chunk.expect("chunk").logprobs.iter().filter_map(|l| l.id));
        }
        let same = got
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "q8_0 greedy after {:?}: {same} of {} tokens as llama.cpp's",
            p["prompt"],
            got.len()
        );
        if same == got.len().min(expected.len()) {
            continue;
        }
        let mut context = ids(&p["ids"]);
        context.extend_from_slice(&expected[..same]);
        let logits = self::model().logits(context).await.expect("logits");
        let (theirs, ours) = (logits[expected[same] as usize], logits[got[same] as usize]);
        assert!(
            (theirs - ours).abs() < NEAR_TIE,
            "q8_0 greedy parted from llama.cpp at step {same} of {:?}: logits {theirs} vs {ours}",
            p["prompt"]
        );
    }
}
