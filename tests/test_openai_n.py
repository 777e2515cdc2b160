"""`n` > 1 choices on /v1/chat/completions and /v1/completions, through the official `openai` SDK against the real
runtime and the bundled SmolLM2 (tarx-local): the choices share the prompt's KV, each has its own seed."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from conftest import LONG_PROMPT, Runtime

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY: dict[str, Any] = {"model": "tarx-local", "messages": MESSAGES, "max_tokens": 12, "temperature": 0, "seed": 3}
SAMPLED: dict[str, Any] = {**GREEDY, "temperature": 1.0, "seed": 11}
PROMPT: dict[str, Any] = {"model": "tarx-local", "prompt": "Once upon a time, in a small village,", "max_tokens": 10,
                          "temperature": 1.0, "seed": 5}


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> OpenAI:
    return OpenAI(base_url=runtime.url + "/v1", api_key="unused-locally", max_retries=0)


def stats(rt: Runtime) -> dict[str, int]:
    return rt.health()["models"]["tarx-local"]["stats"] or defaultdict(int)  # None until the model first loads


def contents(r: Any) -> list[str]:
    assert [c.index for c in r.choices] == list(range(len(r.choices)))
    return [c.message.content for c in r.choices]


def streamed_chat(client: OpenAI, **args: Any) -> tuple[dict[int, str], dict[int, str], Any]:
    """Text and finish_reason per choice index, and the usage chunk."""
    texts: dict[int, str] = defaultdict(str)
    finishes: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        [choice] = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            assert choice.index not in finishes  # one finish per choice
            finishes[choice.index] = choice.finish_reason
    return dict(texts), finishes, usage


# ---- chat ----------------------------------------------------------------------------------------------------------

def test_chat_n_greedy_choices_are_equal_and_usage_counts_the_prompt_once(client: OpenAI) -> None:
    one = client.chat.completions.create(**GREEDY)
    r = client.chat.completions.create(**GREEDY, n=3)
    assert contents(r) == [one.choices[0].message.content] * 3
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert r.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    routes = r.model_extra["tarx_routes"]
    assert len(routes) == 3 and len({x["evidence_id"] for x in routes}) == 3  # each choice is its own call
    assert r.model_extra["tarx_route"] == routes[0]


def test_chat_n_above_the_slots_waits_for_them(client: OpenAI, runtime: Runtime) -> None:
    # Eight choices on four slots (the default `parallel`): four wait in the queue and still answer.
    r = client.chat.completions.create(**{**GREEDY, "max_tokens": 6}, n=8)
    assert httpx.get(runtime.url + "/v1/capacity").json()["slots"]["tarx-local"]["total"] == 4
    assert len(set(contents(r))) == 1 and len(r.choices) == 8
    texts, finishes, _ = streamed_chat(client, **{**GREEDY, "max_tokens": 6}, n=8)
    assert [texts[i] for i in range(8)] == contents(r) and len(finishes) == 8


def test_chat_n_sampled_choices_differ_and_a_seed_reproduces_them(client: OpenAI) -> None:
    first = contents(client.chat.completions.create(**SAMPLED, n=3))
    again = contents(client.chat.completions.create(**SAMPLED, n=3))
    assert again == first
    assert len(set(first)) > 1, first
    # choice i is seeded seed + i: the same answer as a single request with that seed
    assert client.chat.completions.create(**{**SAMPLED, "seed": SAMPLED["seed"] + 2}).choices[0].message.content \
        == first[2]


def test_chat_n_stream_matches_non_stream(client: OpenAI) -> None:
    whole = client.chat.completions.create(**SAMPLED, n=3)
    texts, finishes, usage = streamed_chat(client, **SAMPLED, n=3)
    assert [texts[i] for i in range(3)] == contents(whole)
    assert [finishes[i] for i in range(3)] == [c.finish_reason for c in whole.choices]
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_chat_n_choices_share_the_prompts_kv(client: OpenAI, runtime: Runtime) -> None:
    # A prompt no slot holds yet: choice 0 evaluates it, choices 1 and 2 reuse its cells (all but the last token).
    content = f"{time.time_ns()} " + " ".join(f"word{i}" for i in range(60)) + ". Repeat the last word."
    before = stats(runtime)["prompt_tokens_reused"]
    r = client.chat.completions.create(**{**GREEDY, "messages": [{"role": "user", "content": content}]}, n=3)
    reused = stats(runtime)["prompt_tokens_reused"] - before
    assert reused >= 2 * (r.usage.prompt_tokens - 1), (reused, r.usage)


def test_chat_n_with_logprobs_gives_each_choice_its_own(client: OpenAI) -> None:
    r = client.chat.completions.create(**SAMPLED, n=2, logprobs=True, top_logprobs=2)
    for choice in r.choices:
        entries = choice.logprobs.content
        assert "".join(e.token for e in entries) == choice.message.content
        assert all(e.logprob <= 0 and len(e.top_logprobs) == 2 for e in entries)


def test_chat_n_with_a_json_schema_every_choice_parses(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"mood": {"type": "string", "enum": ["happy", "sad", "calm"]}},
              "required": ["mood"], "additionalProperties": False}
    r = client.chat.completions.create(
        **{**SAMPLED, "messages": [{"role": "user", "content": "How do you feel? Answer as JSON."}], "max_tokens": 16},
        n=4, response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}})
    assert len(r.choices) == 4
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), schema)


def test_chat_n_with_a_required_tool_every_choice_calls_it(client: OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    r = client.chat.completions.create(
        **{**SAMPLED, "messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 16}, n=2,
        tools=[tool], tool_choice="required")
    for choice in r.choices:
        assert choice.message.content is None and choice.finish_reason in ("tool_calls", "length")
        assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]


@pytest.mark.parametrize("n", [0, -1, 9, 128])
def test_n_out_of_bounds_is_a_400_naming_n(client: OpenAI, n: int) -> None:
    for call in (lambda: client.chat.completions.create(**GREEDY, n=n),
                 lambda: client.completions.create(**PROMPT, n=n)):
        with pytest.raises(openai.BadRequestError) as err:
            call()
        body = err.value.body
        assert isinstance(body, dict) and body["type"] == "invalid_request_error" and "n:" in body["message"]


def test_n_must_be_an_integer(runtime: Runtime) -> None:
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", json={**GREEDY, "n": "2"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_leaving_a_stream_cancels_every_choice(runtime: Runtime) -> None:
    before = stats(runtime)
    body = {**GREEDY, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 1000, "n": 3,
            "stream": True}
    seen: set[int] = set()
    with httpx.Client(base_url=runtime.url, timeout=60) as c, c.stream("POST", "/v1/chat/completions",
                                                                      json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data:") and line != "data: [DONE]":
                [choice] = json.loads(line[5:])["choices"]
                if choice["delta"].get("content"):
                    seen.add(choice["index"])
            if seen == {0, 1, 2}:
                break  # every choice is decoding: leave
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and stats(runtime)["cancelled"] < before["cancelled"] + 3:
        time.sleep(0.1)
    after = stats(runtime)
    assert after["cancelled"] == before["cancelled"] + 3
    assert after["tokens_generated"] - before["tokens_generated"] < 3 * 200  # far from the 3,000 asked for


def test_leaving_a_non_stream_request_cancels_every_choice(runtime: Runtime) -> None:
    before = stats(runtime)
    body = {**GREEDY, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 1000, "n": 3}
    with runtime.client(timeout=1.0) as c:
        try:
            r = c.post("/v1/chat/completions", json=body)
            pytest.fail(f"answered before the client left: {r.status_code} {r.text[:300]}")
        except httpx.ReadTimeout:
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and stats(runtime)["cancelled"] < before["cancelled"] + 3:
        time.sleep(0.1)
    after = stats(runtime)
    assert after["cancelled"] == before["cancelled"] + 3 and after["completed"] == before["completed"]
    assert after["tokens_generated"] - before["tokens_generated"] < 3 * 300


# ---- legacy completions --------------------------------------------------------------------------------------------

def test_completion_n_non_stream_and_stream(client: OpenAI) -> None:
    one = client.completions.create(**PROMPT)
    r = client.completions.create(**PROMPT, n=3)
    texts = [c.text for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and texts[0] == one.choices[0].text
    assert len(set(texts)) > 1, texts
    assert r.usage.prompt_tokens == one.usage.prompt_tokens
    assert 3 <= r.usage.completion_tokens <= 3 * PROMPT["max_tokens"]
    chunks = list(client.completions.create(**PROMPT, n=3, stream=True, stream_options={"include_usage": True}))
    streamed = ["".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i) for i in range(3)]
    assert streamed == texts
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason}
    assert finishes == {i: c.finish_reason for i, c in enumerate(r.choices)}
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == r.usage.model_dump()


def test_completion_greedy_choices_are_equal(client: OpenAI) -> None:
    r = client.completions.create(**{**PROMPT, "temperature": 0}, n=2, logprobs=1)
    assert r.choices[0].text == r.choices[1].text
    assert all("".join(c.logprobs.tokens) == c.text for c in r.choices)
    assert r.usage.completion_tokens == 2 * client.completions.create(**{**PROMPT, "temperature": 0}).usage \
        .completion_tokens


def test_completion_prompts_times_n_index_prompt_major(client: OpenAI) -> None:
    prompts = ["One, two, three,", "Red, green,"]
    r = client.completions.create(**{**PROMPT, "prompt": prompts}, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    each = [client.completions.create(**{**PROMPT, "prompt": p}, n=2) for p in prompts]
    assert [c.text for c in r.choices] == [c.text for e in each for c in e.choices]
    assert r.usage.prompt_tokens == sum(e.usage.prompt_tokens for e in each)
    assert r.usage.completion_tokens == sum(e.usage.completion_tokens for e in each)


def test_completion_too_many_choices_in_all_is_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(**{**PROMPT, "prompt": ["a", "b", "c"]}, n=6)
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "n" and "18 choices" in body["message"]


# ---- what n does not touch -----------------------------------------------------------------------------------------

def test_responses_still_answer_with_one_output(client: OpenAI) -> None:
    resp = client.responses.create(model="tarx-local", input="Name a fruit.", max_output_tokens=8, temperature=0)
    assert resp.status in ("completed", "incomplete") and resp.output_text
    assert [item.type for item in resp.output] == ["message"]
