"""Helpers for compute tests: real `tarx node` processes, job submission and waiting, SSE reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from conftest import REPO, Runtime
from runtime.store.jobs import TERMINAL
from support.identity import bearer, owner_key

FAST = {"TARX_LOCAL_NODE": "false", "TARX_NODE_HEARTBEAT_SECONDS": "0.5", "TARX_LEASE_GRACE_SECONDS": "2",
        "TARX_NODE_POLL_WAIT_SECONDS": "2", "TARX_WEBHOOK_BACKOFF_SECONDS": "0.2"}


class Node:
    def __init__(self, rt: Runtime, key: str, workdir: Path, name: str, labels: dict[str, str],
                 capacity: int = 1, extra: list[str] | None = None, heartbeat_seconds: float = 0.5) -> None:
        self.state_file = workdir / f"{name}.state.json"
        self.log_path = workdir / f"{name}.log"
        self.args = [sys.executable, "-m", "tarx_console", "node", "--url", rt.url, "--key", key, "--name", name,
                     "--capacity", str(capacity), "--workdir", str(workdir / name),
                     "--state-file", str(self.state_file), "--heartbeat-seconds", str(heartbeat_seconds),
                     *[f"--label={k}={v}" for k, v in labels.items()], *(extra or [])]
        self._log = self.log_path.open("wb")
        self._start()
        wait_until(lambda: self.state_file.exists(), 30, lambda: self.log())
        self.id = json.loads(self.state_file.read_text())["nodeId"]

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def restart(self) -> None:
        """Start the node again with the same state file (same node id and key), as after a crash or reboot."""
        assert self.proc.poll() is not None, "stop or kill the node first"
        self._start()

    @property
    def key(self) -> str:
        return json.loads(self.state_file.read_text())["nodeKey"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as if the machine died: no goodbye, no result."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 20, why: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out" + (f":\n{why()}" if why else ""))


class Api:
    """The owner's view of one runtime: v0 calls with the owner key."""

    def __init__(self, rt: Runtime, key: str | None = None) -> None:
        self.rt = rt
        # The default workspace, named explicitly so tests that add workspaces do not change where jobs go.
        self.headers = {**bearer(key or owner_key(rt)), "X-Compute-API-Version": "v0", "X-Project-Slug": "default"}
        self.http = httpx.Client(base_url=rt.url, headers=self.headers, timeout=60)

    def compute_key(self, **quotas: Any) -> str:
        r = self.http.post("/api/compute/api-keys/create", json={"name": "tests", **quotas})
        assert r.status_code == 200, r.text
        return r.json()["payload"]["key"]

    def submit(self, command: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
        r = self.http.post("/v0/jobs", json={"command": command, "labels": labels, "timeoutSeconds": 60, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v0/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, states: set[str] | None = None, timeout: float = 30) -> dict[str, Any]:
        states = states or set(TERMINAL)
        return wait_until(lambda: (j := self.job(job_id))["state"] in states and j, timeout,
                          lambda: json.dumps(self.job(job_id), indent=1))


def submit_many(rt: Runtime, headers: dict[str, str], body: dict[str, Any], n: int, connections: int = 8
                ) -> list[str]:
    """POST the same job `n` times over a few keep-alive connections at once; the new jobs' ids."""

    async def run() -> list[str]:
        ids: list[str] = []
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=rt.url, headers=headers, timeout=60, limits=limits) as http:
            async def worker(count: int) -> None:
                for _ in range(count):
                    r = await http.post("/v0/jobs", json=body)
                    assert r.status_code == 201, r.text
                    ids.append(r.json()["id"])

            await asyncio.gather(*(worker(n // connections + (i < n % connections)) for i in range(connections)))
        return ids

    return asyncio.run(run())


def count_jobs(api: Api, labels: dict[str, str], state: str | None = None) -> int:
    params: dict[str, Any] = {"label": [f"{k}:{v}" for k, v in labels.items()], "pageSize": 1}
    if state:
        params["state"] = state
    r = api.http.get("/v0/jobs", params=params)
    assert r.status_code == 200, r.text
    return r.json()["total"]


@contextlib.contextmanager
def node_starter(rt: Runtime, api: Api, folder: Path) -> Iterator[Callable[..., Node]]:
    """`start(labels, name="n", key=None, **kw)` starts a real `tarx node`; every one is stopped on exit."""
    started: list[Node] = []

    def start(labels: dict[str, str], name: str = "n", key: str | None = None, **kw: Any) -> Node:
        node = Node(rt, key or api.compute_key(), folder, f"{name}{len(started)}", labels, **kw)
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            node.stop()


def job_label(request: Any) -> dict[str, str]:
    """Jobs and nodes of one test share a label, so tests on a shared runtime never take each other's jobs."""
    return {"test": request.node.name[:60]}


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            event[field] = value.lstrip(" ")
