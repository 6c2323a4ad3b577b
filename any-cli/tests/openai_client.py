"""The official OpenAI Python client against `any serve` (run by tests/serve_openai.rs).

Usage: openai_client.py BASE_URL API_KEY MODEL. Prints `ok <case>` per case; any failure
raises, so the process exits non-zero with the traceback.
"""

import json
import math
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
question = [{"role": "user", "content": "What is the capital of France?"}]


def ok(case):
    print(f"ok {case}", flush=True)


# Plain chat.
plain = client.chat.completions.create(
    model=model, messages=question, max_tokens=16, temperature=0
)
text = plain.choices[0].message.content
assert isinstance(text, str) and text, plain
assert plain.choices[0].finish_reason in ("stop", "length"), plain
assert plain.id.startswith("chatcmpl-"), plain.id
assert plain.model == model, plain.model
assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
ok("plain chat")

# Streaming chat: the same greedy request, streamed, adds up to the same text.
stream = client.chat.completions.create(
    model=model,
    messages=question,
    max_tokens=16,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(pieces) == text, ("".join(pieces), text)
assert finish == plain.choices[0].finish_reason, finish
assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens, usage
ok("streaming chat")

# Tool calls: a forced call must name the tool, with JSON arguments (parallel, interleaved
# fragments are covered by any-llm's server tests with a scripted service).
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 24}},
                "required": ["city"],
            },
        },
    }
]
called = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "What is the weather in Lyon?"}],
    tools=tools,
    tool_choice="required",
    max_tokens=64,
)
# The local backend constrains a forced call to the tool's schema.
assert called.choices[0].finish_reason == "tool_calls", called
call = called.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather", call
assert isinstance(json.loads(call.function.arguments)["city"], str), call
ok("tool calls")

# Streamed tool calls: the first delta carries the call's id and the tool's name, later ones
# the arguments in pieces; put together, they are the call of the same greedy request
# unstreamed.
forced = dict(
    model=model,
    messages=[{"role": "user", "content": "What is the weather in Lyon?"}],
    tools=tools,
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
    max_tokens=64,
    temperature=0,
)
whole = client.chat.completions.create(**forced)
expected = whole.choices[0].message.tool_calls[0]
ids, names, fragments, finish = [], [], [], None
for chunk in client.chat.completions.create(**forced, stream=True):
    if not chunk.choices:
        continue
    finish = chunk.choices[0].finish_reason or finish
    for delta in chunk.choices[0].delta.tool_calls or []:
        assert delta.index == 0, delta
        if delta.id:
            assert delta.type == "function", delta
            ids.append(delta.id)
        if delta.function and delta.function.name:
            names.append(delta.function.name)
        if delta.function and delta.function.arguments:
            fragments.append(delta.function.arguments)
assert finish == whole.choices[0].finish_reason == "tool_calls", finish
assert len(ids) == 1 and ids[0].startswith("call_"), ids
assert names == [expected.function.name] == ["get_weather"], names
assert len(fragments) >= 3, fragments
assert "".join(fragments) == expected.function.arguments, (fragments, expected)
assert isinstance(json.loads(expected.function.arguments)["city"], str), expected
ok("streamed tool calls")

# JSON Schema output: constrained decoding, so it always parses and conforms.
schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "country": {"type": "string", "maxLength": 24},
    },
    "required": ["city", "country"],
    "additionalProperties": False,
}
shaped = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Name a city and its country."}],
    response_format={
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    },
    max_tokens=64,
)
value = json.loads(shaped.choices[0].message.content)
assert set(value) == {"city", "country"}, value
assert all(isinstance(v, str) and len(v) <= 24 for v in value.values()), value
ok("json schema")

# Embeddings: the client asks for base64 by default and decodes it.
emb = client.embeddings.create(model=model, input=["a red apple", "the stock market"])
assert [d.index for d in emb.data] == [0, 1], emb.data
vectors = [d.embedding for d in emb.data]
assert len(vectors[0]) == len(vectors[1]) > 0
if model == "local":
    # The local default: the sentence encoder (all-MiniLM-L6-v2), not the chat model.
    assert len(vectors[0]) == 384, len(vectors[0])
for v in vectors:
    assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3
assert emb.usage.prompt_tokens > 0
floats = client.embeddings.create(model=model, input="a red apple", encoding_format="float")
assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, vectors[0])) < 1e-6
ok("embeddings")

# Model listing.
ids = [m.id for m in client.models.list()]
assert ids == [model], ids
assert client.models.retrieve(model).id == model
ok("models")

# Errors: a wrong key, an unknown model.
bad = openai.OpenAI(base_url=base_url, api_key="wrong-key", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401, e
try:
    client.chat.completions.create(model="no-such-model", messages=question)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.body
ok("errors")
