"""Helpers for workflow tests: creating and running workflows over HTTP, reading execution streams, and a small
local HTTP server (slow and flaky endpoints) for httpNode tests.

`polling_rt` and `polling_owner` are module fixtures, named `rt` and `owner`, for tests that poll: a runtime with the
request rate limits off, and its owner in the default project. A test module imports them to use them."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import Runtime
from support.identity import owner_in_default_project

FINISHED = ("completed", "failed", "cancelled", "rejected")


def chain(*specs: tuple[str, str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A trigger `t` followed by the given (id, type, config) nodes in a line."""
    nodes = [{"id": "t", "type": "trigger"}] + [{"id": i, "type": t, "config": c} for i, t, c in specs]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return nodes, edges


def create(rt: Runtime, headers: dict[str, str], nodes: list[dict[str, Any]], edges: list[dict[str, Any]],
           name: str = "wf") -> dict[str, Any]:
    r = httpx.post(rt.url + "/api/v1/workflows", headers=headers, json={"name": name, "nodes": nodes, "edges": edges})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module", name="rt")
def polling_rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module({"TARX_RATE_LIMITS": "false"})  # the polls would pass /api/v1's limit


@pytest.fixture(scope="module", name="owner")
def polling_owner(rt: Runtime) -> dict[str, str]:
    return owner_in_default_project(rt)


def create_graph(rt: Runtime, headers: dict[str, str], graph: dict[str, Any], name: str) -> str:
    """The id of a new workflow with `graph` ({"nodes": ..., "edges": ...})."""
    return create(rt, headers, graph["nodes"], graph["edges"], name)["id"]


def executions(rt: Runtime, headers: dict[str, str], workflow_id: str) -> list[dict[str, Any]]:
    """The workflow's executions, newest first."""
    r = httpx.get(rt.url + "/api/v1/executions", headers=headers, params={"workflow_id": workflow_id, "limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def execute(rt: Runtime, headers: dict[str, str], workflow_id: str, input: Any = "hello") -> str:
    r = httpx.post(f"{rt.url}/api/v1/workflows/{workflow_id}/execute", headers=headers, json={"input": input})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    return r.json()["execution_id"]


def get(rt: Runtime, headers: dict[str, str], execution_id: str) -> dict[str, Any]:
    r = httpx.get(f"{rt.url}/api/v1/executions/{execution_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def wait(rt: Runtime, headers: dict[str, str], execution_id: str, states: tuple[str, ...] = FINISHED,
         timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ex = get(rt, headers, execution_id)
        if ex["status"] in states:
            return ex
        assert time.monotonic() < deadline, f"execution stuck: {json.dumps(ex, indent=1)}"
        time.sleep(0.1)


def run(rt: Runtime, headers: dict[str, str], nodes: list[dict[str, Any]], edges: list[dict[str, Any]],
        input: Any = "hello") -> dict[str, Any]:
    wf = create(rt, headers, nodes, edges)
    return wait(rt, headers, execute(rt, headers, wf["id"], input))


def stream(rt: Runtime, headers: dict[str, str], execution_id: str, last_event_id: str | None = None,
           params: dict[str, str] | None = None, stop_after: int | None = None,
           timeout: float = 120) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of the execution's stream, read to its end (or `stop_after` events)."""
    hdrs = {**headers, **({"Last-Event-ID": last_event_id} if last_event_id is not None else {})}
    out: list[tuple[str, str, dict[str, Any]]] = []
    current: dict[str, str] = {}
    with httpx.stream("GET", f"{rt.url}/api/v1/executions/{execution_id}/stream", headers=hdrs, params=params,
                      timeout=timeout) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-accel-buffering"] == "no"
        for line in resp.iter_lines():
            if not line:
                if "data" in current:
                    out.append((current.get("id", ""), current.get("event", "message"), json.loads(current["data"])))
                    if stop_after is not None and len(out) >= stop_after:
                        return out
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                current[field] = value.lstrip(" ")
    return out


class Server:
    """A local HTTP server: `/slow?s=0.5` answers after s seconds; `/flaky/<name>?fail=N` fails (500) its first N
    calls per name, then answers; `/echo` answers with the request (and its X-Token header); `/moved/<x>`
    redirects (307) to `/echo/<x>`. `hits[path]` records (start, end) times."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.hits: dict[str, list[tuple[float, float]]] = defaultdict(list)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                start = time.time()
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = 200, {"path": parts.path, "method": self.command, "body": body,
                                        "x_token": self.headers.get("x-token")}
                if parts.path.startswith("/slow"):
                    time.sleep(float(q.get("s", "0.5")))
                elif parts.path.startswith("/flaky/"):
                    owner.calls[parts.path] += 1
                    if owner.calls[parts.path] <= int(q.get("fail", "1")):
                        status, payload = 500, {"error": "flaky"}
                elif parts.path.startswith("/moved/"):
                    status, payload = 307, {}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    if status == 307:  # keeps the method and body (RFC 9110)
                        self.send_header("location", parts.path.replace("/moved/", "/echo/", 1))
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass
                owner.hits[parts.path].append((start, time.time()))

            do_GET = do_POST = do_PUT = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
