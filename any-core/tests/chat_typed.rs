//! `chat_typed` over stand-in services: what it asks for, and every way an answer can fail.

use any_core::{
    ChatChunk, ChatRequest, ChatServiceExt, ChatStream, Error, FinishReason, ResponseFormat,
    ToolCallDelta,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct Person {
    name: String,
    age: u8,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct Team {
    members: Vec<Person>,
}

/// A service that answers every request with `chunks`, and checks that it was asked for
/// `Team`'s schema.
fn answering(chunks: Vec<ChatChunk>) -> impl any_core::ChatService<Future: Send> + Sync {
    tower::service_fn(move |req: ChatRequest| {
        let chunks = chunks.clone();
        async move {
            let ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } = &req.response_format
            else {
                panic!(
                    "chat_typed must ask for a JSON Schema, got {:?}",
                    req.response_format
                );
            };
            assert_eq!(name, "Team");
            assert!(strict);
            assert_eq!(schema["required"][0], "members");
            Ok::<_, Error>(ChatStream::from_chunks(chunks))
        }
    })
}

#[tokio::test]
async fn a_valid_answer_becomes_the_type_even_split_over_chunks() {
    let model = answering(vec![
        ChatChunk::text("  {\"members\": [{\"name\": \"Ada\", "),
        ChatChunk::text("\"age\": 36}]}\n"),
        ChatChunk::finish(FinishReason::Stop, None),
    ]);
    let team: Team = model.chat_typed("Who is on the team?").await.unwrap();
    assert_eq!(
        team,
        Team {
            members: vec![Person {
                name: "Ada".into(),
                age: 36,
                email: None
            }]
        }
    );
}

#[tokio::test]
async fn a_violation_names_the_path_and_keyword() {
    let model = answering(vec![ChatChunk::text(
        r#"{"members": [{"name": "Ada", "age": 36}, {"name": "Bob", "age": 300}, {"age": 1}]}"#,
    )]);
    let err = model.chat_typed::<Team>("Who?").await.unwrap_err();
    let Error::SchemaViolation { schema, violations } = &err else {
        panic!("expected a schema violation, got {err:?}");
    };
    assert_eq!(schema, "Team");
    let found: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.instance_path.as_str(), v.keyword.as_str()))
        .collect();
    assert!(found.contains(&("/members/1/age", "maximum")), "{found:?}");
    assert!(found.contains(&("/members/2", "required")), "{found:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/members/1/age: 300 is greater than the maximum of 255"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_answer_cut_by_max_tokens_says_so() {
    let model = answering(vec![
        ChatChunk::text(r#"{"members": [{"name": "Ad"#),
        ChatChunk::finish(FinishReason::Length, None),
    ]);
    let err = model.chat_typed::<Team>("Who?").await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    assert!(err.to_string().contains("cut off by max_tokens"), "{err}");
}

#[tokio::test]
async fn prose_and_tool_calls_are_errors_that_quote_them() {
    let model = answering(vec![ChatChunk::text("The team is Ada and Bob.")]);
    let err = model.chat_typed::<Team>("Who?").await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    assert!(
        err.to_string().contains("`The team is Ada and Bob.`"),
        "{err}"
    );

    let model = answering(vec![ChatChunk {
        tool_calls: vec![ToolCallDelta {
            index: 0,
            id: Some("c1".into()),
            name: Some("lookup".into()),
            arguments: "{}".into(),
        }],
        finish_reason: Some(FinishReason::ToolCalls),
        ..Default::default()
    }]);
    let err = model.chat_typed::<Team>("Who?").await.unwrap_err();
    assert!(
        err.to_string().contains("called tools instead (lookup)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_service_error_passes_through() {
    let model = tower::service_fn(|_req: ChatRequest| async {
        Err::<ChatStream, _>(Error::Timeout("slow".into()))
    });
    let err = model.chat_typed::<Team>("Who?").await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}
