//! The server-sent-events decoder: arbitrary bytes fed in arbitrary pieces decode to the
//! same events as the whole body at once.
#![no_main]

use any_llm::http::sse::{SseDecoder, decode_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = decode_all(body);
    let mut decoder = SseDecoder::new();
    let mut pieces = Vec::new();
    for chunk in body.chunks(usize::from(step % 16) + 1) {
        decoder.feed_into(chunk, &mut pieces);
    }
    pieces.extend(decoder.finish());
    assert_eq!(pieces, whole);
});
