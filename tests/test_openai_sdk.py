"""The official `openai` SDK, unchanged, against the real runtime and the bundled models."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openai import OpenAI

from conftest import Runtime

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
# A conversation that already used the tool once: the bundled 135M model follows the pattern in `auto` mode.
WEATHER_HISTORY = [
    {"role": "user", "content": "What is the weather in Berlin?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Berlin\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature_c\": 12, \"sky\": \"cloudy\"}"},
    {"role": "assistant", "content": "It is 12 °C and cloudy in Berlin."},
]


@pytest.fixture(scope="module")
def client(runtime) -> OpenAI:
    # No key: on a loopback bind /v1 inference may be called without one (seed 000's migration note).
    return OpenAI(base_url=runtime.url + "/v1", api_key="unused-locally", max_retries=0)


def test_chat_non_stream(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0, seed=1, max_tokens=24,
    )
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == "tarx-local"
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_temperature_zero_is_reproducible(client: OpenAI) -> None:
    args = dict(model="tarx-local", messages=[{"role": "user", "content": "Name three colours."}],
                temperature=0, seed=3, max_tokens=20)
    first = client.chat.completions.create(**args).choices[0].message.content
    # A different request in between must not change the answer (no state leaks between requests).
    client.chat.completions.create(model="tarx-local", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert client.chat.completions.create(**args).choices[0].message.content == first


def test_chat_stream_matches_non_stream_and_counts_usage(client: OpenAI) -> None:
    args = dict(model="tarx-local", messages=[{"role": "user", "content": "Tell me about cats."}],
                temperature=0, seed=5, max_tokens=20)
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    usage_chunks = [c for c in chunks if c.usage is not None]
    # The usage chunk is the last and the only one without a choice; the route evidence rides on the chunk
    # that carries finish_reason, so no other chunk has empty choices.
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    assert all(len(c.choices) == 1 for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason and chunks[-2].model_extra["tarx_route"]["execution_plane"] == "local"
    assert usage_chunks[0].usage.completion_tokens == whole.usage.completion_tokens
    assert usage_chunks[0].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_without_usage_option_sends_no_usage(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, seed=7,
        stream=True))
    assert len(chunks) >= 3  # role, at least one token, finish
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_quickstart_stream_loop_never_meets_empty_choices(client: OpenAI) -> None:
    """The OpenAI quickstart indexes choices[0] on every chunk; only include_usage may add one without."""
    printed = []
    for c in client.chat.completions.create(model="tarx-local", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, temperature=0, seed=7, stream=True):
        printed.append(c.choices[0].delta.content or "")
    assert "".join(printed).strip()
    route_chunk = c.model_extra.get("tarx_route")
    assert c.choices[0].finish_reason and route_chunk["execution_plane"] == "local"


def test_null_parameters_mean_their_defaults(client: OpenAI, runtime: Runtime) -> None:
    nulls = {k: None for k in ("temperature", "top_p", "n", "stream", "stop", "frequency_penalty",
                               "presence_penalty", "seed", "user", "tools", "tool_choice", "response_format",
                               "stream_options", "parallel_tool_calls", "max_completion_tokens")}
    r = httpx.post(runtime.url + "/v1/chat/completions", json={
        "model": "tarx-local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, **nulls},
        timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    r = httpx.post(runtime.url + "/v1/chat/completions", json={
        "model": "tarx-local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": None,
        "temperature": 0, "seed": 7}, timeout=120)  # greedy: ends at the model's own stop, not at n_ctx
    assert r.status_code == 200, r.text
    # Null where a value is required stays an error.
    r = httpx.post(runtime.url + "/v1/chat/completions", json={"model": "tarx-local", "messages": None}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    out = client.chat.completions.create(model="tarx-local", messages=[{"role": "user", "content": "Hi"}],
                                         max_tokens=3, temperature=None, top_p=None, seed=None, stop=None)
    assert out.choices[0].message.content
    emb = httpx.post(runtime.url + "/v1/embeddings", json={"model": "tarx-local", "input": "hi",
                                                           "dimensions": None, "user": None}, timeout=60)
    assert emb.status_code == 200, emb.text


def test_stop_sequence_cuts_output(client: OpenAI) -> None:
    args = dict(model="tarx-local", messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                temperature=0, max_tokens=60)
    full = client.chat.completions.create(**args).choices[0].message.content
    assert "5" in full
    r = client.chat.completions.create(**args, stop=["5"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[: full.index("5")]


def test_multi_turn_two_turns_in_a_row(client: OpenAI) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "My name is Ada. Remember it."}]
    first = client.chat.completions.create(model="tarx-local", messages=messages, temperature=0, max_tokens=24)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "What is my name?"}]
    second = client.chat.completions.create(model="tarx-local", messages=messages, temperature=0, max_tokens=24)
    assert second.choices[0].message.content.strip()
    # The second turn's prompt holds the whole history, so it must be longer than the first turn's.
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens
    # Asking the second turn afresh gives the same answer: nothing from the first call leaked into the second.
    again = client.chat.completions.create(model="tarx-local", messages=messages, temperature=0, max_tokens=24)
    assert again.choices[0].message.content == second.choices[0].message.content


def test_embeddings_string_and_list(client: OpenAI) -> None:
    one = client.embeddings.create(model="tarx-local", input="The cat sat on the mat.")
    many = client.embeddings.create(model="tarx-local", input=["The cat sat on the mat.", "Stock markets fell."])
    assert len(one.data) == 1 and len(many.data) == 2
    v0, v1, w = one.data[0].embedding, many.data[1].embedding, many.data[0].embedding
    assert len(v0) == len(v1) > 100
    assert abs(sum(x * x for x in v0) - 1.0) < 1e-3  # unit length
    assert max(abs(a - b) for a, b in zip(v0, w, strict=True)) < 1e-4  # same text, same vector
    assert max(abs(a - b) for a, b in zip(v0, v1, strict=True)) > 1e-2  # different text, different vector
    assert many.usage.prompt_tokens > one.usage.prompt_tokens > 0


def test_embedding_does_not_depend_on_its_batch(client: OpenAI) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    alone = client.embeddings.create(model="tarx-local", input=text).data[0].embedding
    four = client.embeddings.create(model="tarx-local", input=[text, "Stock markets fell.", text, text]).data
    for item in (four[0], four[2], four[3]):
        assert item.embedding == alone  # bit-identical, whatever else was in the call


def test_embeddings_take_token_ids(client: OpenAI) -> None:
    """Token arrays (LangChain's OpenAIEmbeddings sends them by default) are ids in the model's vocabulary."""
    one = client.embeddings.create(model="tarx-local", input=[1, 2, 3])
    many = client.embeddings.create(model="tarx-local", input=[[1, 2], [3]])
    assert len(one.data) == 1 and len(many.data) == 2 and one.usage.prompt_tokens == 3
    assert many.usage.prompt_tokens == 3
    assert one.data[0].embedding != many.data[0].embedding


def test_embeddings_base64_matches_float(client: OpenAI) -> None:
    import base64
    import struct

    floats = client.embeddings.create(model="tarx-local", input="hello").data[0].embedding
    raw = client.embeddings.with_raw_response.create(model="tarx-local", input="hello", encoding_format="base64")
    b64 = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(b64))
    assert max(abs(a - b) for a, b in zip(decoded, floats, strict=True)) < 1e-6


def test_models_lists_both_bundled_models(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"tarx-local", "gemma"} <= ids
    assert client.models.retrieve("gemma").id == "gemma"


def test_forced_tool_call(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0, max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER[0]["function"]["parameters"])
    assert "paris" in args["city"].lower()


def test_required_tool_call_streams_as_tool_call_delta(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice="required", temperature=0, max_tokens=60, stream=True,
    ))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    json.loads(calls[0].function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)


def test_auto_tool_call_and_auto_text(client: OpenAI) -> None:
    call = client.chat.completions.create(
        model="tarx-local", messages=[*WEATHER_HISTORY, {"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice="auto", temperature=0, max_tokens=40,
    ).choices[0]
    assert call.finish_reason == "tool_calls"
    assert call.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(call.message.tool_calls[0].function.arguments) == {"city": "Paris"}

    text = client.chat.completions.create(
        model="tarx-local",
        messages=[*WEATHER_HISTORY, {"role": "user", "content": "Thanks! Write a haiku about the sea."}],
        tools=WEATHER, tool_choice="auto", temperature=0, max_tokens=20,
    ).choices[0]
    assert text.message.tool_calls is None
    assert text.message.content and not text.message.content.lstrip().startswith("<")


def test_tool_choice_none_never_calls(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="tarx-local", messages=[*WEATHER_HISTORY, {"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice="none", temperature=0, max_tokens=20,
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason != "tool_calls"


def test_json_schema_output_parses_and_validates(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "Give me a person as JSON with a name and an age."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        temperature=0, max_tokens=60,
    )
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_json_object_output_is_json(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model="tarx-local", messages=[{"role": "user", "content": "Reply with a JSON object with a key ok."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=40,
    )
    content = r.choices[0].message.content.strip()
    assert content.startswith("{")
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
