//! Arbitrary chat templates and conversations: compiling and rendering return a result or a
//! named error within the template fuel; none panics or runs away. The first 0x00 splits
//! the template source from the messages' text.
#![no_main]

use any_llm_local::template::ChatTemplate;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let source = String::from_utf8_lossy(source);
    let Ok(template) = ChatTemplate::new(&source) else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // The messages as JSON when they are, else as the text of a user turn.
    let messages: Vec<serde_json::Value> = match serde_json::from_str(&text) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => vec![
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": text}),
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}),
            json!({"role": "tool", "content": "1", "name": "f"}),
        ],
    };
    let tools = [json!({"type": "function", "function": {"name": "f", "parameters": {}}})];
    let _ = template.render(&messages, Some(&tools), true, "<s>", "</s>");
    let _ = template.render_with(
        &messages,
        None,
        false,
        "",
        "",
        &json!({"enable_thinking": false}),
    );
});
