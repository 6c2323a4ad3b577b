//! The sentence encoder against sentence-transformers: token ids and vectors on the committed
//! sentences of `tests/data/minilm_reference.json` (written by `scripts/embed-reference`
//! with sentence-transformers itself; versions and file hashes in the file). The model is
//! the default one, fetched through the library as users get it.

use std::path::PathBuf;
use std::sync::OnceLock;

use any_core::{EmbedRequest, cosine_similarity};
use any_llm_local::bert::{EncoderOptions, SentenceEncoder};
use serde::Deserialize;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Reference {
    model_package: String,
    files: std::collections::BTreeMap<String, String>,
    max_seq_length: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    untruncated_tokens: usize,
    embedding: Vec<f32>,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
        let text = std::fs::read_to_string(&path).expect("the reference file is committed");
        serde_json::from_str(&text).expect("the reference file parses")
    })
}

fn encoder() -> &'static SentenceEncoder {
    static ENCODER: OnceLock<SentenceEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let dir = any_llm_local::fetch::default_embedder_dir()
            .expect("the default sentence encoder is fetched (pip) or cached");
        SentenceEncoder::open_with(dir, EncoderOptions::threads(2))
            .expect("the default sentence encoder opens")
    })
}

#[test]
fn the_reference_is_of_the_model_we_fetch() {
    let r = reference();
    assert_eq!(
        r.model_package,
        any_llm_local::fetch::DEFAULT_EMBEDDER_PACKAGE
    );
    for (name, sha) in &r.files {
        let pinned = any_llm_local::fetch::DEFAULT_EMBEDDER_FILES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s);
        assert_eq!(pinned, Some(sha.as_str()), "{name}");
    }
    assert!(r.cases.len() >= 20);
    assert!(
        r.cases
            .iter()
            .any(|c| c.untruncated_tokens > r.max_seq_length),
        "a case is longer than the model's maximum"
    );
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let r = reference();
    let tokenizer = encoder().tokenizer();
    assert_eq!(tokenizer.max_tokens(), r.max_seq_length);
    for case in &r.cases {
        let got = tokenizer.encode_full(&case.text);
        assert_eq!(got.ids, case.ids, "{:?}", case.text);
        assert_eq!(got.untruncated, case.untruncated_tokens, "{:?}", case.text);
    }
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let r = reference();
    let texts: Vec<String> = r.cases.iter().map(|c| c.text.clone()).collect();
    // All at once (one packed batch), as sentence-transformers ran them (padded batches).
    let batch = encoder().embed_texts(&texts).await.unwrap();
    assert_eq!(batch.len(), r.cases.len());
    let mut worst = 1.0f32;
    for (case, v) in r.cases.iter().zip(&batch) {
        assert_eq!(v.len(), 384);
        let cos = cosine_similarity(v, &case.embedding);
        worst = worst.min(cos);
        assert!(cos >= 0.9999, "cosine {cos} for {:?}", case.text);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    eprintln!("lowest cosine to sentence-transformers: {worst}");
    // One at a time: a text's vector does not depend on its batch.
    for (case, v) in r.cases.iter().zip(&batch).take(6) {
        let alone = encoder()
            .embed_texts(std::slice::from_ref(&case.text))
            .await
            .unwrap();
        let cos = cosine_similarity(&alone[0], v);
        assert!(
            cos > 0.999_999,
            "cosine {cos} alone and batched: {:?}",
            case.text
        );
    }
}

#[tokio::test]
async fn the_embed_service_reports_tokens_and_truncates_dimensions() {
    let r = reference();
    let mut request = EmbedRequest::new([r.cases[0].text.clone(), r.cases[1].text.clone()]);
    request.dimensions = Some(64);
    let response = encoder().clone().oneshot(request).await.unwrap();
    assert_eq!(response.model.as_deref(), Some("all-MiniLM-L6-v2"));
    let tokens = r.cases[0].ids.len() + r.cases[1].ids.len();
    assert_eq!(
        response.usage.map(|u| u.prompt_tokens as usize),
        Some(tokens)
    );
    for v in &response.embeddings {
        assert_eq!(v.len(), 64);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let too_many = vec![String::new(); any_llm_local::MAX_EMBED_INPUTS + 1];
    let err = encoder().embed_texts(&too_many).await.unwrap_err();
    assert!(err.to_string().contains("MAX_EMBED_INPUTS"), "{err}");
}

#[test]
fn a_damaged_model_folder_fails_with_the_file_and_the_fault() {
    let src = any_llm_local::fetch::default_embedder_dir().unwrap();
    let dir = std::env::temp_dir().join(format!("any-embed-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(name), dir.join(name)).unwrap();
    }
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = SentenceEncoder::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );

    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = SentenceEncoder::open(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let err = SentenceEncoder::open(&dir).unwrap_err().to_string();
    assert!(err.contains("expected model_type bert"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
