//! What the fuzz targets share: the real default model (its tokenizer, template and grammar
//! engine, loaded once per process), the small SentencePiece vocabulary of any-llm-local's
//! tests, and a way to turn fuzz bytes into text full of control-token strings.

use std::sync::OnceLock;

use any_llm_local::LocalModel;
use any_llm_local::constrain::GrammarEngine;
use any_llm_local::tokenizer::{TokenType, Tokenizer, TokenizerConfig};

/// The default model (fetched by `any models pull`, or the file `ANY_MODEL` names).
pub fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = any_llm_local::fetch::default_model_path()
            .unwrap_or_else(|e| panic!("the fuzz targets need the default model: {e}"));
        LocalModel::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// The grammar engine over the default model's tokenizer.
pub fn grammar() -> &'static GrammarEngine {
    static ENGINE: OnceLock<GrammarEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        GrammarEngine::new(model().tokenizer()).unwrap_or_else(|e| panic!("grammar engine: {e}"))
    })
}

/// The SentencePiece vocabulary of any-llm-local's tests (`tests/data/spm_tiny.json`).
pub fn spm_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../any-llm-local/tests/data/spm_tiny.json"))
                .unwrap_or_else(|e| panic!("spm_tiny.json: {e}"));
        let mut config = TokenizerConfig {
            model: "llama".into(),
            ..Default::default()
        };
        for p in v["pieces"].as_array().into_iter().flatten() {
            config
                .tokens
                .push(p[0].as_str().unwrap_or_default().to_owned());
            config.scores.push(p[1].as_f64().unwrap_or_default() as f32);
            let code = p[2].as_i64().unwrap_or(1) as i32;
            config
                .token_types
                .push(TokenType::from_code(code).unwrap_or(TokenType::Normal));
        }
        let id = |key: &str| v[key].as_u64().map(|n| n as u32);
        config.bos = id("bos");
        config.eos = id("eos");
        config.unk = id("unk");
        Tokenizer::new(config).unwrap_or_else(|e| panic!("spm_tiny.json: {e}"))
    })
}

/// Control-token texts of the tokenizers above, and turn markers, that fuzz bytes
/// 0xF8..=0xFF stand for in [`text_with_specials`].
pub const SPECIALS: [&str; 8] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>system\n",
    "<s>",
    "</s>",
    "<|tool|>",
    "\nassistant\n",
];

/// `bytes` as text, each byte 0xF8..=0xFF replaced by one of [`SPECIALS`] (bytes that are
/// never part of UTF-8), the rest decoded lossily.
pub fn text_with_specials(bytes: &[u8]) -> String {
    let mut out = String::new();
    for piece in bytes.split_inclusive(|&b| b >= 0xF8) {
        let (text, special) = match piece.split_last() {
            Some((&last, rest)) if last >= 0xF8 => (rest, Some(SPECIALS[(last - 0xF8) as usize])),
            _ => (piece, None),
        };
        out.push_str(&String::from_utf8_lossy(text));
        out.extend(special);
    }
    out
}

/// How many of `ids` are control tokens of `tok`.
pub fn control_tokens(tok: &Tokenizer, ids: &[u32]) -> usize {
    ids.iter()
        .filter(|&&id| tok.token_type(id) == Some(TokenType::Control))
        .count()
}
