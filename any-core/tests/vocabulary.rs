//! The behaviours other crates rely on: what the builder builds, what the accumulator rebuilds,
//! what survives serde, and which types cross threads.

use any_core::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(value: &T) -> T {
    let text = serde_json::to_string(value).expect("serialises");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} does not deserialise: {e}"))
}

#[test]
fn builder_produces_exactly_the_request_it_describes() {
    #[derive(Debug, Clone, PartialEq)]
    struct TraceTag(u32);

    let tool = ToolSpec::new("add", "Adds two numbers", json!({"type": "object"}));
    let req = ChatRequest::builder()
        .model("m")
        .system("sys")
        .user("hello")
        .assistant("hi")
        .message(Message::tool("call_1", "42"))
        .tool(tool.clone())
        .tool_choice(ToolChoice::Tool { name: "add".into() })
        .parallel_tool_calls(false)
        .temperature(0.5)
        .top_p(0.9)
        .top_k(40)
        .min_p(0.05)
        .max_tokens(64)
        .seed(7)
        .repetition_penalty(1.1)
        .frequency_penalty(0.2)
        .presence_penalty(-0.3)
        .stop("\n\n")
        .stop("END")
        .response_format(ResponseFormat::Json)
        .logprobs(3)
        .extension(SessionId("s".into()))
        .extension(TraceTag(9))
        .build();

    let expected = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        "tools": [{"name": "add", "description": "Adds two numbers", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "add"},
        "parallel_tool_calls": false,
        "temperature": 0.5, "top_p": 0.9f32, "top_k": 40, "min_p": 0.05f32, "max_tokens": 64,
        "seed": 7, "repetition_penalty": 1.1f32, "frequency_penalty": 0.2f32,
        "presence_penalty": -0.3f32,
        "stop": ["\n\n", "END"],
        "response_format": {"type": "json"},
        "logprobs": 3,
    });
    assert_eq!(serde_json::to_value(&req).expect("serialises"), expected);
    assert_eq!(
        req.extensions.get::<SessionId>(),
        Some(&SessionId("s".into()))
    );
    assert_eq!(req.extensions.get::<TraceTag>(), Some(&TraceTag(9)));
    assert_eq!(req.tools, vec![tool]);
    req.validate().expect("a well-formed request validates");
}

#[test]
fn validate_names_the_bad_parameter() {
    let check = |req: ChatRequest, needle: &str| {
        let err = req.validate().expect_err("must be rejected").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    };
    check(ChatRequest::default(), "no messages");
    check(
        ChatRequest::builder().user("x").temperature(-1.0).build(),
        "temperature",
    );
    check(ChatRequest::builder().user("x").top_p(0.0).build(), "top_p");
    check(ChatRequest::builder().user("x").min_p(1.5).build(), "min_p");
    check(
        ChatRequest::builder().user("x").max_tokens(0).build(),
        "max_tokens",
    );
    check(
        ChatRequest::builder()
            .user("x")
            .presence_penalty(3.0)
            .build(),
        "presence_penalty",
    );
    check(
        ChatRequest::builder()
            .user("x")
            .tool_choice(ToolChoice::Tool {
                name: "nope".into(),
            })
            .build(),
        "`nope`",
    );
    check(
        ChatRequest::builder()
            .user("x")
            .tool_choice(ToolChoice::Required)
            .build(),
        "required",
    );
    check(
        ChatRequest::builder()
            .user("x")
            .response_format(ResponseFormat::JsonSchema {
                name: "s".into(),
                schema: json!(3),
                strict: true,
            })
            .build(),
        "schema `s`",
    );
}

fn delta(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: args.into(),
    }
}

#[tokio::test]
async fn accumulator_rebuilds_interleaved_tool_calls_text_finish_and_usage() {
    #[derive(Debug, Clone, PartialEq)]
    struct Note(&'static str);
    let mut last = ChatChunk::finish(
        FinishReason::ToolCalls,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 30,
            cached_prompt_tokens: Some(4),
        }),
    );
    last.extensions.insert(Note("from a layer"));
    let chunks = vec![
        ChatChunk {
            model: Some("m1".into()),
            ..ChatChunk::text("Let me ")
        },
        ChatChunk::text("check."),
        // Three calls, opened out of order, their arguments split mid-token and interleaved.
        ChatChunk {
            tool_calls: vec![delta(1, Some("call_b"), Some("weather"), "{\"ci")],
            ..Default::default()
        },
        ChatChunk {
            tool_calls: vec![delta(0, Some("call_a"), Some("time"), "")],
            ..Default::default()
        },
        ChatChunk {
            tool_calls: vec![
                delta(1, None, None, "ty\": \"Ly"),
                delta(0, None, None, "{\"tz\":"),
            ],
            ..Default::default()
        },
        ChatChunk {
            tool_calls: vec![delta(2, None, Some("noargs"), "")],
            ..Default::default()
        },
        ChatChunk {
            tool_calls: vec![
                delta(0, None, None, "\"UTC\"}"),
                delta(1, None, None, "on\"}"),
            ],
            ..Default::default()
        },
        last,
    ];
    let response = ChatStream::from_chunks(chunks)
        .collect_response()
        .await
        .expect("collects");
    assert_eq!(response.text(), "Let me check.");
    assert_eq!(response.model.as_deref(), Some("m1"));
    assert_eq!(
        response.tool_calls(),
        &[
            ToolCall::new("call_a", "time", "{\"tz\":\"UTC\"}"),
            ToolCall::new("call_b", "weather", "{\"city\": \"Lyon\"}"),
            ToolCall::new("call_2", "noargs", "{}"),
        ]
    );
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(response.usage.map(|u| u.total_tokens()), Some(42));
    assert_eq!(
        response.extensions.get::<Note>(),
        Some(&Note("from a layer"))
    );

    #[derive(Deserialize, PartialEq, Debug)]
    struct Weather {
        city: String,
    }
    let w: Weather = response.tool_calls()[1]
        .parse_arguments()
        .expect("valid JSON");
    assert_eq!(
        w,
        Weather {
            city: "Lyon".into()
        }
    );
}

#[tokio::test]
async fn accumulator_rejects_a_nameless_call_and_streams_pass_errors() {
    let chunks = vec![ChatChunk {
        tool_calls: vec![delta(0, Some("x"), None, "{}")],
        ..Default::default()
    }];
    let err = ChatStream::from_chunks(chunks)
        .collect_response()
        .await
        .expect_err("no name");
    assert!(err.to_string().contains("without a name"), "{err}");

    let err = ChatStream::from_error(Error::Timeout("slow".into()))
        .collect_response()
        .await
        .expect_err("error");
    assert!(matches!(err, Error::Timeout(_)));
}

#[tokio::test]
async fn a_whole_response_streams_back_to_itself() {
    let mut message = Message::assistant("done");
    message.tool_calls = vec![ToolCall::new("c1", "f", "{\"a\":1}")];
    let original = ChatResponse {
        message,
        finish_reason: Some(FinishReason::Stop),
        usage: Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_prompt_tokens: None,
        }),
        logprobs: vec![],
        model: Some("m".into()),
        extensions: Extensions::new(),
    };
    let again = ChatStream::from_response(original.clone())
        .collect_response()
        .await
        .expect("collects");
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&original).unwrap()
    );
}

#[test]
fn every_public_type_survives_serde() {
    let msgs = vec![
        Message::system("s"),
        Message::user(vec![
            ContentPart::Text {
                text: "look".into(),
            },
            ContentPart::Image {
                url: "data:image/png;base64,AAAA".into(),
                detail: Some("low".into()),
            },
        ]),
        Message::assistant_tool_calls(vec![ToolCall::new("1", "f", "{}")]),
        Message::tool("1", "result"),
    ];
    for m in &msgs {
        assert_eq!(&round_trip(m), m);
    }
    assert_eq!(msgs[1].text(), "look");
    for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
        assert_eq!(round_trip(&role), role);
        assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
    }
    for choice in [
        ToolChoice::Auto,
        ToolChoice::None,
        ToolChoice::Required,
        ToolChoice::Tool { name: "t".into() },
    ] {
        assert_eq!(round_trip(&choice), choice);
    }
    for format in [
        ResponseFormat::Text,
        ResponseFormat::Json,
        ResponseFormat::JsonSchema {
            name: "n".into(),
            schema: json!({"type": "object"}),
            strict: true,
        },
    ] {
        assert_eq!(round_trip(&format), format);
    }
    for reason in [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
    ] {
        assert_eq!(round_trip(&reason), reason);
    }
    assert_eq!(
        serde_json::from_value::<FinishReason>(json!("end_turn_of_tomorrow")).unwrap(),
        FinishReason::Other
    );

    let sampling = Sampling {
        temperature: Some(0.1),
        stop: vec!["x".into()],
        seed: Some(3),
        ..Default::default()
    };
    assert_eq!(round_trip(&sampling), sampling);
    let req = ChatRequest::builder()
        .messages(msgs.clone())
        .sampling(sampling)
        .logprobs(2)
        .build();
    assert_eq!(
        serde_json::to_value(round_trip(&req)).unwrap(),
        serde_json::to_value(&req).unwrap()
    );

    let logprob = TokenLogprob {
        token: "a".into(),
        id: Some(1),
        logprob: -0.5,
        top: vec![TopLogprob {
            token: "b".into(),
            id: None,
            logprob: -1.0,
        }],
    };
    assert_eq!(round_trip(&logprob), logprob);
    let chunk = ChatChunk {
        text: "t".into(),
        tool_calls: vec![delta(0, Some("i"), Some("n"), "{")],
        finish_reason: Some(FinishReason::Length),
        usage: Some(Usage::default()),
        logprobs: vec![logprob],
        model: Some("m".into()),
        extensions: Extensions::new(),
    };
    assert_eq!(
        serde_json::to_value(round_trip(&chunk)).unwrap(),
        serde_json::to_value(&chunk).unwrap()
    );

    let spec = ToolSpec::new("f", "does f", json!({"type": "object", "properties": {}}));
    assert_eq!(round_trip(&spec), spec);
    let usage = Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        cached_prompt_tokens: Some(1),
    };
    assert_eq!(round_trip(&usage), usage);
    let embed = EmbedRequest {
        dimensions: Some(8),
        ..EmbedRequest::new(["a", "b"])
    };
    assert_eq!(round_trip(&embed).inputs, embed.inputs);
    let embedded = EmbedResponse {
        embeddings: vec![vec![0.5, -1.0]],
        model: Some("e".into()),
        usage: None,
    };
    assert_eq!(round_trip(&embedded), embedded);
    let verdict = Verdict {
        spans: vec![Span {
            start: 0,
            end: 3,
            label: "EMAIL".into(),
        }],
        redacted: Some("[EMAIL]".into()),
        ..Verdict::fail("pii", 0.8, "pii", "an e-mail address")
    };
    assert_eq!(round_trip(&verdict), verdict);
    assert_eq!(round_trip(&SessionId("s".into())), SessionId("s".into()));
    assert_eq!(round_trip(&UserId("u".into())), UserId("u".into()));
}

#[test]
fn tool_specs_come_from_rust_types() {
    /// Sum arguments.
    #[derive(Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Add {
        /// First addend.
        a: i64,
        /// Optional second addend.
        b: Option<i64>,
    }
    let spec = ToolSpec::from_type::<Add>("add", "adds");
    assert_eq!(spec.parameters["type"], "object");
    assert_eq!(
        spec.parameters["properties"]["a"]["description"],
        "First addend."
    );
    assert_eq!(spec.parameters["required"], json!(["a"]));
    let ResponseFormat::JsonSchema {
        name,
        schema,
        strict,
    } = ResponseFormat::json_schema_for::<Add>()
    else {
        panic!("json_schema_for gives a JSON Schema format");
    };
    assert_eq!((name.as_str(), strict), ("Add", true));
    assert_eq!(schema, spec.parameters);
}

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn services_and_streams_cross_threads() {
    assert_send_sync_clone::<BoxChatService>();
    assert_send_sync_clone::<BoxEmbedService>();
    assert_send_sync_clone::<ChatRequest>();
    assert_send_sync::<ChatStream>();
    assert_send_sync::<ChatResponse>();
    assert_send_sync::<Error>();
}

#[tokio::test]
async fn chat_ext_sends_the_request_down_and_collects_what_comes_up() {
    let (svc, mut handle) = tower_test::mock::pair::<ChatRequest, ChatStream>();
    let svc = tower::ServiceExt::map_err(svc, Error::from_boxed);
    let model = svc.boxed_chat();
    let call = tokio::spawn({
        let model = model.clone();
        async move {
            model
                .chat(ChatRequest::builder().user("ping").max_tokens(3).build())
                .await
        }
    });
    let (req, send) = handle.next_request().await.expect("a request arrives");
    assert_eq!(req.messages, vec![Message::user("ping")]);
    assert_eq!(req.sampling.max_tokens, Some(3));
    send.send_response(ChatStream::from_chunks(vec![
        ChatChunk::text("po"),
        ChatChunk::text("ng"),
    ]));
    let response = call.await.expect("joins").expect("answers");
    assert_eq!(response.text(), "pong");

    // An error from below reaches the caller as its own kind.
    let call = tokio::spawn({
        let model = model.clone();
        async move { model.complete("again").await }
    });
    let (_, send) = handle.next_request().await.expect("a request arrives");
    send.send_error(Error::RateLimited {
        message: "slow down".into(),
        retry_after: None,
    });
    let err = call.await.expect("joins").expect_err("fails");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn map_stream_watches_chunks_and_keeps_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct Tag;
    let mut stream = ChatStream::from_chunks(vec![ChatChunk::text("a"), ChatChunk::text("b")]);
    stream.extensions_mut().insert(Tag);
    let upper = stream.map_stream(|s| {
        s.map(|c| {
            c.map(|mut c| {
                c.text = c.text.to_uppercase();
                c
            })
        })
    });
    assert_eq!(upper.extensions().get::<Tag>(), Some(&Tag));
    let response = upper.collect_response().await.expect("collects");
    assert_eq!(response.text(), "AB");
    assert_eq!(response.extensions.get::<Tag>(), Some(&Tag));
}

#[tokio::test]
async fn tower_timeout_comes_back_to_the_chat_service_shape() {
    use std::time::Duration;
    use tower::ServiceBuilder;
    let slow = tower::service_fn(|_req: ChatRequest| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Error>(ChatStream::from_chunks(vec![]))
    });
    let stack = ServiceBuilder::new()
        .map_err(Error::from_boxed)
        .timeout(Duration::from_millis(10))
        .service(slow)
        .boxed_chat();
    let err = stack.complete("hi").await.expect_err("times out");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(err.is_retryable());
}
