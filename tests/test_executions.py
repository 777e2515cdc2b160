"""Executions (issue 14): human approval and rejection, cancel in the middle of a generation, the event stream
(Last-Event-ID resume, `?token=`, replay of a finished run), a jobNode run by a real `tarx node`, and crash
reconciliation (SIGKILL the runtime mid-execution, restart on the same data, the runs resume)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LONG_PROMPT, Runtime
from support.compute import FAST, Api, node_starter, wait_until
from support.identity import bearer, owner_key
from support.workflows import Server, chain, create, execute, get, stream, wait

ENV = {**FAST, "TARX_AGENT_HTTP_ALLOW_PRIVATE": "true", "TARX_RATE_LIMITS": "false",
       "TARX_WORKFLOW_CANCEL_GRACE_SECONDS": "1"}


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module(ENV)


def headers_for(rt: Runtime) -> dict[str, str]:
    project = httpx.get(rt.url + "/api/v1/projects", headers=bearer(owner_key(rt))).json()["items"][0]["id"]
    return {**bearer(owner_key(rt)), "X-Project-ID": project}


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return headers_for(rt)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


APPROVAL = chain(("review", "humanInLoopNode", {"message": "Publish {{ input }}?"}),
                 ("out", "outputNode", {"template": "published {{ input }} ({{ review.output.comment }})"}))


def in_flight(rt: Runtime) -> int:
    classes = httpx.get(rt.url + "/v1/capacity").json()["queue_classes"]
    return sum(c["in_flight"] for c in classes.values())


# ---- approval ----------------------------------------------------------------------------------------------------

def test_approve_and_reject(rt: Runtime, owner: dict[str, str]) -> None:
    wf = create(rt, owner, *APPROVAL)
    yes, no = execute(rt, owner, wf["id"], "post-1"), execute(rt, owner, wf["id"], "post-2")
    for ex_id in (yes, no):
        ex = wait(rt, owner, ex_id, ("waiting_approval",))
        assert ex["node_results"]["review"]["status"] == "waiting_approval" and "out" not in ex["node_results"]
    asked = stream(rt, owner, yes, stop_after=5)
    approval = [d for _, e, d in asked if e == "approval_required"]
    assert approval and approval[0]["message"] == "Publish post-1?" and approval[0]["node_id"] == "review"
    r = httpx.post(f"{rt.url}/api/v1/executions/{yes}/approve", headers=owner,
                   json={"approved": True, "comment": "looks good"})
    assert r.status_code == 200, r.text
    done = wait(rt, owner, yes)
    assert done["status"] == "completed" and done["output"] == "published post-1 (looks good)"
    review = done["node_results"]["review"]["output"]
    assert review["approved"] is True and review["by"].startswith("usr_")  # who approved outlives the resume
    r = httpx.post(f"{rt.url}/api/v1/executions/{yes}/approve", headers=owner, json={"approved": True})
    assert r.status_code == 409 and r.json()["error_code"] == "CONFLICT", r.text  # decided already

    r = httpx.post(f"{rt.url}/api/v1/executions/{no}/approve", headers=owner,
                   json={"approved": False, "comment": "not yet"})
    assert r.status_code == 200, r.text
    rejected = wait(rt, owner, no)
    assert rejected["status"] == "rejected" and "not yet" in rejected["error"]
    assert rejected["node_results"]["review"]["status"] == "rejected" and "out" not in rejected["node_results"]
    last = stream(rt, owner, no)[-1]
    assert last[1] == "execution_failed" and last[2]["status"] == "rejected"
    for body in ({"approved": "yes"}, {}, {"approved": True, "extra": 1}):
        r = httpx.post(f"{rt.url}/api/v1/executions/{no}/approve", headers=owner, json=body)
        assert r.status_code == 422, r.text


# ---- cancel ------------------------------------------------------------------------------------------------------

def test_cancel_stops_a_generation_at_once(rt: Runtime, owner: dict[str, str]) -> None:
    nodes, edges = chain(("llm", "llmNode", {"prompt": LONG_PROMPT, "max_tokens": 3000}),
                         ("out", "outputNode", {}))
    wf = create(rt, owner, nodes, edges)
    ex_id = execute(rt, owner, wf["id"])
    wait_until(lambda: in_flight(rt) >= 1, 60)  # the generation is running
    time.sleep(2)  # past the prompt's prefill, into decoding
    asked = time.monotonic()
    r = httpx.post(f"{rt.url}/api/v1/executions/{ex_id}/cancel", headers=owner)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert time.monotonic() - asked < 2
    # 3,000 tokens would take minutes on this machine; a cancelled generation ends at its next token
    wait_until(lambda: in_flight(rt) == 0, 15)
    ex = wait(rt, owner, ex_id)
    assert ex["status"] == "cancelled"
    wait_until(lambda: get(rt, owner, ex_id)["node_results"]["llm"]["status"] == "cancelled", 5)
    assert "out" not in get(rt, owner, ex_id)["node_results"]
    again = httpx.post(f"{rt.url}/api/v1/executions/{ex_id}/cancel", headers=owner)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # idempotent
    events = stream(rt, owner, ex_id)
    assert [e for _, e, _ in events].count("execution_failed") == 1 and events[-1][2]["status"] == "cancelled"


def test_cancel_waiting_and_other_nodes_after_grace(rt: Runtime, owner: dict[str, str], server: Server) -> None:
    wf = create(rt, owner, *APPROVAL)
    waiting = execute(rt, owner, wf["id"])
    wait(rt, owner, waiting, ("waiting_approval",))
    assert httpx.post(f"{rt.url}/api/v1/executions/{waiting}/cancel", headers=owner).json()["status"] == "cancelled"
    assert wait(rt, owner, waiting)["status"] == "cancelled"
    r = httpx.post(f"{rt.url}/api/v1/executions/{waiting}/approve", headers=owner, json={"approved": True})
    assert r.status_code == 409
    slow = create(rt, owner, *chain(("h", "httpNode", {"url": f"{server.url}/slow/cancel?s=30"})))
    ex_id = execute(rt, owner, slow["id"])
    wait_until(lambda: get(rt, owner, ex_id)["node_results"].get("h", {}).get("status") == "running", 10)
    asked = time.monotonic()
    assert httpx.post(f"{rt.url}/api/v1/executions/{ex_id}/cancel", headers=owner).json()["status"] == "cancelled"
    wait_until(lambda: get(rt, owner, ex_id)["node_results"]["h"]["status"] == "cancelled", 5)
    assert time.monotonic() - asked < 10  # forced after the 1 s grace, not after the 30 s request


# ---- the stream --------------------------------------------------------------------------------------------------

def test_stream_resume_with_last_event_id_and_query_token(rt: Runtime, owner: dict[str, str]) -> None:
    wf = create(rt, owner, *APPROVAL)
    ex_id = execute(rt, owner, wf["id"], "x")
    first = stream(rt, owner, ex_id, stop_after=4)  # live, then the client goes away while the run waits
    assert [e for _, e, _ in first][:2] == ["execution_start", "node_start"]
    assert [int(i) for i, _, _ in first] == [1, 2, 3, 4]
    assert all(d["type"] == e for _, e, d in first)
    wait(rt, owner, ex_id, ("waiting_approval",))
    httpx.post(f"{rt.url}/api/v1/executions/{ex_id}/approve", headers=owner, json={"approved": True})
    rest = stream(rt, owner, ex_id, last_event_id=first[-1][0])
    everything = stream(rt, owner, ex_id)  # a finished execution's stream replays everything and closes
    assert first + rest == everything
    assert [int(i) for i, _, _ in everything] == list(range(1, len(everything) + 1))
    assert everything[-1][1] == "execution_complete" and everything[-1][2]["output"] == "published x (None)"
    assert stream(rt, owner, ex_id, last_event_id=everything[-1][0]) == []
    # EventSource cannot send headers: `?token=` instead, and the key never reaches the log
    key = owner_key(rt)
    by_token = stream(rt, {"X-Project-ID": owner["X-Project-ID"]}, ex_id, params={"token": key})
    assert by_token == everything
    assert key not in rt.log()
    r = httpx.get(f"{rt.url}/api/v1/executions/{ex_id}/stream", params={"token": "sk-tarx-nope"})
    assert r.status_code == 401
    r = httpx.get(f"{rt.url}/api/v1/executions/{ex_id}", params={"token": key})
    assert r.status_code == 401  # query tokens are for streams only


# ---- a jobNode on a real node --------------------------------------------------------------------------------------

def test_job_node_runs_on_a_real_node(rt: Runtime, owner: dict[str, str], tmp_path: Path) -> None:
    api = Api(rt)
    with node_starter(rt, api, tmp_path) as start:
        start({"pool": "wf"})
        nodes, edges = chain(("job", "jobNode", {"command": "echo job-{{ input }} && echo second", "labels":
                                                 {"pool": "wf"}}),
                             ("out", "outputNode", {"template": "{{ job.output.logs }}"}))
        ex = wait(rt, owner, execute(rt, owner, create(rt, owner, nodes, edges)["id"], "abc"), timeout=60)
        assert ex["status"] == "completed", ex
        job = ex["node_results"]["job"]["output"]
        assert job["state"] == "SUCCEEDED" and job["exit_code"] == 0 and job["logs"] == "job-abc\nsecond"
        assert ex["output"] == "job-abc\nsecond"
        assert api.job(job["job_id"])["state"] == "SUCCEEDED"
        failing = chain(("job", "jobNode", {"command": "exit 3", "labels": {"pool": "wf"}}))
        ex = wait(rt, owner, execute(rt, owner, create(rt, owner, *failing)["id"]), timeout=60)
        assert ex["status"] == "failed" and "exit code 3" in ex["node_results"]["job"]["error"]


# ---- crash reconciliation ----------------------------------------------------------------------------------------

def test_crash_mid_execution_resumes_after_restart(make_runtime: Any, server: Server) -> None:
    env = {**ENV, "TARX_WORKFLOW_RETENTION_DAYS": "0.00003"}  # 2.6 s: finished runs are pruned at the restart
    rt = make_runtime(env, name="crash")
    h = headers_for(rt)
    finished = execute(rt, h, create(rt, h, *chain(("o", "outputNode", {})))["id"])
    assert wait(rt, h, finished)["status"] == "completed"
    finished_at = time.monotonic()
    waiting = execute(rt, h, create(rt, h, *APPROVAL)["id"], "after-crash")
    wait(rt, h, waiting, ("waiting_approval",))
    time.sleep(max(0.0, finished_at + 3 - time.monotonic()))  # the finished run is past its retention by the kill
    nodes, edges = chain(("h", "httpNode", {"url": f"{server.url}/slow/crash?s=2"}),
                         ("out", "outputNode", {"template": "{{ prev.status }} {{ input }}"}))
    running = execute(rt, h, create(rt, h, nodes, edges)["id"], "resumed")
    wait_until(lambda: get(rt, h, running)["node_results"].get("h", {}).get("status") == "running", 10)
    before = stream(rt, h, running, stop_after=4)
    rt.stop(signal.SIGKILL)  # no shutdown, no goodbye

    rt2 = make_runtime(env, name="crash")
    assert wait(rt2, h, running)["status"] == "completed"
    ex = get(rt2, h, running)
    assert ex["output"] == "200 resumed" and ex["node_results"]["h"]["attempts"] == 2
    assert len(server.hits["/slow/crash"]) >= 1
    events = stream(rt2, h, running)
    assert events[:4] == before
    assert [int(i) for i, _, _ in events] == list(range(1, len(events) + 1))
    resumed = [d for _, e, d in events if e == "execution_resumed"]
    assert resumed and resumed[0]["reason"] == "runtime_restarted"
    assert get(rt2, h, waiting)["status"] == "waiting_approval"  # waiting survives the restart
    r = httpx.post(f"{rt2.url}/api/v1/executions/{waiting}/approve", headers=h, json={"approved": True})
    assert r.status_code == 200, r.text
    assert wait(rt2, h, waiting)["output"] == "published after-crash (None)"
    assert httpx.get(f"{rt2.url}/api/v1/executions/{finished}", headers=h).status_code == 404  # pruned
