//! Arbitrary bytes as a GGUF file: the reader, then everything that reads a model's
//! metadata (the model configuration and weights, the tokenizer, the chat template). Each
//! either works or returns an error; none panics, hangs or allocates what the file does not
//! hold.
#![no_main]

use std::sync::Arc;

use any_llm_local::gguf::GgufFile;
use any_llm_local::arch::Decoder;
use any_llm_local::template::ChatTemplate;
use any_llm_local::tokenizer::{EncodeOptions, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, value) in file.metadata().iter() {
        let _ = format!("{key} {value:?}");
    }
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len(), t.byte_len());
        assert!(file.tensor(&t.name).is_some());
    }
    if let Ok(tok) = Tokenizer::from_gguf(&file) {
        let ids = tok.encode("Hello <|im_start|>user\nworld", EncodeOptions::default());
        let _ = tok.decode(&ids);
    }
    if let Ok(template) = ChatTemplate::from_gguf(&file) {
        let message = serde_json::json!({"role": "user", "content": "Hi"});
        let _ = template.render(&[message], None, true, "<s>", "</s>");
    }
    let _ = Decoder::load(Arc::new(file));
});
