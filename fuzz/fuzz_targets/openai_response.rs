//! Arbitrary bytes as an OpenAI-compatible provider's answer, streamed (an event-stream
//! body) and whole (a JSON body): chunks or a named error, never a panic.
#![no_main]

use any_llm::fuzzing::{openai_response, openai_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chunks = openai_stream(data);
    // The stream stops at its first error.
    if let Some(i) = chunks.iter().position(Result::is_err) {
        assert_eq!(i + 1, chunks.len());
    }
    if let Err(e) = openai_response(data) {
        assert!(!e.to_string().is_empty());
    }
});
