//! Constrained decoding on the real default model: JSON Schema answers that always parse and
//! validate, forced tool calls, typed answers, and clear errors for what cannot be enforced.

mod support;

use any_core::schema::Schema;
use any_core::{
    ChatRequest, ChatServiceExt, Error, FinishReason, ResponseFormat, ToolCallDelta, ToolChoice,
    ToolSpec,
};
use any_llm_local::LocalModel;
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

fn model() -> &'static LocalModel {
    support::shared_model()
}

fn schema_request(prompt: &str, name: &str, schema: &Value, max_tokens: u32) -> ChatRequest {
    ChatRequest::builder()
        .system("You answer with JSON only.")
        .user(prompt)
        .temperature(0.0)
        .max_tokens(max_tokens)
        .response_format(ResponseFormat::JsonSchema {
            name: name.into(),
            schema: schema.clone(),
            strict: true,
        })
        .build()
}

/// Varied schemas, each with a prompt that fits it: every answer must parse and validate.
///
/// Strings and numbers are bounded as a real schema would bound them: the constraint keeps
/// an answer valid, but cannot stop a 135M model repeating a digit until `max_tokens` cuts it
/// off (an unbounded `population` did exactly that).
fn batch() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "flat_object",
            "Describe the city of Paris: its name and population.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 40},
                "population": {"type": "integer", "minimum": 0, "maximum": 100000000}
            }, "required": ["name", "population"], "additionalProperties": false}),
        ),
        (
            "nested_object",
            "Give a person named Ann with her address in Lyon.",
            json!({"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 30},
                "address": {"type": "object", "properties": {
                    "city": {"type": "string", "maxLength": 30},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                }, "required": ["city", "zip"], "additionalProperties": false}
            }, "required": ["name", "address"], "additionalProperties": false}),
        ),
        (
            "bounded_array",
            "List three colours.",
            json!({"type": "object", "properties": {
                "colours": {"type": "array", "items": {"type": "string", "maxLength": 15},
                            "minItems": 2, "maxItems": 4}
            }, "required": ["colours"], "additionalProperties": false}),
        ),
        (
            "enum",
            "Is the sky blue? Answer with the mood of the statement.",
            json!({"type": "object", "properties": {
                "mood": {"enum": ["positive", "negative", "neutral"]}
            }, "required": ["mood"], "additionalProperties": false}),
        ),
        (
            "integer_range",
            "Rate the film Titanic from 1 to 5.",
            json!({"type": "object", "properties": {
                "stars": {"type": "integer", "minimum": 1, "maximum": 5}
            }, "required": ["stars"], "additionalProperties": false}),
        ),
        (
            "boolean",
            "Is water wet?",
            json!({"type": "object", "properties": {"answer": {"type": "boolean"}},
                   "required": ["answer"], "additionalProperties": false}),
        ),
        (
            "nullable_any_of",
            "What is the middle name of John Smith, if any?",
            json!({"type": "object", "properties": {
                "middle_name": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]}
            }, "required": ["middle_name"], "additionalProperties": false}),
        ),
        (
            "nullable_type_array",
            "How old is the Eiffel Tower in years?",
            json!({"type": "object", "properties": {
                "years": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000}
            }, "required": ["years"], "additionalProperties": false}),
        ),
        (
            "string_pattern",
            "Give a product code made of three capital letters, a dash and four digits.",
            json!({"type": "object", "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}
            }, "required": ["code"], "additionalProperties": false}),
        ),
        (
            "string_format",
            "When did the Apollo 11 landing happen? Give the date.",
            json!({"type": "object", "properties": {
                "date": {"type": "string", "format": "date"}
            }, "required": ["date"], "additionalProperties": false}),
        ),
        (
            "defs_and_refs",
            "Give two points of a line segment.",
            json!({
                "$defs": {"point": {"type": "object", "properties": {
                    "x": {"type": "integer", "minimum": -100, "maximum": 100},
                    "y": {"type": "integer", "minimum": -100, "maximum": 100}
                }, "required": ["x", "y"], "additionalProperties": false}},
                "type": "object",
                "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
                "required": ["from", "to"], "additionalProperties": false
            }),
        ),
        (
            "optional_fields",
            "Describe a book: its title, and its year if you know it.",
            json!({"type": "object", "properties": {
                "title": {"type": "string", "maxLength": 40},
                "year": {"type": "integer", "minimum": 0, "maximum": 2100},
                "subtitle": {"type": "string", "maxLength": 40}
            }, "required": ["title"], "additionalProperties": false}),
        ),
        (
            "array_of_objects",
            "List two planets and whether each has rings.",
            json!({"type": "array", "minItems": 2, "maxItems": 3, "items": {
                "type": "object", "properties": {
                    "planet": {"type": "string", "maxLength": 12},
                    "rings": {"type": "boolean"}
                }, "required": ["planet", "rings"], "additionalProperties": false
            }}),
        ),
        (
            "draft_07_definitions",
            "Give a temperature reading in Celsius.",
            json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "definitions": {"celsius": {"type": "number", "minimum": -90, "maximum": 60}},
                "type": "object",
                "properties": {"reading": {"$ref": "#/definitions/celsius"}},
                "required": ["reading"], "additionalProperties": false
            }),
        ),
    ]
}

#[tokio::test]
async fn every_answer_in_a_batch_of_schemas_parses_and_validates() {
    let cases = batch();
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (name, prompt, schema) in &cases {
        let compiled = Schema::compile_named(*name, schema).expect("test schemas are valid");
        let response = model()
            .chat(schema_request(prompt, name, schema, 160))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = response.text();
        match compiled.parse(text) {
            Ok(_) => assert_eq!(
                response.finish_reason,
                Some(FinishReason::Stop),
                "{name}: a complete answer ends with Stop"
            ),
            Err(e) => failures.push(format!("{name}: {e} ({:?})", response.finish_reason)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} answers failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn json_mode_gives_an_object_and_greedy_stays_deterministic() {
    let req = ChatRequest::builder()
        .user("Describe a cat in JSON.")
        .temperature(0.0)
        .max_tokens(80)
        .response_format(ResponseFormat::Json)
        .build();
    let a = model().chat(req.clone()).await.unwrap();
    let b = model().chat(req).await.unwrap();
    assert_eq!(a.text(), b.text());
    if a.finish_reason == Some(FinishReason::Stop) {
        let v: Value = serde_json::from_str(a.text()).expect("a finished JSON answer parses");
        assert!(v.is_object(), "{v}");
    } else {
        // Cut by max_tokens: still a prefix of an object.
        assert!(a.text().starts_with('{'), "{}", a.text());
    }
}

/// Arguments of the weather tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[allow(dead_code)]
struct WeatherArgs {
    /// City name.
    city: String,
    /// Temperature unit.
    unit: Unit,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Celsius,
    Fahrenheit,
}

// ANCHOR: tools
/// A tool declared with a hand-written schema.
fn add_tool() -> ToolSpec {
    ToolSpec::new(
        "add",
        "Adds two integers.",
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
               "required": ["a", "b"], "additionalProperties": false}),
    )
}

#[tokio::test]
async fn forced_tool_calls_are_tool_calls_with_valid_arguments() {
    let weather = ToolSpec::from_type::<WeatherArgs>("get_weather", "Current weather in a city.");
    let add = add_tool();
    for (choice, expect) in [
        (
            ToolChoice::Tool {
                name: "get_weather".into(),
            },
            Some("get_weather"),
        ),
        (ToolChoice::Required, None),
    ] {
        let req = ChatRequest::builder()
            .user("What is the weather in Paris, in celsius?")
            .tool(weather.clone())
            .tool(add.clone())
            .tool_choice(choice)
            .temperature(0.0)
            .max_tokens(120)
            .build();
        let response = model().chat(req).await.unwrap();
        assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(response.text(), "");
        let calls = response.tool_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let call = &calls[0];
        if let Some(name) = expect {
            assert_eq!(call.name, name);
        }
        let spec = [&weather, &add]
            .into_iter()
            .find(|t| t.name == call.name)
            .expect("the call names one of the tools");
        let args: Value = serde_json::from_str(&call.arguments).unwrap();
        Schema::compile(&spec.parameters)
            .unwrap()
            .validate(&args)
            .unwrap_or_else(|e| panic!("{}: {e}", call.arguments));
        assert!(call.id.starts_with("call_"), "{}", call.id);
    }
}
// ANCHOR_END: tools

/// With tools it may call (`tool_choice` auto), the model chooses: an answer that starts
/// with `{` is a call, constrained to a tool's schema; anything else is text. After a tool's
/// result it answers in text.
#[tokio::test]
async fn with_tool_choice_auto_the_model_calls_a_tool_or_answers() {
    let weather = ToolSpec::from_type::<WeatherArgs>("get_weather", "Current weather in a city.");
    let add = add_tool();
    let ask = |prompt: &str| {
        ChatRequest::builder()
            .user(prompt)
            .tool(weather.clone())
            .tool(add.clone())
            .temperature(0.0)
            .max_tokens(60)
            .build()
    };
    // What the first token may be: a call's `{`, or text; and once `{` is chosen, only a
    // valid call. (A 135M model rarely decides to call a tool by itself; the grammar is what
    // keeps every call it does make well-formed.)
    let engine = any_llm_local::constrain::GrammarEngine::new(model().tokenizer()).unwrap();
    let accepts = |text: &str| {
        let mut c = engine
            .tool_call_or_text(&[weather.clone(), add.clone()])
            .unwrap();
        let ids = model()
            .tokenizer()
            .encode(text, any_llm_local::tokenizer::EncodeOptions::default());
        ids.iter().all(|&t| c.accept(t).is_ok())
    };
    assert!(accepts(
        r#"{"name": "add", "arguments": {"a": 12, "b": 30}}"#
    ));
    assert!(accepts(
        "It is sunny in Paris. {braces} are fine after the start."
    ));
    assert!(!accepts(r#"{"name": "subtract", "arguments": {}}"#));
    assert!(!accepts(
        r#"{"name": "add", "arguments": {"a": "12", "b": 30}}"#
    ));

    let chat = model()
        .chat(ask("Write one sentence about the sea."))
        .await
        .unwrap();
    assert!(chat.tool_calls().is_empty(), "{:?}", chat.tool_calls());
    assert!(
        chat.text().len() > 10 && !chat.text().starts_with('{'),
        "{}",
        chat.text()
    );

    // The call and its result go back (the template has no `tool_calls`, so the call is
    // written into the assistant turn); the model answers in text.
    let mut req = ask("What is the weather in Paris right now?");
    let call = any_core::ToolCall::new(
        "c1",
        "get_weather",
        r#"{"city": "Paris", "unit": "celsius"}"#,
    );
    req.messages
        .push(any_core::Message::assistant_tool_calls(vec![call]));
    req.messages
        .push(any_core::Message::tool("c1", "Sunny, 21 degrees celsius."));
    let answer = model().chat(req).await.unwrap();
    assert!(answer.tool_calls().is_empty(), "{:?}", answer.tool_calls());
    assert!(answer.text().contains("21"), "{}", answer.text());
}

/// What a streamed answer carried: its tool-call deltas in order, its text and its finish
/// reason.
async fn streamed(req: ChatRequest) -> (Vec<ToolCallDelta>, String, Option<FinishReason>) {
    let mut stream = model().stream(req).await.unwrap();
    let (mut deltas, mut text, mut finish) = (Vec::new(), String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        deltas.extend(chunk.tool_calls);
        text.push_str(&chunk.text);
        finish = chunk.finish_reason.or(finish);
    }
    (deltas, text, finish)
}

/// A turn where the model called `get_weather` and answered from its result, so that the
/// model, asked again, calls the tool of its own accord (`tool_choice` auto).
fn weather_conversation(tools: &[ToolSpec], city: &str) -> ChatRequest {
    let mut req = ChatRequest::builder()
        .user("What is the weather in Rome, in celsius?")
        .temperature(0.0)
        .max_tokens(60)
        .build();
    req.tools = tools.to_vec();
    req.messages
        .push(any_core::Message::assistant_tool_calls(vec![
            any_core::ToolCall::new(
                "c1",
                "get_weather",
                r#"{"city": "Rome", "unit": "celsius"}"#,
            ),
        ]));
    req.messages
        .push(any_core::Message::tool("c1", "Sunny, 24 degrees celsius."));
    req.messages.push(any_core::Message::assistant(
        "It is sunny in Rome, 24 degrees celsius.",
    ));
    req.messages.push(any_core::Message::user(format!(
        "What is the weather in {city}, in celsius?"
    )));
    req
}

// ANCHOR: streamed_tools
/// Tool calls stream as the HTTP providers stream them: first the call's id and the tool's
/// name, then the arguments' JSON text in fragments as it is generated, which add up to
/// exactly the arguments of the collected call — forced to a named tool, and chosen by the
/// model with `tool_choice` auto.
#[tokio::test]
async fn tool_calls_stream_the_name_then_the_arguments_in_fragments() {
    let weather = ToolSpec::from_type::<WeatherArgs>("get_weather", "Current weather in a city.");
    let add = add_tool();
    let tools = [weather.clone(), add.clone()];
    let forced = ChatRequest::builder()
        .user("What is the weather in Paris, in celsius?")
        .tool(weather.clone())
        .tool(add.clone())
        .tool_choice(ToolChoice::Tool {
            name: "get_weather".into(),
        })
        .temperature(0.0)
        .max_tokens(120)
        .build();
    let auto = weather_conversation(&tools, "Oslo");
    assert_eq!(auto.tool_choice, None, "auto: the model chooses");
    for (case, req) in [("named tool", forced), ("auto", auto)] {
        let collected = model().chat(req.clone()).await.unwrap();
        assert_eq!(
            collected.finish_reason,
            Some(FinishReason::ToolCalls),
            "{case}: {:?} {}",
            collected.tool_calls(),
            collected.text()
        );
        let call = &collected.tool_calls()[0];
        let (deltas, text, finish) = streamed(req).await;
        assert_eq!(finish, Some(FinishReason::ToolCalls), "{case}");
        assert_eq!(text, "", "{case}: a call is not text");
        let (first, rest) = deltas.split_first().expect("deltas");
        assert_eq!(first.name.as_deref(), Some(call.name.as_str()), "{case}");
        assert!(
            first
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with("call_local_"))
        );
        assert!(
            rest.iter()
                .all(|d| d.index == 0 && d.id.is_none() && d.name.is_none()),
            "{case}: {deltas:?}"
        );
        // Streamed: the arguments came in several pieces, not at the end in one.
        assert!(rest.len() >= 3, "{case}: {deltas:?}");
        let fragments: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
        assert_eq!(fragments, call.arguments, "{case}");
        let args: Value = serde_json::from_str(&fragments).unwrap();
        assert!(args["city"].is_string(), "{case}: {args}");
    }
}
// ANCHOR_END: streamed_tools

/// A call cut off by `max_tokens` ends with finish reason `length`: the id, the name and the
/// arguments generated so far are streamed, but never the `}` that may close the envelope,
/// so the arguments do not parse and the call cannot pass for a complete one.
#[tokio::test]
async fn a_call_cut_off_by_max_tokens_says_length_and_its_arguments_do_not_parse() {
    let weather = ToolSpec::from_type::<WeatherArgs>("get_weather", "Current weather in a city.");
    // On the default model, greedy: 11 tokens end with `"arguments":`, the 12th is ` {"`.
    let (mut before, mut during) = (0, 0);
    for max_tokens in [4, 11, 14, 23] {
        let req = ChatRequest::builder()
            .user("What is the weather in Paris, in celsius?")
            .tool(weather.clone())
            .tool_choice(ToolChoice::Required)
            .temperature(0.0)
            .max_tokens(max_tokens)
            .build();
        let collected = model().chat(req.clone()).await.unwrap();
        assert_eq!(collected.finish_reason, Some(FinishReason::Length));
        let (deltas, text, _) = streamed(req).await;
        match collected.tool_calls() {
            // Cut before the name was complete: no call, the text says what there was.
            [] => {
                before += 1;
                assert!(deltas.is_empty());
                assert!(text.starts_with("{\"name\""), "{max_tokens}: {text}");
            }
            [call] => {
                during += 1;
                assert_eq!(call.name, "get_weather");
                assert_eq!(text, "");
                let fragments: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
                assert_eq!(fragments, call.arguments);
                assert!(
                    serde_json::from_str::<Value>(&call.arguments).is_err(),
                    "{max_tokens}: {}",
                    call.arguments
                );
            }
            more => panic!("{max_tokens}: {more:?}"),
        }
    }
    assert_eq!(
        (before, during),
        (2, 2),
        "cuts before and after the call started"
    );
}

// ANCHOR: typed
/// A typed answer.
#[derive(Debug, Deserialize, JsonSchema)]
struct Capital {
    country: String,
    city: String,
    #[allow(dead_code)]
    population_millions: Option<f32>,
}

#[tokio::test]
async fn chat_typed_returns_the_type() {
    let req = ChatRequest::builder()
        .user("What is the capital of France?")
        .temperature(0.0)
        .max_tokens(100)
        .build();
    let answer: Capital = model().chat_typed(req).await.unwrap();
    assert!(
        !answer.country.is_empty() && !answer.city.is_empty(),
        "{answer:?}"
    );
}
// ANCHOR_END: typed

#[tokio::test]
async fn a_cut_off_answer_is_a_clear_error_not_a_panic() {
    let req = ChatRequest::builder()
        .user("What is the capital of France?")
        .temperature(0.0)
        .max_tokens(3)
        .build();
    let err = model().chat_typed::<Capital>(req).await.unwrap_err();
    assert!(err.to_string().contains("cut off by max_tokens"), "{err}");
}

#[tokio::test]
async fn what_cannot_be_enforced_is_named() {
    let schema = json!({"type": "object", "properties": {"n": {"not": {"type": "string"}}}});
    let err = model()
        .chat(schema_request("x", "negated", &schema, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("not"), "{err}");
    let err = model()
        .chat(schema_request("x", "never", &json!(false), 10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
}

#[tokio::test]
async fn self_referencing_schemas_are_refused_by_name_without_internals() {
    let cycles = [
        json!({"$ref": "#"}),
        json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}),
        json!({"type": "object", "properties": {"x": {"allOf": [{"$ref": "#"}]}}, "allOf": [{"$ref": "#"}]}),
    ];
    for schema in cycles {
        let err = model()
            .chat(schema_request("x", "cyclic", &schema, 10))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::InvalidRequest(_) | Error::Unsupported(_)),
            "{schema}: {err:?}"
        );
        assert!(text.contains("$ref"), "{schema}: {text}");
        assert!(text.len() < 400, "{schema}: {text}");
        let tools = ChatRequest::builder()
            .user("x")
            .tool(any_core::ToolSpec::new("t", "a tool", schema.clone()))
            .tool_choice(any_core::ToolChoice::Required)
            .max_tokens(10)
            .build();
        let err = model().chat(tools).await.unwrap_err();
        assert!(err.to_string().contains("$ref"), "{schema}: {err}");
        assert!(err.to_string().len() < 400, "{schema}: {err}");
    }
    // Recursion through a property is a tree, which has values: still accepted.
    let tree = json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}}}});
    model()
        .chat(schema_request("A tree", "tree", &tree, 8))
        .await
        .expect("a recursive schema with values is accepted");
}
