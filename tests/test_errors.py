"""Hostile input: every failure is a 4xx in the seed's envelope, never a 500, never a traceback."""

from __future__ import annotations

import pytest

from conftest import Runtime, chat_body


def assert_envelope(r, status: int, type_: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    err = body["error"]
    assert set(err) >= {"message", "type", "code", "docs_url"}
    assert err["message"] and "Traceback" not in r.text
    if type_:
        assert err["type"] == type_
    if code:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(
    "body",
    [
        {"model": "tarx-local"},  # no messages
        {"model": "tarx-local", "messages": []},  # empty messages
        {"model": "tarx-local", "messages": "hello"},  # wrong type
        {"model": "tarx-local", "messages": [{"role": "user"}]},  # message without content
        {"model": "tarx-local", "messages": [{"role": "wizard", "content": "x"}]},  # unknown role
        {"model": 42, "messages": [{"role": "user", "content": "x"}]},
        chat_body(max_tokens=-5),
        chat_body(max_tokens=0),
        chat_body(max_tokens="ten"),
        chat_body(temperature="hot"),
        chat_body(temperature=5),
        chat_body(top_p=0),
        chat_body(stream="yes"),
        chat_body(n=3),
        chat_body(stop=["a", "b", "c", "d", "e"]),
        chat_body(tool_choice="required"),  # required without tools
        chat_body(response_format={"type": "json_schema"}),  # schema missing
        chat_body(response_format={"type": "yaml"}),
        chat_body(tools=[{"type": "function", "function": {"name": "bad name!"}}]),
        chat_body(tools=[{"type": "function", "function": {"name": "f"}}],
                  tool_choice={"type": "function", "function": {"name": "g"}}),
        [1, 2, 3],
    ],
)
def test_invalid_chat_bodies_are_400(runtime: Runtime, body) -> None:
    with runtime.client() as c:
        assert_envelope(c.post("/v1/chat/completions", json=body), 400, "invalid_request_error", "invalid_request")


def test_malformed_json_is_400(runtime: Runtime) -> None:
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", content=b'{"model": "tarx-local", "messages": [',
                   headers={"content-type": "application/json"})
    err = assert_envelope(r, 400, "invalid_request_error")
    assert "JSON" in err["message"]


def test_unknown_model_is_404(runtime: Runtime) -> None:
    with runtime.client() as c:
        assert_envelope(c.post("/v1/chat/completions", json=chat_body() | {"model": "gpt-9"}), 404,
                        code="model_not_found")
        assert_envelope(c.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404, code="model_not_found")
        assert_envelope(c.get("/v1/models/nope"), 404, code="model_not_found")


def test_oversized_body_is_413(runtime: Runtime) -> None:
    big = "x" * (4 * 1024 * 1024 + 10)
    with runtime.client() as c:
        assert_envelope(c.post("/v1/chat/completions", json=chat_body(big)), 413, code="payload_too_large")


def test_oversized_chunked_body_is_413(runtime: Runtime) -> None:
    def chunks():
        yield b'{"model": "tarx-local", "messages": [{"role": "user", "content": "'
        for _ in range(5):
            yield b"y" * (1024 * 1024)
        yield b'"}]}'

    with runtime.client() as c:
        r = c.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_envelope(r, 413, code="payload_too_large")


def test_prompt_longer_than_context_is_400(make_runtime) -> None:
    rt = make_runtime({"TARX_N_CTX": "256"})
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body("word " * 400))
        assert_envelope(r, 400, code="context_length_exceeded")
        r = c.post("/v1/chat/completions", json=chat_body("word " * 400, stream=True))
        assert_envelope(r, 400, code="context_length_exceeded")
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"model": "tarx-local"}, {"model": "tarx-local", "input": []}, {"model": "tarx-local", "input": 5},
     {"model": "tarx-local", "input": [1, 2]}, {"model": "tarx-local", "input": "x", "encoding_format": "hex"},
     {"model": "tarx-local", "input": "x", "dimensions": 0}],
)
def test_invalid_embedding_bodies_are_400(runtime: Runtime, body) -> None:
    with runtime.client() as c:
        assert_envelope(c.post("/v1/embeddings", json=body), 400, "invalid_request_error")


def test_bad_queue_class_header_is_400(runtime: Runtime) -> None:
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(), headers={"x-tarx-queue-class": "vip"})
    assert_envelope(r, 400)


def test_unknown_route_and_method_in_envelope(runtime: Runtime) -> None:
    with runtime.client() as c:
        assert_envelope(c.get("/v1/nothing-here"), 404)
        assert_envelope(c.get("/v1/chat/completions"), 405)
