//! Arbitrary bytes as an Anthropic Messages answer, streamed and whole, with and without a
//! tool carrying a structured answer: chunks or a named error, never a panic.
#![no_main]

use any_llm::fuzzing::{anthropic_response, anthropic_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format_tool in [None, Some("answer")] {
        let chunks = anthropic_stream(data, format_tool);
        if let Some(i) = chunks.iter().position(Result::is_err) {
            assert_eq!(i + 1, chunks.len());
        }
        let _ = anthropic_response(data, format_tool);
    }
});
