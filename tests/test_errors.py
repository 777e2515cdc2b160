"""Hostile input: every failure is a 4xx in the seed's envelope, never a 500, never a traceback."""

from __future__ import annotations

import time

import pytest

from conftest import Runtime, chat_body
from support.identity import bearer, owner_key


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
        chat_body(n=9),  # past the most choices one request may ask for
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


def test_lone_surrogates_are_400(runtime: Runtime) -> None:
    # Sent as raw JSON: "\ud800" decodes to a lone surrogate, which cannot be encoded for the tokenizer.
    raw = b'{"model": "tarx-local", "messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 2}'
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert_envelope(r, 400, "invalid_request_error")
        r = c.post("/v1/embeddings", content=b'{"model": "tarx-local", "input": "a\\ud800b"}',
                   headers={"content-type": "application/json"})
        assert_envelope(r, 400, "invalid_request_error")


@pytest.mark.parametrize("schema", [
    {"type": "string", "maxLength": 10**9},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 10**7},
    {"type": "string", "enum": [f"v{i}" for i in range(5000)]},
    {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "minLength": 10**6}}}},
])
def test_oversized_json_schemas_are_refused_before_compiling(runtime: Runtime, schema: dict) -> None:
    body = chat_body(max_tokens=2, response_format={"type": "json_schema",
                                                    "json_schema": {"name": "x", "schema": schema}})
    with runtime.client() as c:
        err = assert_envelope(c.post("/v1/chat/completions", json=body), 400, code="json_schema_too_large")
        assert "at most" in err["message"] or "exceeds" in err["message"]
        assert c.get("/v1/health").status_code == 200


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
     {"model": "tarx-local", "input": ""}, {"model": "tarx-local", "input": ["a", ""]},
     {"model": "tarx-local", "input": [[]]}, {"model": "tarx-local", "input": [-1]},
     {"model": "tarx-local", "input": [1, "a"]}, {"model": "tarx-local", "input": [10**9]},
     {"model": "tarx-local", "input": "x", "encoding_format": "hex"},
     {"model": "tarx-local", "input": "x", "dimensions": 0}],
)
def test_invalid_embedding_bodies_are_400(runtime: Runtime, body) -> None:
    with runtime.client() as c:
        assert_envelope(c.post("/v1/embeddings", json=body), 400, "invalid_request_error")


def test_bad_queue_class_header_is_400(runtime: Runtime) -> None:
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=2), headers={"x-tarx-queue-class": "vip"})
        err = assert_envelope(r, 400, "invalid_request_error")
        assert "x-tarx-queue-class" in err["message"]
        # The same request with a known class is served: the 400 was the header's doing.
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=2), headers={"x-tarx-queue-class": "deep"})
        assert r.status_code == 200, r.text


def test_bad_embedding_inputs_do_not_take_the_process_down(make_runtime) -> None:
    """Empty inputs once corrupted llama.cpp's batch and the process died when the model next unloaded."""
    rt = make_runtime({"TARX_KEEP_ALIVE_SECONDS": "1", "TARX_LOCAL_NODE": "false"}, name="embed-crash")
    with rt.client() as c:
        for bad in ("", ["a", ""], [[]]):
            assert_envelope(c.post("/v1/embeddings", json={"model": "tarx-local", "input": bad}), 400)
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": "fine"}).status_code == 200
        time.sleep(2.5)  # past keep-alive: the embedding model unloads
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": "again"}).status_code == 200
    assert rt.proc.poll() is None
    assert rt.stop() == 0


def test_unknown_route_and_method_in_envelope(runtime: Runtime) -> None:
    with runtime.client() as c:
        assert_envelope(c.get("/v1/nothing-here"), 404)
        assert_envelope(c.get("/v1/chat/completions"), 405)


def test_host_header_must_name_this_runtime(runtime: Runtime, make_runtime) -> None:
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 must not reach the key-less surface."""
    with runtime.client() as c:
        for host in ("evil.example", f"evil.example:{runtime.port}", "127.0.0.1.evil.example", "localhostx"):
            r = c.get("/v1/models", headers={"host": host})
            assert_envelope(r, 403, "permission_error", "host_not_allowed")
        r = c.post("/api/v1/projects", json={"name": "x"}, headers={"host": "evil.example"})
        assert r.status_code == 403 and r.json()["error_code"] == "HOST_NOT_ALLOWED"
        for host in (f"localhost:{runtime.port}", f"127.0.0.1:{runtime.port}", "[::1]", "app.localhost",
                     "192.168.1.20:11440"):
            assert c.get("/v1/models", headers={"host": host}).status_code == 200, host
    rt = make_runtime({"TARX_ALLOWED_HOSTS": '["gpubox.lan"]', "TARX_LOCAL_NODE": "false"}, name="hosts")
    with rt.client() as c:
        assert c.get("/v1/models", headers={"host": "gpubox.lan:11440"}).status_code == 200
        assert c.get("/v1/models", headers={"host": "other.lan"}).status_code == 403


def test_nan_infinity_and_nul_are_refused_everywhere(runtime: Runtime) -> None:
    owner = bearer(owner_key(runtime))
    with runtime.client(headers=owner) as c:
        r = c.patch("/v0/billing/limits", content=b'{"hardCpuSeconds": Infinity}',
                    headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["status"] == "ERROR" and "infinite" in r.json()["message"]
        r = c.patch("/v0/billing/limits", content=b'{"softCpuSeconds": NaN}',
                    headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert c.get("/v0/billing/limits").json().get("hardCpuSeconds") is None
        r = c.post("/api/v1/projects", json={"name": "bad\u0000name"})
        assert r.status_code == 422 and "NUL" in r.json()["detail"]
        r = c.post("/v0/jobs", json={"command": "echo hi\u0000; rm -rf /"})
        assert r.status_code == 400 and "NUL" in r.json()["message"]


def test_an_unexpected_failure_is_a_500_in_the_envelope_and_logged_with_its_status(make_runtime) -> None:
    """Another process holding the database's write lock past the busy timeout makes a write fail inside the
    runtime: the caller gets a 500 in the family's envelope, and the access log records the 500 (it once said
    `-`, because the catch-all handler answers outside the access-log middleware)."""
    import sqlite3

    rt = make_runtime({"TARX_LOCAL_NODE": "false"}, name="locked")
    owner = bearer(owner_key(rt))
    holder = sqlite3.connect(rt.data_dir / "tarx.db", timeout=1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with rt.client(headers=owner, timeout=30) as c:
            r = c.post("/api/v1/projects", json={"name": "blocked"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 500 and r.json()["error_code"] == "INTERNAL_ERROR" and "Traceback" not in r.text
    assert '"POST /api/v1/projects" 500' in rt.log()
    with rt.client(headers=owner) as c:  # and the runtime carries on
        assert c.post("/api/v1/projects", json={"name": "after"}).status_code == 201
