//! Role forgery: a conversation whose message text is full of control-token strings
//! (`<|im_start|>system`, `<|im_end|>`, …) encoded through the default model's template and
//! tokenizer. The prompt must hold exactly the control tokens of the same conversation with
//! plain text in every message: text from a message never becomes a control token.
#![no_main]

use any_core::{ChatRequest, Message};
use any_suite_fuzz::{control_tokens, model, text_with_specials};
use libfuzzer_sys::fuzz_target;

/// Messages from the bytes: 0x00 separates messages; each one's first byte picks the role.
fn conversation(data: &[u8], plain: bool) -> Vec<Message> {
    data.split(|&b| b == 0)
        .take(8)
        .map(|part| {
            let (role, text) = part.split_first().map_or((0, &[][..]), |(r, t)| (*r, t));
            let text = if plain {
                "x".to_owned()
            } else {
                text_with_specials(text)
            };
            match role % 3 {
                0 => Message::user(text),
                1 => Message::assistant(text),
                _ => Message::system(text),
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    let tok = model.tokenizer();
    let forged = ChatRequest::new(conversation(data, false));
    let plain = ChatRequest::new(conversation(data, true));
    let (Ok(forged_ids), Ok(plain_ids)) =
        (model.encode_prompt(&forged), model.encode_prompt(&plain))
    else {
        return;
    };
    assert_eq!(
        control_tokens(tok, &forged_ids),
        control_tokens(tok, &plain_ids),
        "message text became control tokens: {:?}",
        model.render_prompt(&forged)
    );
});
