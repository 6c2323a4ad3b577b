//! Chat templates render as HF transformers renders them (the expected strings were checked
//! with jinja2 under HF's settings: trim_blocks, lstrip_blocks, json.dumps as `tojson`).

mod support;

use any_llm_local::gguf::{GgufFile, GgufWriter};
use any_llm_local::template::{CHATML, ChatTemplate, TemplateError};
use serde_json::{Value, json};

fn smollm_template() -> ChatTemplate {
    let file = GgufFile::open(support::default_model_path()).expect("default model opens");
    ChatTemplate::from_gguf(&file).expect("its template compiles")
}

fn list(v: Value) -> Vec<Value> {
    v.as_array().cloned().expect("a JSON array")
}

#[test]
fn smollm_template_renders_a_chat_as_hf_does() {
    let template = smollm_template();
    assert_ne!(
        template.source(),
        CHATML,
        "the model carries its own template"
    );
    let chat = list(json!([
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Arr, hello!"},
    ]));
    let out = template
        .render(&chat, None, false, "<|im_start|>", "<|im_end|>")
        .expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n\
         <|im_start|>assistant\nArr, hello!<|im_end|>\n"
    );
}

#[test]
fn smollm_template_adds_its_default_system_prompt_and_the_generation_prompt() {
    let chat = list(json!([{"role": "user", "content": "Hi there"}]));
    let out = smollm_template()
        .render(&chat, None, true, "", "")
        .expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn multi_part_content_is_joined_for_templates_that_expect_a_string() {
    let chat = list(json!([
        {"role": "system", "content": "S"},
        {"role": "user", "content": [
            {"type": "text", "text": "first"},
            {"type": "text", "text": "second"},
        ]},
    ]));
    let out = smollm_template()
        .render(&chat, None, false, "", "")
        .expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nfirst\nsecond<|im_end|>\n"
    );
}

#[test]
fn a_file_without_a_template_falls_back_to_chatml() {
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .expect("valid metadata");
    let file = GgufFile::from_bytes(writer.to_bytes()).expect("reads back");
    let template = ChatTemplate::from_gguf(&file).expect("ChatML");
    assert_eq!(template.source(), CHATML);
    let chat = list(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]));
    let out = template.render(&chat, None, true, "", "").expect("renders");
    assert_eq!(
        out,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn a_tool_template_lists_tools_as_json_and_renders_calls_and_results() {
    let source = include_str!("data/tools_template.jinja");
    let template = ChatTemplate::new(source).expect("compiles");
    let tools = list(json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
                "required": ["city"],
            },
        },
    }]));
    // OpenAI-shaped: the arguments arrive as a JSON string.
    let chat = list(json!([
        {"role": "user", "content": "  Weather in Paris?  "},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
        }]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp_c\": 21}"},
    ]));
    let out = template
        .render(&chat, Some(&tools), true, "", "")
        .expect("renders");
    let want = "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\nYou may call one or \
        more functions to assist with the user query.\n\n<tools>\n{\"type\": \"function\", \
        \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather for a city\", \
        \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \
        \"description\": \"City name, e.g. Paris\"}}, \"required\": [\"city\"]}}}\n</tools>\
        <|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n\
        <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n\
        </tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp_c\": 21}\n\
        </tool_response><|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(out, want);
}

#[test]
fn python_string_and_dict_methods_work() {
    let source = "{% for m in messages %}{{ m.content.strip().upper() }}|\
        {{ m.content.startswith('  a') }}|{{ m.content.split() | join(',') }}|\
        {% for k, v in m.meta.items() %}{{ k }}={{ v }};{% endfor %}{% endfor %}";
    let template = ChatTemplate::new(source).expect("compiles");
    let chat = list(json!([{"role": "user", "content": "  a b  ", "meta": {"x": 1, "y": "z"}}]));
    let out = template
        .render(&chat, None, false, "", "")
        .expect("renders");
    assert_eq!(out, "A B|True|a,b|x=1;y=z;");
}

#[test]
fn strftime_now_writes_the_current_date() {
    let template = ChatTemplate::new("{{ strftime_now('%Y') }}").expect("compiles");
    let out = template.render(&[], None, false, "", "").expect("renders");
    let year: u32 = out.parse().expect("a year");
    assert!(year >= 2025, "{out}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let source = "{% for m in messages %}\n{{ m.content }\n{% endfor %}";
    let err = ChatTemplate::new(source).expect_err("unclosed expression");
    assert!(
        matches!(err, TemplateError::Syntax { line: Some(2), .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("syntax error at line 2"), "{text}");
}

#[test]
fn raise_exception_becomes_an_error_with_its_message() {
    let source = "{% if messages[0].role != 'user' %}\
        {{ raise_exception('Conversation roles must start with user') }}{% endif %}ok";
    let template = ChatTemplate::new(source).expect("compiles");
    let chat = list(json!([{"role": "assistant", "content": "hi"}]));
    let err = template
        .render(&chat, None, false, "", "")
        .expect_err("rejected");
    assert!(
        matches!(err, TemplateError::Raised(ref m) if m == "Conversation roles must start with user"),
        "{err:?}"
    );
    let fine = list(json!([{"role": "user", "content": "hi"}]));
    assert_eq!(
        template
            .render(&fine, None, false, "", "")
            .expect("renders"),
        "ok"
    );
}

#[test]
fn a_render_error_names_the_problem() {
    let template = ChatTemplate::new("line one\n{{ messages[0].content + 1 }}").expect("compiles");
    let chat = list(json!([{"role": "user", "content": "hi"}]));
    let err = template
        .render(&chat, None, false, "", "")
        .expect_err("str + int");
    assert!(
        matches!(err, TemplateError::Render { line: Some(2), .. }),
        "{err:?}"
    );
    let err = template
        .render(&[json!("not an object")], None, false, "", "")
        .expect_err("bad");
    assert!(err.to_string().contains("message 0"), "{err}");
}

#[test]
fn jinja_features_of_real_templates_render_as_jinja2_does() {
    // namespace(), `is not none`, indented tojson, filtered loops, loop.last, trim_blocks and
    // lstrip_blocks around block tags; expected string produced by jinja2 with HF's settings.
    let source = "{% set ns = namespace(system=none) %}\n{% for m in messages %}\n    \
        {% if m.role == 'system' %}{% set ns.system = m.content %}{% endif %}\n{% endfor %}\n\
        System: {{ ns.system if ns.system is not none else 'default' }}\n{% for t in tools %}\n\
        {{ t | tojson(indent=4) }}\n{% endfor %}\n{% for m in messages if m.role != 'system' %}\n\
        {{ loop.index }}. {{ m.role | capitalize }}: {{ m.content | trim }}\
        {% if not loop.last %};{% endif %}\n\n{% endfor %}\n";
    let template = ChatTemplate::new(source).expect("compiles");
    let chat = list(json!([
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": " hi "},
        {"role": "assistant", "content": "yo"},
    ]));
    let tools = list(json!([{"name": "f", "parameters": {"type": "object", "properties": {}}}]));
    let out = template
        .render(&chat, Some(&tools), false, "", "")
        .expect("renders");
    assert_eq!(
        out,
        "System: Sys\n{\n    \"name\": \"f\",\n    \"parameters\": {\n        \"type\": \
         \"object\",\n        \"properties\": {}\n    }\n}\n1. User: hi;\n2. Assistant: yo\n"
    );
}

#[test]
fn a_template_that_loops_without_end_stops_with_a_named_error() {
    let looping = ChatTemplate::new(
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ '' }}{% endfor %}{% endfor %}",
    )
    .expect("parses");
    let err = looping
        .render(
            &list(json!([{"role": "user", "content": "hi"}])),
            None,
            true,
            "",
            "",
        )
        .unwrap_err();
    assert!(matches!(err, TemplateError::TooLong), "{err:?}");
    assert!(err.to_string().contains("limit of"), "{err}");
}
