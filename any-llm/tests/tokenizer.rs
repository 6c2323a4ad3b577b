//! Tokenizer behaviour: ids identical to llama.cpp's on the default model, pre-tokenizer
//! splits identical to the Python `regex` module's, SentencePiece ids identical to the
//! `sentencepiece` package's (vectors in `tests/data/`, with the scripts that wrote them).

mod support;

use any_llm::local::tokenizer::{
    DecodeOptions, EncodeOptions, PreTokenizer, TokenType, Tokenizer, TokenizerConfig,
    TokenizerError,
};
use serde_json::Value;

fn data(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("test vector file is committed");
    serde_json::from_str(&text).expect("test vector is JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("ids are u32")
}

#[test]
fn pre_tokenizer_splits_match_the_python_regex_module() {
    let vectors = data("pretokenize.json");
    let mut failures = Vec::new();
    for case in vectors["cases"].as_array().expect("cases") {
        let pre = case["pre"].as_str().expect("pre");
        let text = case["text"].as_str().expect("text");
        let want: Vec<String> = serde_json::from_value(case["pieces"].clone()).expect("pieces");
        let got = PreTokenizer::from_name(pre)
            .expect("known pre-tokenizer")
            .split(text);
        if got != want {
            failures.push(format!("{pre} {text:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn spm_tokenizer() -> (Tokenizer, Value) {
    let v = data("spm_tiny.json");
    let mut config = TokenizerConfig {
        model: "llama".into(),
        ..Default::default()
    };
    for (id, p) in v["pieces"].as_array().expect("pieces").iter().enumerate() {
        config.tokens.push(p[0].as_str().expect("text").to_owned());
        config.scores.push(p[1].as_f64().expect("score") as f32);
        let ty = p[2].as_i64().expect("type") as i32;
        config
            .token_types
            .push(TokenType::from_i32(id as u32, ty).expect("type"));
    }
    config.bos = Some(v["bos"].as_u64().expect("bos") as u32);
    config.eos = Some(v["eos"].as_u64().expect("eos") as u32);
    config.unk = Some(v["unk"].as_u64().expect("unk") as u32);
    (Tokenizer::new(config).expect("valid vocabulary"), v)
}

#[test]
fn sentencepiece_ids_match_the_sentencepiece_package() {
    let (tok, v) = spm_tokenizer();
    let plain = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    for case in v["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let got = tok.encode(text, plain);
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
        assert_eq!(
            tok.decode(&got).expect("decodes"),
            text,
            "round trip of {text:?}"
        );
    }
}

#[test]
fn sentencepiece_adds_bos_by_default_and_skips_it_on_request() {
    let (tok, _) = spm_tokenizer();
    assert!(tok.add_bos());
    let with_bos = tok.encode("Hello", EncodeOptions::default());
    assert_eq!(with_bos.first().copied(), tok.bos_id());
    let text = tok
        .decode_with(&with_bos, DecodeOptions { skip_special: true })
        .expect("decodes");
    assert_eq!(text, "Hello");
    assert_eq!(tok.decode(&with_bos).expect("decodes"), "<s>Hello");
}

#[test]
fn unknown_model_and_pre_tokenizer_are_named_in_errors() {
    let config = TokenizerConfig {
        model: "bert".into(),
        tokens: vec!["a".into()],
        ..Default::default()
    };
    let err = Tokenizer::new(config).expect_err("bert is not implemented");
    assert!(matches!(err, TokenizerError::UnknownModel(ref m) if m == "bert"));
    assert!(err.to_string().contains("\"bert\""), "{err}");

    let config = TokenizerConfig {
        model: "gpt2".into(),
        pre: Some("tiktoken-9000".into()),
        tokens: vec!["a".into()],
        ..Default::default()
    };
    let err = Tokenizer::new(config).expect_err("unknown pre-tokenizer");
    assert!(err.to_string().contains("tiktoken-9000"), "{err}");
}

#[test]
fn out_of_range_ids_are_errors_not_panics() {
    let (tok, _) = spm_tokenizer();
    let n = tok.vocab_size() as u32;
    let err = tok.decode(&[n]).expect_err("past the vocabulary");
    assert!(matches!(err, TokenizerError::TokenIdOutOfRange { id, .. } if id == n));
    let config = TokenizerConfig {
        model: "llama".into(),
        tokens: vec!["a".into()],
        bos: Some(7),
        ..Default::default()
    };
    let err = Tokenizer::new(config).expect_err("bos past the vocabulary");
    assert!(err.to_string().contains("bos token id 7"), "{err}");
}
