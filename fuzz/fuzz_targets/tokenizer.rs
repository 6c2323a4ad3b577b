//! Arbitrary bytes, and text full of control-token strings, through the default model's BPE
//! tokenizer and a SentencePiece one: encoding never panics, every id is in the vocabulary,
//! text encoded without `parse_special` never yields a control token, and the byte-level
//! BPE decodes its own encoding back to the text (less the bytes it has no token for).
#![no_main]

use any_llm_local::tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};
use any_suite_fuzz::{control_tokens, model, spm_tokenizer, text_with_specials};
use libfuzzer_sys::fuzz_target;

const PLAIN: EncodeOptions = EncodeOptions {
    add_special: false,
    parse_special: false,
};
const PARSED: EncodeOptions = EncodeOptions {
    add_special: true,
    parse_special: true,
};

/// Which bytes a byte-level BPE vocabulary has a token for (GPT-2's byte alphabet: printable
/// Latin-1 bytes stand for themselves, the others are moved past U+00FF in byte order).
fn byte_tokens(tok: &Tokenizer) -> [bool; 256] {
    let mut has = [false; 256];
    let mut moved = 0x100;
    for b in 0..=255u8 {
        let c = match b {
            0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => char::from(b),
            _ => {
                moved += 1;
                char::from_u32(moved - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
        };
        has[usize::from(b)] = tok.token_id(c.encode_utf8(&mut [0; 4])).is_some();
    }
    has
}

fn check(tok: &Tokenizer, text: &str, round_trips: bool) {
    let plain = tok.encode(text, PLAIN);
    assert!(plain.iter().all(|&id| (id as usize) < tok.vocab_size()));
    assert_eq!(
        control_tokens(tok, &plain),
        0,
        "text encoded without parse_special became control tokens: {text:?} -> {plain:?}"
    );
    if round_trips {
        // A byte the vocabulary has no token for is dropped (SmolLM2 lacks some): the rest
        // comes back byte for byte.
        let has_token = byte_tokens(tok);
        let kept: Vec<u8> = text
            .bytes()
            .filter(|&b| has_token[usize::from(b)])
            .collect();
        let mut back = Vec::new();
        for &id in &plain {
            back.extend_from_slice(&tok.token_to_piece(id).expect("ids from encode have pieces"));
        }
        assert_eq!(back, kept, "round trip of {text:?}");
    }
    let parsed = tok.encode(text, PARSED);
    assert!(parsed.iter().all(|&id| (id as usize) < tok.vocab_size()));
    let _ = tok.decode_with(&parsed, DecodeOptions::default());
    let mut stream = tok.stream_decoder(DecodeOptions::default());
    for &id in &parsed {
        let _ = stream.push(id);
    }
    let _ = stream.flush();
}

fuzz_target!(|data: &[u8]| {
    let bpe = model().tokenizer();
    let spm = spm_tokenizer();
    // The bytes as UTF-8 (lossily), and with bytes 0xF8.. as control-token strings.
    let lossy = String::from_utf8_lossy(data);
    let specials = text_with_specials(data);
    for text in [&*lossy, &specials] {
        check(bpe, text, true);
        check(spm, text, false);
    }
    // Arbitrary ids, in or out of the vocabulary, decode to text or an error.
    let ids: Vec<u32> = data
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let _ = bpe.decode(&ids);
    let _ = spm.decode(&ids);
    let mut stream = bpe.stream_decoder(DecodeOptions::default());
    for &id in &ids {
        let _ = stream.push(id);
    }
    let _ = stream.flush();
});
