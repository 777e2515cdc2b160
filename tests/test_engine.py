"""The engine seen over HTTP: disconnect cancellation, queue order, live capacity, backpressure."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from conftest import LONG_PROMPT, Runtime, chat_body
from support.runners import mapped_files, runner_pids


def stats(rt: Runtime) -> dict:
    return rt.health()["models"]["tarx-local"]["stats"] or {"cancelled": 0, "tokens_generated": 0, "completed": 0}


def wait_for(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def idle(rt: Runtime) -> bool:
    q = rt.health()["queues"]
    return all(c["depth"] == 0 and c["in_flight"] == 0 for c in q.values())


def warm(rt: Runtime) -> None:
    with rt.client() as c:
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200


class Hold:
    """A long streaming generation that holds the model's worker until `release()` closes the connection."""

    def __init__(self, rt: Runtime, max_tokens: int = 1500) -> None:
        self.client = rt.client()
        self._cm = self.client.stream("POST", "/v1/chat/completions",
                                      json=chat_body(LONG_PROMPT, max_tokens=max_tokens, stream=True))
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200
        self.lines = self.response.iter_lines()
        self.chunks = 0

    def read_content_chunks(self, n: int) -> None:
        while self.chunks < n:
            line = next(self.lines)
            if line.startswith("data:") and '"content":"' in line and '"content":""' not in line:
                self.chunks += 1

    def release(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


def post_in_thread(rt: Runtime, body: dict, results: list, headers: dict | None = None) -> threading.Thread:
    def run() -> None:
        with rt.client() as c:
            r = c.post("/v1/chat/completions", json=body, headers=headers or {})
            results.append((time.monotonic(), r))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_stream_disconnect_stops_generation_within_a_few_tokens(runtime: Runtime) -> None:
    warm(runtime)
    before = stats(runtime)
    hold = Hold(runtime, max_tokens=1500)
    hold.read_content_chunks(5)
    hold.release()
    wait_for(lambda: idle(runtime))
    after = stats(runtime)
    assert after["cancelled"] == before["cancelled"] + 1
    generated = after["tokens_generated"] - before["tokens_generated"]
    assert 5 <= generated <= 5 + 20, generated  # far from the 1,500 asked for


def _rows(rt: Runtime, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(rt.data_dir / "tarx.db") as db:
        return db.execute(sql, args).fetchall()


def test_an_abandoned_stream_is_still_accounted_for(runtime: Runtime) -> None:
    """A client that leaves mid-stream still leaves its log row and route evidence: tokens, CPU time, Joules."""
    warm(runtime)
    hold = Hold(runtime, max_tokens=1500)
    evidence_id = hold.response.headers["x-tarx-evidence-id"]
    hold.read_content_chunks(5)
    hold.release()
    wait_for(lambda: bool(_rows(runtime, "SELECT 1 FROM route_evidence WHERE id = ?", evidence_id)))
    (request_id, tokens, joules), = _rows(
        runtime, "SELECT request_id, completion_tokens, estimated_joules FROM route_evidence WHERE id = ?", evidence_id)
    (finish, logged, cpu), = _rows(
        runtime, "SELECT finish_reason, completion_tokens, cpu_seconds FROM inference_requests WHERE id = ?",
        request_id)
    assert finish == "cancelled" and 5 <= tokens == logged < 100
    assert cpu > 0 and joules > 0


def test_non_stream_disconnect_stops_generation(runtime: Runtime) -> None:
    warm(runtime)
    before = stats(runtime)
    with pytest.raises(httpx.ReadTimeout), runtime.client(timeout=0.6) as c:
        c.post("/v1/chat/completions", json=chat_body(LONG_PROMPT, max_tokens=1500))
    wait_for(lambda: idle(runtime), timeout=5)
    after = stats(runtime)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] < 300


@pytest.fixture(scope="module")
def serial(make_runtime_module) -> Runtime:
    """A runtime that decodes one request at a time, so a second one waits in the queue."""
    return make_runtime_module({"TARX_PARALLEL": "1", "TARX_LOCAL_NODE": "false"}, name="serial")


def test_queued_request_starts_when_holder_disconnects_and_depth_is_live(serial: Runtime) -> None:
    runtime = serial
    warm(runtime)
    hold = Hold(runtime)
    hold.read_content_chunks(2)
    results: list = []
    t = post_in_thread(runtime, chat_body(max_tokens=4), results)
    wait_for(lambda: runtime.health()["queues"]["interactive"]["depth"] == 1)
    cap = httpx.get(runtime.url + "/v1/capacity").json()["queue_classes"]["interactive"]
    assert cap["depth"] == 1 and cap["in_flight"] == 1 and cap["backpressure_state"] == "elevated"
    released = time.monotonic()
    hold.release()
    t.join(30)
    (done_at, response), = results
    assert response.status_code == 200
    assert done_at - released < 5  # the 1,500-token holder would take far longer than this


def test_interactive_jumps_ahead_of_deep(serial: Runtime) -> None:
    runtime = serial
    warm(runtime)
    hold = Hold(runtime)
    hold.read_content_chunks(2)
    results: list = []
    deep = post_in_thread(runtime, chat_body("deep one", max_tokens=8), results, {"x-tarx-queue-class": "deep"})
    wait_for(lambda: runtime.health()["queues"]["deep"]["depth"] == 1)
    inter = post_in_thread(runtime, chat_body("interactive one", max_tokens=8), results)
    wait_for(lambda: runtime.health()["queues"]["interactive"]["depth"] == 1)
    hold.release()
    deep.join(30)
    inter.join(30)
    assert all(r.status_code == 200 for _, r in results)
    first, second = (r.request.content for _, r in sorted(results, key=lambda x: x[0]))
    assert b"interactive one" in first and b"deep one" in second


def test_full_queue_answers_429_with_backpressure_headers(make_runtime) -> None:
    rt = make_runtime({"TARX_QUEUE_MAX": "1", "TARX_RETRY_AFTER_SECONDS": "3", "TARX_PARALLEL": "1"})
    warm(rt)
    hold = Hold(rt)
    hold.read_content_chunks(1)
    results: list = []
    t = post_in_thread(rt, chat_body(max_tokens=2), results)
    wait_for(lambda: rt.health()["queues"]["interactive"]["depth"] == 1)
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=2), headers={"x-tarx-queue-class": "deep"})
        cap = c.get("/v1/capacity").json()["queue_classes"]
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"
    assert r.headers["x-tarx-queue-class"] == "deep"
    assert r.headers["x-tarx-backpressure-state"] == "saturated"
    err = r.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "queue_full" and err["retry_after_seconds"] == 3
    assert cap["interactive"]["backpressure_state"] == "saturated"
    hold.release()
    t.join(30)
    assert results[0][1].status_code == 200  # the queued request was not lost


def test_expected_wait_past_the_bound_is_refused_with_a_computed_retry_after(make_runtime) -> None:
    rt = make_runtime({"TARX_QUEUE_MAX_WAIT_SECONDS": "3", "TARX_LOCAL_NODE": "false", "TARX_PARALLEL": "1"},
                      name="wait-bound")
    with rt.client() as c:  # measure the decode speed first
        assert c.post("/v1/chat/completions", json=chat_body(LONG_PROMPT, max_tokens=24)).status_code == 200
    hold = Hold(rt, max_tokens=1500)  # about 1,500 tokens of work ahead: far more than 3 s here
    hold.read_content_chunks(1)
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    hold.release()
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
    assert "queued ahead" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) > 3  # from the estimate, not the fixed retry_after_seconds (2)
    wait_for(lambda: idle(rt))
    with rt.client() as c:  # with nothing ahead it is served
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200


def test_idle_model_unloads_after_keep_alive(make_runtime) -> None:
    rt = make_runtime({"TARX_KEEP_ALIVE_SECONDS": "1"})
    warm(rt)
    assert rt.health()["models"]["tarx-local"]["state"] == "ready"
    wait_for(lambda: rt.health()["models"]["tarx-local"]["state"] == "unloaded", timeout=10)
    warm(rt)  # and loads again on the next request
    assert rt.health()["models"]["tarx-local"]["stats"]["loads"] == 2


def test_only_runners_load_llama_cpp(runtime: Runtime) -> None:
    """The API process compiles response formats and tool calls to grammars, builds the prompt's turns and reads
    embeddings without mapping llama.cpp (29 MiB with the numpy and Jinja2 its package loads: issue 16's memory
    goal); runners map it."""
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
    tool = {"type": "function", "function": {"name": "weather", "parameters": schema}}
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(
            "Where is Paris?", max_tokens=40,
            response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}))
        assert r.status_code == 200, r.text
        assert set(json.loads(r.json()["choices"][0]["message"]["content"])) == {"city"}
        r = c.post("/v1/chat/completions", json=chat_body("Weather in Oslo?", max_tokens=40, tools=[tool],
                                                          tool_choice="required"))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "weather"
        # llama.cpp refuses this grammar (the converter writes `\d` as invalid GBNF): the runner says so, as a 400.
        bad = {"type": "object", "properties": {"n": {"type": "string", "pattern": "^\\d+$"}}}
        r = c.post("/v1/chat/completions", json=chat_body(
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": bad}}))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json_schema", r.text
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": ["a", "b"]}).status_code == 200
    # ... and the runner keeps llama.cpp's own chatter (a line per graph input on every decode) out of the log.
    assert "graph_reserve:" not in runtime.log() and "llama_graph_n_input_tensors" not in runtime.log()
    api = mapped_files(runtime.proc.pid)
    assert "libllama" not in api and "libggml" not in api  # numpy too, but RAG tests on this runtime map it
    assert any("libllama" in mapped_files(pid) for pid in runner_pids(runtime))


def test_a_runner_loads_llama_cpps_c_api_alone(make_runtime) -> None:
    """A runner decodes through llama.cpp's C API (runtime/inference/binding.py): llama-cpp-python's high-level layer
    and the numpy it imports (20 MiB of every runner) stay out, for chat and embeddings, until logprobs need numpy."""
    rt = make_runtime()
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body("Name a colour.", max_tokens=4))
        assert r.status_code == 200, r.text
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": ["a"]}).status_code == 200
        (pid,) = runner_pids(rt)
        assert "libllama" in mapped_files(pid) and "/numpy" not in mapped_files(pid)
        r = c.post("/v1/chat/completions", json=chat_body("Name a colour.", max_tokens=4, logprobs=True,
                                                          top_logprobs=2))
        assert r.status_code == 200, r.text
        assert len(r.json()["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
        assert "/numpy" in mapped_files(pid)  # the same runner, which imported it for this request
