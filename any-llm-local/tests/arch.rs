//! Every architecture against llama.cpp, on small random-weight models: the GGUF files in
//! `tests/data/arch/` and llama.cpp's logits and greedy tokens on them, both written by
//! `scripts/gen-test-models` (provenance inside each `*.llamacpp.json`).

mod support;

use support::ids;

use any_core::Sampling;
use any_llm_local::gguf::{GgufFile, GgufWriter, MetadataValue};
use any_llm_local::quant::GgmlType;
use any_llm_local::{LocalModel, LocalModelOptions};
use futures_util::StreamExt;
use serde_json::Value;
use std::path::PathBuf;

/// The largest difference allowed between one of our logits and llama.cpp's, relative to the
/// largest logit (in magnitude) at the same position, by the type of the model's matrices.
///
/// Q8_0: none beyond the nine digits the reference keeps. Both engines quantize the
/// activations to Q8_0 and sum the integer products in the same order, so every logit is
/// llama.cpp's own (measured: 0 on every model and position).
///
/// Q4_K_M (Q4_K and Q6_K matrices), Q5_K_M (Q5_K and Q6_K), IQ4_NL and IQ4_XS: likewise
/// none. Their references are
/// taken one token at a time (`--batch 1`), through llama.cpp's one-token kernels, whose
/// order ours follow; its batched kernels for these types sum in another order, which moved a
/// logit of the generated model by 0.03 after fifteen tokens and flipped a greedy choice.
///
/// F32: 5e-4. The products are summed in another order than ggml's (its tiled prompt GEMM,
/// its SIMD lanes), which moves a sum by an ulp or so; the KV cache then rounds keys and
/// values to f16, and now and then such an ulp flips one of those roundings, a change of
/// 2^-11 of one value that the later layers carry to the logits. Measured worst: 3.9e-5
/// (qwen3); an earlier random phi3 model reached 1.2e-4.
fn tolerance(ty: &str) -> f32 {
    match ty {
        "Q8_0" => 1e-6,
        "F32" => 5e-4,
        "Q4_K_M" | "Q5_K_M" | "IQ4_NL" | "IQ4_XS" => 1e-6,
        other => panic!("no tolerance set for {other} models"),
    }
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/arch")
}

/// How the tests open a model: two threads, the context llama.cpp ran with (which picks
/// LongRoPE's factors).
fn options() -> LocalModelOptions {
    LocalModelOptions {
        threads: Some(2),
        context: Some(128),
        ..Default::default()
    }
}

fn open(file: &str) -> LocalModel {
    LocalModel::open_with(data_dir().join(file), options())
        .unwrap_or_else(|e| panic!("{file} opens: {e}"))
}

/// Checks every file of the generated model `arch` (of GGUF architecture `architecture`)
/// against llama.cpp's outputs.
async fn matches_llama_cpp(arch: &str, architecture: &str) {
    let path = data_dir().join(format!("{arch}.llamacpp.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reference: Value = serde_json::from_str(&text).expect("reference JSON parses");
    for (file, r) in reference["files"].as_object().expect("files") {
        let mut worst = 0.0f32;
        let tolerance = tolerance(r["type"].as_str().expect("the file's type"));
        let model = open(file);
        assert_eq!(model.info().config.arch.gguf_name(), architecture, "{file}");
        let prompt = ids(&r["prompt"]);
        let prefix_logits = r["prefix_logits"].as_array().expect("prefix logits");
        for (k, theirs) in prefix_logits.iter().enumerate() {
            let theirs: Vec<f32> = theirs
                .as_array()
                .expect("logits")
                .iter()
                .map(|x| x.as_f64().expect("a logit") as f32)
                .collect();
            let ours = model.logits(prompt[..=k].to_vec()).await.expect("logits");
            assert_eq!(ours.len(), theirs.len(), "{file}: vocabulary size");
            let scale = theirs.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            for (id, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let rel = (a - b).abs() / scale;
                worst = worst.max(rel);
                assert!(
                    rel <= tolerance,
                    "{file}: logit of token {id} after {} prompt tokens: ours {a}, llama.cpp {b} \
                     ({rel:.2e} of the largest logit {scale})",
                    k + 1
                );
            }
        }
        eprintln!(
            "{file}: largest logit difference from llama.cpp: {worst:.2e} of the row's largest"
        );
        let expected = ids(&r["greedy"]);
        let greedy = Sampling {
            temperature: Some(0.0),
            max_tokens: Some(expected.len() as u32),
            ..Default::default()
        };
        let mut stream = model
            .generate_ids(prompt.clone(), &greedy, Some(0))
            .expect("starts");
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend(chunk.expect("chunk").logprobs.iter().filter_map(|l| l.id));
        }
        assert_eq!(got, expected[..got.len()], "{file}: greedy continuation");
        if got.len() < expected.len() {
            // We stop at the end-of-text token; llama.cpp's reference went on past it.
            assert!(
                model.tokenizer().is_eog(expected[got.len()]),
                "{file}: we stopped after {got:?}, llama.cpp went on with {expected:?}"
            );
        }
    }
}

#[tokio::test]
async fn llama_matches_llama_cpp() {
    matches_llama_cpp("llama", "llama").await;
}

#[tokio::test]
async fn k_quants_and_i_quants_match_llama_cpp() {
    matches_llama_cpp("llama-small", "llama").await;
}

#[tokio::test]
async fn llama3_rope_frequency_factors_match_llama_cpp() {
    matches_llama_cpp("llama3", "llama").await;
}

#[tokio::test]
async fn qwen2_matches_llama_cpp() {
    matches_llama_cpp("qwen2", "qwen2").await;
}

#[tokio::test]
async fn qwen2_yarn_rope_scaling_matches_llama_cpp() {
    let model = open("qwen2-yarn.q8_0.gguf");
    let cfg = &model.info().config;
    assert_eq!(
        (cfg.rope_freq_scale, cfg.rope_ext_factor, cfg.rope_ctx_orig),
        (0.25, 1.0, 256)
    );
    matches_llama_cpp("qwen2-yarn", "qwen2").await;
}

#[tokio::test]
async fn qwen3_matches_llama_cpp() {
    matches_llama_cpp("qwen3", "qwen3").await;
}

#[tokio::test]
async fn phi3_matches_llama_cpp() {
    matches_llama_cpp("phi3", "phi3").await;
}

#[tokio::test]
async fn gemma2_matches_llama_cpp() {
    matches_llama_cpp("gemma2", "gemma2").await;
}

#[tokio::test]
async fn gemma3_matches_llama_cpp() {
    matches_llama_cpp("gemma3", "gemma3").await;
}

/// The generated llama model written again with `general.architecture` set to `arch` and
/// `blk.0.ffn_down.weight` of type `ffn_down_type` (zero bytes), then opened.
fn open_rewritten(arch: &str, ffn_down_type: GgmlType) -> any_core::Result<LocalModel> {
    rewrite("llama.gguf", arch, &[], Some(ffn_down_type))
}

/// The generated model `source` written again with `general.architecture` set to `arch`,
/// the metadata `extra` added and, if asked, `blk.0.ffn_down.weight` made of that type (zero
/// bytes), then opened.
fn rewrite(
    source: &str,
    arch: &str,
    extra: &[(&str, MetadataValue)],
    ffn_down_type: Option<GgmlType>,
) -> any_core::Result<LocalModel> {
    let file = GgufFile::open(data_dir().join(source)).expect("the generated model reads");
    let mut w = GgufWriter::new();
    for (key, value) in file.metadata().iter() {
        let value = match key {
            "general.architecture" => MetadataValue::from(arch),
            _ => value.clone(),
        };
        // The architecture's own keys move with it, as a converter would name them.
        let key = key.replacen("llama.", &format!("{arch}."), 1);
        w.add_metadata(key, value).expect("metadata copies");
    }
    for (key, value) in extra {
        w.add_metadata(*key, value.clone()).expect("metadata adds");
    }
    for t in file.tensors() {
        let (ty, data) = match ffn_down_type {
            Some(ty) if t.name == "blk.0.ffn_down.weight" => {
                let blocks = t.n_elements() as usize / ty.block_size();
                (ty, vec![0; blocks * ty.type_size()])
            }
            _ => (t.ty, file.tensor_data(t).to_vec()),
        };
        w.add_tensor(t.name.clone(), &t.dims, ty, data)
            .expect("tensor copies");
    }
    let dir = std::env::temp_dir().join(format!("any-arch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tag = ffn_down_type.map_or("same".to_owned(), |t| t.to_string());
    let path = dir.join(format!("{arch}-{tag}-{}-from-{source}", extra.len()));
    w.write_file(&path).expect("writes");
    let opened = LocalModel::open_with(&path, options());
    std::fs::remove_file(&path).expect("removes");
    opened
}

/// The 12-token prompt llama.cpp was given for the generated model `arch`.
fn reference_prompt(arch: &str) -> Vec<u32> {
    let path = data_dir().join(format!("{arch}.llamacpp.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reference: Value = serde_json::from_str(&text).expect("reference JSON parses");
    let (_, first) = reference["files"]
        .as_object()
        .and_then(|f| f.iter().next())
        .expect("a file");
    ids(&first["prompt"])
}

/// With every one of `layers` layers windowed to `window` positions, the last token's logits
/// see no token before `len - 1 - layers * (window - 1)`: changing all of those leaves them
/// bit for bit the same, changing the first one they do see moves them. (Q8_0 files, whose
/// logits do not depend on how the tokens are batched.)
async fn window_bounds_the_logits(
    model: &LocalModel,
    prompt: &[u32],
    layers: usize,
    window: usize,
) {
    let n_vocab = model.info().config.n_vocab as u32;
    // A different ordinary token (below the end-of-text token, the vocabulary's last).
    let other = |t: u32| (t + 1) % (n_vocab - 1);
    let first_seen = prompt.len() - 1 - layers * (window - 1);
    let logits = model.logits(prompt.to_vec()).await.expect("logits");
    let mut unseen_changed = prompt.to_vec();
    for t in &mut unseen_changed[..first_seen] {
        *t = other(*t);
    }
    let same = model.logits(unseen_changed).await.expect("logits");
    assert!(
        logits
            .iter()
            .zip(&same)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "tokens before position {first_seen} changed the logits at position {}",
        prompt.len() - 1
    );
    let mut seen_changed = prompt.to_vec();
    seen_changed[first_seen] = other(seen_changed[first_seen]);
    let moved = model.logits(seen_changed).await.expect("logits");
    let scale = logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = logits
        .iter()
        .zip(&moved)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff > 1e-3 * scale,
        "the token at position {first_seen} is within the windows' reach but moved the logits \
         by only {diff}"
    );
}

#[tokio::test]
async fn gemma3_windowed_layers_see_only_their_window() {
    // Both layers of the generated gemma3 model are local ones, of 4 positions.
    let model = open("gemma3.q8_0.gguf");
    let cfg = &model.info().config;
    assert_eq!((cfg.n_layer, cfg.sliding_window), (2, Some(4)));
    assert!(cfg.windowed_layers.iter().all(|&w| w));
    window_bounds_the_logits(&model, &reference_prompt("gemma3"), 2, 4).await;
}

#[tokio::test]
async fn a_llama_file_with_a_window_applies_it_past_the_window_only() {
    // Mistral 7B v0.1's `llama.attention.sliding_window`, at 4 positions.
    let window = 4;
    let windowed = rewrite(
        "llama.q8_0.gguf",
        "llama",
        &[(
            "llama.attention.sliding_window",
            MetadataValue::U32(window as u32),
        )],
        None,
    )
    .expect("opens");
    let full = open("llama.q8_0.gguf");
    let prompt = reference_prompt("llama");
    // Up to the window the two attend alike, so llama.cpp (which ignores the key and whose
    // logits `llama_matches_llama_cpp` checks on the file without it) agrees there.
    for k in 1..=window {
        let a = windowed.logits(prompt[..k].to_vec()).await.expect("logits");
        let b = full.logits(prompt[..k].to_vec()).await.expect("logits");
        assert_eq!(a, b, "{k} tokens, no more than the window");
    }
    let a = windowed.logits(prompt.clone()).await.expect("logits");
    let b = full.logits(prompt.clone()).await.expect("logits");
    assert_ne!(a, b, "past the window the window applies");
    window_bounds_the_logits(&windowed, &prompt, 2, window).await;
}

#[test]
fn an_unsupported_architecture_is_refused_by_name() {
    assert!(open_rewritten("llama", GgmlType::F16).is_ok());
    let err = open_rewritten("mamba", GgmlType::F16)
        .expect_err("mamba is refused")
        .to_string();
    assert!(err.contains("unsupported architecture `mamba`"), "{err}");
    assert!(
        err.contains("qwen2"),
        "the error lists what is supported: {err}"
    );
}

#[test]
fn an_unsupported_tensor_type_is_refused_by_name() {
    let err = open_rewritten("llama", GgmlType::MXFP4)
        .expect_err("an MXFP4 weight is refused")
        .to_string();
    assert!(
        err.contains("blk.0.ffn_down.weight") && err.contains("MXFP4"),
        "{err}"
    );
}
