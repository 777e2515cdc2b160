"""`/v1/responses` (OpenAI's Responses API) through the official SDK: `client.responses.create` and
`client.responses.stream`, function tools, JSON-schema text, stored responses and `previous_response_id`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from conftest import Runtime
from support.identity import owner_key

TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Get the current weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                                    "required": ["city"]}}]
ANSWER = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
          "additionalProperties": False}
JSON_TEXT: Any = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER, "strict": True}}
SEED = {"seed": 5}  # not in the SDK's signature; the runtime honours it, so answers are reproducible


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module(name="responses")


@pytest.fixture(scope="module")
def client(rt: Runtime) -> OpenAI:
    return OpenAI(base_url=rt.url + "/v1", api_key="unused-locally", max_retries=0)


def test_create_with_instructions_and_retrieve(client: OpenAI) -> None:
    r = client.responses.create(model="tarx-local", input="What is the capital of France?",
                                instructions="Answer in one short sentence.", max_output_tokens=12, temperature=0,
                                extra_body=SEED)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == "tarx-local"
    assert r.status in ("completed", "incomplete") and r.instructions == "Answer in one short sentence."
    [message] = r.output
    assert message.type == "message" and message.role == "assistant" and r.output_text.strip()
    assert 0 < r.usage.output_tokens <= 12 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.model_extra["tarx_route"]["execution_plane"] == "local"
    again = client.responses.retrieve(r.id)
    assert again.id == r.id and again.output_text == r.output_text and again.usage == r.usage


def test_max_output_tokens_makes_it_incomplete(client: OpenAI) -> None:
    r = client.responses.create(model="tarx-local", input="Count from one to fifty in words.", max_output_tokens=3,
                                temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3 and r.output[0].status == "incomplete"


def test_message_items_are_the_same_conversation_as_a_string(client: OpenAI) -> None:
    args: dict[str, Any] = {"model": "tarx-local", "max_output_tokens": 8, "temperature": 0, "extra_body": SEED}
    plain = client.responses.create(input="Name a colour.", instructions="Be brief.", **args)
    items = client.responses.create(input=[
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]}], **args)
    assert items.output_text == plain.output_text and items.usage.input_tokens == plain.usage.input_tokens


def test_json_schema_text_format(client: OpenAI) -> None:
    r = client.responses.create(model="tarx-local", input="Is water wet?", text=JSON_TEXT, max_output_tokens=20,
                                temperature=0)
    assert r.status == "completed" and r.text.format.type == "json_schema"
    jsonschema.validate(json.loads(r.output_text), ANSWER)


def test_function_call_then_its_output_through_previous_response_id(client: OpenAI) -> None:
    first = client.responses.create(model="tarx-local", input="What is the weather in Paris?", tools=TOOLS,
                                    tool_choice="required", max_output_tokens=40, temperature=0)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = client.responses.create(
        model="tarx-local", previous_response_id=first.id, max_output_tokens=10, temperature=0, tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny", "c": 21}'}])
    assert second.previous_response_id == first.id and second.output[0].type == "message"
    # The model read the stored turn (question, call, result): far more input than the result alone.
    alone = client.responses.create(model="tarx-local", input='{"sky": "sunny", "c": 21}', max_output_tokens=1,
                                    tools=TOOLS, temperature=0)
    assert second.usage.input_tokens > alone.usage.input_tokens + 10


def test_output_items_sent_back_as_input(client: OpenAI) -> None:
    # Stateless clients (agent frameworks) keep the history themselves: the previous output items, as the SDK
    # returns them, go back in `input` with the function's result.
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.responses.create(model="tarx-local", input=[question], tools=TOOLS, tool_choice="required",
                                    max_output_tokens=40, temperature=0, store=False)
    [call] = first.output
    history = [question, *(item.model_dump(exclude_none=True) for item in first.output),
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = client.responses.create(model="tarx-local", input=history, tools=TOOLS, max_output_tokens=8,
                                     temperature=0)
    assert second.output and second.usage.input_tokens > first.usage.input_tokens


def test_previous_response_id_continues_the_conversation(client: OpenAI) -> None:
    first = client.responses.create(model="tarx-local", input="My name is Ada.", max_output_tokens=6,
                                    temperature=0, instructions="Be brief.")
    second = client.responses.create(model="tarx-local", input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=6, temperature=0)
    fresh = client.responses.create(model="tarx-local", input="What is my name?", max_output_tokens=6, temperature=0)
    # Instructions are not carried over (as in OpenAI's API); the earlier input and answer are.
    assert second.usage.input_tokens >= fresh.usage.input_tokens + first.usage.output_tokens + 4
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tarx-local", input="Hi", previous_response_id="resp_nope", max_output_tokens=2)
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "previous_response_not_found"


def test_stored_responses_belong_to_their_caller(rt: Runtime, client: OpenAI) -> None:
    mine = OpenAI(base_url=rt.url + "/v1", api_key=owner_key(rt), max_retries=0)
    owned = mine.responses.create(model="tarx-local", input="Hi", max_output_tokens=2, temperature=0)
    assert mine.responses.retrieve(owned.id).id == owned.id
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(owned.id)  # anonymous callers do not see a user's responses
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="tarx-local", input="Hi", previous_response_id=owned.id, max_output_tokens=2)
    unstored = client.responses.create(model="tarx-local", input="Hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    mine.responses.delete(owned.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(owned.id)


TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.done",
               "response.content_part.done", "response.output_item.done", "response.completed"]


def test_stream_events_and_final_response(client: OpenAI) -> None:
    args: dict[str, Any] = {"model": "tarx-local", "input": "Is the sky blue?", "text": JSON_TEXT,
                            "max_output_tokens": 20, "temperature": 0}
    with client.responses.stream(**args) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text and final.status == "completed"
    jsonschema.validate(json.loads(final.output_text), ANSWER)
    assert client.responses.retrieve(final.id).output_text == final.output_text
    assert client.responses.create(**args).output_text == final.output_text


def test_stream_of_a_function_call(client: OpenAI) -> None:
    with client.responses.stream(model="tarx-local", input="What is the weather in Rome?", tools=TOOLS,
                                 tool_choice="required", max_output_tokens=40, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[-5:] == ["response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments)["city"]


def test_streamed_cut_ends_with_response_incomplete(rt: Runtime) -> None:
    with httpx.stream("POST", rt.url + "/v1/responses", timeout=120, json={
            "model": "tarx-local", "input": "Count from one to fifty in words.", "max_output_tokens": 3,
            "temperature": 0, "seed": 7, "stream": True}) as r:
        events = [line.removeprefix("event: ") for line in r.iter_lines() if line.startswith("event: ")]
    assert events[0] == "response.created" and events[-1] == "response.incomplete"


@pytest.mark.parametrize("bad", [
    {"input": []},
    {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
    {"tools": [{"type": "web_search"}]},
    {"text": {"format": {"type": "json_schema", "name": "x"}}},
    {"max_output_tokens": 0},
    {"tool_choice": {"type": "function", "name": "nope"}, "tools": TOOLS},
])
def test_bad_requests_are_400(rt: Runtime, bad: dict[str, Any]) -> None:
    r = httpx.post(rt.url + "/v1/responses", json={"model": "tarx-local", "input": "Hi", **bad}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_response_is_404(rt: Runtime) -> None:
    r = httpx.get(rt.url + "/v1/responses/resp_missing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
