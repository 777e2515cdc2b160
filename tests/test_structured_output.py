"""Structured output that always parses: `response_format: json_schema` on both bundled models, over HTTP.

Every schema is bounded (string lengths, item counts) so a whole answer fits in `max_tokens`; each answer must
parse with Python's strict JSON parser (which refuses raw control characters in strings, what llama-cpp-python's
converter used to let through) and validate against its schema, formats included.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from llama_cpp import Llama

from conftest import Runtime
from runtime.inference.registry import smollm2_path

S = {"type": "string", "maxLength": 10}
OBJ = {"type": "object", "additionalProperties": False}

SCHEMAS: list[dict[str, Any]] = [
    {**OBJ, "properties": {"name": S}, "required": ["name"]},
    {**OBJ, "properties": {"age": {"type": "integer"}, "member": {"type": "boolean"}}, "required": ["age", "member"]},
    {**OBJ, "properties": {"colour": {"enum": ["red", "green", "blue"]}}, "required": ["colour"]},
    {**OBJ, "properties": {"city": {**OBJ, "properties": {"name": S, "country": S}, "required": ["name", "country"]}},
     "required": ["city"]},
    {**OBJ, "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
     "required": ["tags"]},
    {**OBJ, "properties": {"people": {"type": "array", "maxItems": 2, "items": {
        **OBJ, "properties": {"first": S, "age": {"type": "integer"}}, "required": ["first", "age"]}}},
     "required": ["people"]},
    {**OBJ, "properties": {"nickname": {"anyOf": [S, {"type": "null"}]}}, "required": ["nickname"]},
    {**OBJ, "properties": {"price": {"type": "number"}, "currency": {"const": "EUR"}},
     "required": ["price", "currency"]},
    {**OBJ, "properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"]},
    {**OBJ, "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}$"}}, "required": ["code"]},
    {**OBJ, "properties": {"word": {"type": "string", "pattern": "^.{1,6}$"}}, "required": ["word"]},
    {**OBJ, "properties": {"title": {"type": "string", "minLength": 2, "maxLength": 12}}, "required": ["title"]},
    {**OBJ, "properties": {"a": S, "b": {"type": "integer"}}, "required": ["a"]},
    {**OBJ, "properties": {"value": {"enum": ["yes", 1, None, True]}}, "required": ["value"]},
    {"oneOf": [{**OBJ, "properties": {"cat": S}, "required": ["cat"]},
               {**OBJ, "properties": {"dog": {"type": "integer"}}, "required": ["dog"]}]},
    {**OBJ, "properties": {"scores": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4}},
     "required": ["scores"]},
    {**OBJ, "properties": {"grid": {"type": "array", "maxItems": 2, "items": {
        "type": "array", "maxItems": 2, "items": {"type": "integer"}}}}, "required": ["grid"]},
    {"$defs": {"point": {**OBJ, "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                         "required": ["x", "y"]}},
     **OBJ, "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
     "required": ["start", "end"]},
    {"type": "boolean"},
    {**OBJ, "properties": {"poem": {"type": "string", "maxLength": 40}}, "required": ["poem"]},
    {**OBJ, "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"]},
    {**OBJ, "properties": {"status": {"enum": ["open", "closed"]}, "count": {"type": "integer"},
                           "labels": {"type": "array", "items": {"enum": ["bug", "docs"]}, "maxItems": 2}},
     "required": ["status", "count", "labels"]},
    {"type": "array", "prefixItems": [S, {"type": "integer"}], "items": False, "minItems": 2},
    {**OBJ, "properties": {"l1": {**OBJ, "properties": {"l2": {**OBJ, "properties": {"l3": {
        **OBJ, "properties": {"leaf": S}, "required": ["leaf"]}}, "required": ["l3"]}}, "required": ["l2"]}},
     "required": ["l1"]},
    {**OBJ, "properties": {"quote": {"type": "string", "maxLength": 30}, "author": S},
     "required": ["quote", "author"]},
]

# Prompts that invite what JSON strings may not hold raw: quotes, backslashes, newlines and tabs.
PROMPTS = [
    'Write a two-line poem about "rain",\nthen answer in JSON.',
    'Quote Hamlet: "To be, or not to be" \\ and add a line break\nhere. Reply as JSON.',
    "Describe a cat.\n\n- first line\n- second line\twith a tab\nJSON only.",
    'Return a C string like "a\\nb\\t\\"c\\"" as JSON.',
]
VALIDATORS = {id(s): jsonschema.Draft202012Validator(s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
              for s in SCHEMAS}


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module(name="structured")


def schema_body(model: str, schema: dict[str, Any], prompt: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "seed": 11,
            "max_tokens": 120, "response_format": {"type": "json_schema",
                                                   "json_schema": {"name": "out", "schema": schema}}, **kw}


@pytest.mark.parametrize("model", ["tarx-local", "gemma"])
@pytest.mark.parametrize("n", range(len(SCHEMAS)))
def test_every_answer_parses_and_validates(rt: Runtime, model: str, n: int) -> None:
    schema = SCHEMAS[n]
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=schema_body(model, schema, PROMPTS[n % len(PROMPTS)]))
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # the grammar closed the value before max_tokens
    value = json.loads(choice["message"]["content"])  # strict: a raw control character in a string fails here
    errors = [e.message for e in VALIDATORS[id(schema)].iter_errors(value)]
    assert not errors, (choice["message"]["content"], errors)


def test_streamed_answer_is_the_same_valid_json(rt: Runtime) -> None:
    schema = SCHEMAS[19]  # the poem: a long string, newlines invited
    body = schema_body("tarx-local", schema, PROMPTS[0])
    with rt.client() as c:
        whole = c.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
        streamed = c.post("/v1/chat/completions", json={**body, "stream": True})
    text = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                   for line in streamed.text.splitlines()
                   if line.startswith("data:") and line.strip() != "data: [DONE]")
    assert text == whole
    jsonschema.validate(json.loads(text), schema)


def test_strings_stay_json_when_the_model_is_pushed_to_break_them(rt: Runtime) -> None:
    # logit_bias drives the model toward raw newlines and tabs; llama-cpp-python's own grammar let them into the
    # string (`{ "poem": "\n\n\n…" }`, not JSON), the corrected one only admits them escaped.
    vocab = Llama(str(smollm2_path()), vocab_only=True, verbose=False)
    bias = {str(t): 15 for text in (b"\n", b"\t", b"\n\n") for t in vocab.tokenize(text, add_bos=False)}
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=schema_body("tarx-local", SCHEMAS[19], PROMPTS[0], logit_bias=bias))
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), SCHEMAS[19])


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^\\d+$"},  # the converter writes `\d` as an escape llama.cpp cannot parse
    {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
])
def test_a_schema_the_grammar_cannot_hold_is_a_400(rt: Runtime, schema: dict[str, Any]) -> None:
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=schema_body("tarx-local", schema, "Hi"))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_json_schema"
        # The model thread is unharmed: the next request is answered.
        assert c.post("/v1/chat/completions", json=schema_body("tarx-local", SCHEMAS[2], "Hi")).status_code == 200


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"]}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_required_call_cut_by_max_tokens_never_leaks_markup(rt: Runtime, stream: bool) -> None:
    body = {"model": "tarx-local", "temperature": 0, "seed": 3, "max_tokens": 22, "tools": WEATHER,
            "tool_choice": "required", "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Berlin, in Celsius?"}]}
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert "<tool_call>" not in r.text and "tool_call>" not in r.text
    if stream:
        chunks = [json.loads(line[5:]) for line in r.text.splitlines()
                  if line.startswith("data:") and line.strip() != "data: [DONE]"]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        calls = [t for c in chunks if c["choices"] for t in c["choices"][0]["delta"].get("tool_calls") or []]
    else:
        message = r.json()["choices"][0]["message"]
        content, calls = message["content"] or "", message.get("tool_calls") or []
    assert content == ""
    # The partial call, as OpenAI returns a truncated one: its name, and the arguments written so far.
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert calls[0]["function"]["arguments"].startswith("{")
    with pytest.raises(ValueError):
        json.loads(calls[0]["function"]["arguments"])


@pytest.mark.parametrize("max_tokens", [8, 22])  # cut inside the call's name, and inside its arguments
def test_a_cut_call_finishes_with_length(rt: Runtime, max_tokens: int) -> None:
    body = {"model": "tarx-local", "temperature": 0, "seed": 3, "max_tokens": max_tokens, "tools": WEATHER,
            "tool_choice": "required",
            "messages": [{"role": "user", "content": "What is the weather in Berlin, in Celsius?"}]}
    with rt.client() as c:
        choice = c.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert not choice["message"]["content"]


def test_tool_parameters_with_defs_are_enforced(rt: Runtime) -> None:
    # Pydantic writes nested models as `$defs` references: they resolve inside the call grammar too.
    params = {"$defs": {"Place": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                                  "properties": {"city": {"type": "string", "maxLength": 12},
                                                 "unit": {"$ref": "#/$defs/Unit"}}},
                        "Unit": {"enum": ["C", "F"]}},
              "type": "object", "additionalProperties": False, "required": ["place"],
              "properties": {"place": {"$ref": "#/$defs/Place"}}}
    # A second tool defines its own `Unit`: each tool's definitions stay its own.
    other = {"$defs": {"Unit": {"enum": ["utc", "local"]}}, "type": "object", "additionalProperties": False,
             "required": ["zone"], "properties": {"zone": {"$ref": "#/$defs/Unit"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": params}},
             {"type": "function", "function": {"name": "get_time", "parameters": other}}]
    body = {"model": "tarx-local", "temperature": 0, "seed": 3, "max_tokens": 60, "tools": tools,
            "tool_choice": "required", "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    [call] = r.json()["choices"][0]["message"]["tool_calls"]
    schema = params if call["function"]["name"] == "get_weather" else other
    jsonschema.validate(json.loads(call["function"]["arguments"]), schema)
