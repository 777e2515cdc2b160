"""The compute plane end to end: real subprocess jobs through real `tarx node` processes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Runtime
from support.compute import FAST, Api, Node, job_label, node_starter, sse_events, wait_until
from support.identity import bearer, user_key


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module(FAST, name="compute")


@pytest.fixture(scope="module")
def api(rt: Runtime) -> Api:
    return Api(rt)


@pytest.fixture
def nodes(rt: Runtime, api: Api, tmp_path: Path) -> Iterator:
    with node_starter(rt, api, tmp_path) as start:
        yield start


def test_job_runs_end_to_end_and_both_families_agree(api: Api, nodes, request) -> None:
    lab = job_label(request)
    node = nodes(lab)
    job = api.submit("echo hello; echo oops >&2; exit 0", lab)
    assert job["state"] == "QUEUED" and job["id"].startswith("job_")
    done = api.wait(job["id"])
    assert done["state"] == "SUCCEEDED" and done["exitCode"] == 0 and done["agentId"] == node.id
    assert done["runtimeMs"] > 0 and done["attempt"] == 1
    assert [t["state"] for t in done["transitions"]] == ["QUEUED", "ASSIGNED", "RUNNING", "SUCCEEDED"]
    retrieved = api.http.post("/api/compute/jobs/retrieve", json={"jobId": job["id"]}).json()
    assert retrieved["status"] == "SUCCESS" and retrieved["payload"] == done  # identical job data
    lines = api.http.get(f"/v0/jobs/{job['id']}/logs").json()["items"]
    assert [(line["stream"], line["text"]) for line in lines] == [("stdout", "hello"), ("stderr", "oops")]
    listed = api.http.get("/v0/jobs", params={"label": f"test:{lab['test']}"}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    assert api.http.get("/v0/jobs", params={"state": "SUCCEEDED", "label": "test:nope"}).json()["total"] == 0
    page = api.http.post("/api/compute/jobs/list", json={"labels": lab}).json()
    assert page["payload"]["items"] == [{k: v for k, v in done.items() if k not in ("transitions", "artifacts")}]


def test_logs_follow_in_order_and_resume_with_last_event_id(rt: Runtime, api: Api, nodes, request) -> None:
    lab = job_label(request)
    nodes(lab)
    job = api.submit("for i in $(seq 1 150); do echo line-$i; [ $((i % 30)) -eq 0 ] && sleep 0.2; done", lab)
    seen, ids = [], []
    with httpx.stream("GET", rt.url + f"/v0/jobs/{job['id']}/logs", params={"follow": "true"},
                      headers=api.headers, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(r):
            if event.get("event") == "end":
                assert json.loads(event["data"])["state"] == "SUCCEEDED"
                break
            seen.append(json.loads(event["data"])["text"])
            ids.append(int(event["id"]))
    assert seen == [f"line-{i}" for i in range(1, 151)]
    # SSE with ?token= (EventSource cannot send headers), resuming after line 100.
    token = api.headers["Authorization"].split()[1]
    with httpx.stream("GET", rt.url + f"/api/compute/jobs/{job['id']}/logs", params={"token": token},
                      headers={"Last-Event-ID": str(ids[99])}, timeout=60) as r:
        rest = [json.loads(e["data"])["text"] for e in sse_events(r) if e.get("event") == "log"]
    assert rest == [f"line-{i}" for i in range(101, 151)]


def test_failure_exit_code_and_retry(api: Api, nodes, request) -> None:
    lab = job_label(request)
    nodes(lab)
    job = api.submit("echo attempt $TARX_JOB_ATTEMPT; exit 3", lab)
    failed = api.wait(job["id"])
    assert failed["state"] == "FAILED" and failed["exitCode"] == 3 and failed["reason"] == "exit code 3"
    r = api.http.post("/api/compute/jobs/retry", json={"jobId": job["id"]})
    assert r.json()["payload"]["state"] == "QUEUED" and r.json()["payload"]["attempt"] == 2
    again = api.wait(job["id"])
    assert again["state"] == "FAILED" and again["attempt"] == 2
    assert [line["text"] for line in api.http.get(f"/v0/jobs/{job['id']}/logs").json()["items"]] == [
        "attempt 1", "attempt 2"]
    bad = api.http.post("/api/compute/jobs/retry", json={"jobId": api.submit("true", {"test": "never-runs"})["id"]})
    assert bad.status_code == 409 and bad.json()["status"] == "ERROR"


def test_cancel_kills_the_whole_process_group(api: Api, nodes, request, tmp_path: Path) -> None:
    lab = job_label(request)
    nodes(lab)
    pids = tmp_path / "pids"
    job = api.submit(f"sleep 300 & echo $! > {pids}; sleep 300", lab)
    api.wait(job["id"], {"RUNNING"})
    wait_until(lambda: pids.exists() and pids.read_text().strip())
    child = int(pids.read_text())
    assert Path(f"/proc/{child}").exists()
    first = api.http.post(f"/v0/jobs/{job['id']}:cancel")
    second = api.http.post(f"/v0/jobs/{job['id']}:cancel")  # idempotent
    assert first.status_code == second.status_code == 200
    done = api.wait(job["id"], timeout=15)
    assert done["state"] == "CANCELLED"
    # The background child, in the job's process group, is gone too (or a zombie awaiting its reaper).
    wait_until(lambda: not Path(f"/proc/{child}").exists() or "State:\tZ" in Path(f"/proc/{child}/status").read_text(),
               10)
    assert api.http.post(f"/v0/jobs/{job['id']}:cancel").json()["state"] == "CANCELLED"
    queued = api.submit("true", {"test": "nobody-takes-this"})
    assert api.http.post(f"/v0/jobs/{queued['id']}:cancel").json()["state"] == "CANCELLED"


def test_timeout(api: Api, nodes, request) -> None:
    lab = job_label(request)
    nodes(lab)
    job = api.submit("echo start; sleep 60", lab, timeoutSeconds=1)
    done = api.wait(job["id"], timeout=20)
    assert done["state"] == "TIMED_OUT" and done["runtimeMs"] < 10_000


def test_killed_node_loses_its_lease_and_a_second_node_finishes(rt: Runtime, api: Api, nodes, request,
                                                                  tmp_path: Path) -> None:
    lab = job_label(request)
    first = nodes(lab, name="a")
    marker = tmp_path / "pid"
    job = api.submit(f"echo $$ > {marker}-$TARX_JOB_ATTEMPT; sleep 1.5; echo done-$TARX_JOB_ATTEMPT", lab,
                     maxAttempts=3)
    api.wait(job["id"], {"RUNNING"})
    wait_until(lambda: Path(f"{marker}-1").exists() and Path(f"{marker}-1").read_text().strip())
    old_key = first.key
    first.kill()  # its job dies with it (tests/test_nodes_reliability.py checks how quickly)
    requeued = api.wait(job["id"], {"QUEUED"}, timeout=15)
    assert requeued["attempt"] == 2 and requeued["reason"] == "node_lost"
    second = nodes(lab, name="b")
    done = api.wait(job["id"])
    assert done["state"] == "SUCCEEDED" and done["agentId"] == second.id and done["attempt"] == 2
    states = [t["state"] for t in done["transitions"]]
    assert states.count("SUCCEEDED") == 1 and states == ["QUEUED", "ASSIGNED", "RUNNING", "QUEUED", "ASSIGNED",
                                                          "RUNNING", "SUCCEEDED"]
    # The first node coming back with a result for its lost attempt is refused, clearly.
    late = httpx.post(rt.url + "/api/compute/nodes/result", headers={"X-API-Key": old_key},
                      json={"jobId": job["id"], "attempt": 1, "state": "SUCCEEDED", "exitCode": 0})
    assert late.status_code == 409 and "lease" in late.json()["message"]
    assert api.job(job["id"])["state"] == "SUCCEEDED"
    nodes_view = {n["id"]: n for n in api.http.get("/v0/agents").json()["items"]}
    assert nodes_view[first.id]["state"] == "offline"


def test_lost_lease_past_max_attempts_fails_node_lost(api: Api, nodes, request, tmp_path: Path) -> None:
    lab = job_label(request)
    node = nodes(lab)
    marker = tmp_path / "pid"
    job = api.submit(f"echo $$ > {marker}; sleep 30", lab, maxAttempts=1)
    api.wait(job["id"], {"RUNNING"})
    wait_until(lambda: marker.exists() and marker.read_text().strip())
    node.kill()
    done = api.wait(job["id"], timeout=15)
    assert done["state"] == "FAILED" and done["reason"] == "node_lost"


def test_drain_finishes_current_and_takes_nothing_new(api: Api, nodes, request) -> None:
    lab = job_label(request)
    node = nodes(lab)
    running = api.submit("sleep 1.5; echo finished", lab)
    api.wait(running["id"], {"RUNNING"})
    r = api.http.post(f"/v0/agents/{node.id}:drain")
    assert r.status_code == 200 and r.json()["state"] == "draining"
    waiting = api.submit("echo should-wait", lab)
    assert api.wait(running["id"])["state"] == "SUCCEEDED"
    time.sleep(1.5)
    assert api.job(waiting["id"])["state"] == "QUEUED"
    shown = api.http.get(f"/v0/agents/{node.id}").json()
    assert shown["drained"] is True and shown["currentJobs"] == []
    assert {"os", "arch", "cores"} <= set(shown["labels"]) and shown["lastHeartbeatAt"]


def test_quotas_on_compute_keys(rt: Runtime, api: Api) -> None:
    def submit(key: str, **body: object) -> httpx.Response:
        return httpx.post(rt.url + "/api/compute/jobs/submit", headers={"X-API-Key": key},
                          json={"command": "true", "labels": {"test": "quota-never-runs"}, **body})

    hourly = api.compute_key(maxJobsPerHour=2)
    assert [submit(hourly).status_code for _ in range(3)] == [200, 200, 429]
    r = submit(hourly)
    assert r.json()["status"] == "RATE_LIMITED" and "per hour" in r.json()["message"]
    concurrent = api.compute_key(maxConcurrentJobs=1)
    assert [submit(concurrent).status_code for _ in range(2)] == [200, 429]
    typed = api.compute_key(allowedJobTypes=["GPU_TRAINING"])
    r = submit(typed)
    assert r.status_code == 403 and r.json()["status"] == "FORBIDDEN"


def test_idempotency_key(api: Api) -> None:
    lab = {"test": "idem-never-runs"}
    body = {"command": "true", "labels": lab}
    a = api.http.post("/v0/jobs", json=body, headers={"Idempotency-Key": "abc-123"})
    b = api.http.post("/v0/jobs", json=body, headers={"Idempotency-Key": "abc-123"})
    c = api.http.post("/v0/jobs", json=body)
    d = api.http.post("/v0/jobs", json=body)
    assert a.status_code == 201 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    assert len({a.json()["id"], c.json()["id"], d.json()["id"]}) == 3  # not idempotent by default


def test_artifacts_round_trip_tamper_and_expiry(make_runtime, tmp_path: Path) -> None:
    rt = make_runtime({**FAST, "TARX_ARTIFACT_URL_SECONDS": "2", "TARX_ARTIFACT_MAX_BYTES": "100000"}, name="art")
    api = Api(rt)
    node = Node(rt, api.compute_key(), tmp_path, "art", {"test": "art"})
    try:
        job = api.submit("head -c 50000 /dev/urandom > $TARX_ARTIFACTS_DIR/blob.bin; echo ok", {"test": "art"})
        done = api.wait(job["id"])
        (art,) = done["artifacts"]
        assert art["name"] == "blob.bin" and art["size"] == 50000 and len(art["sha256"]) == 64
        url = api.http.post("/api/compute/jobs/artifacts/presign-download",
                            json={"jobId": job["id"], "artifactId": art["id"]}).json()["payload"]["url"]
        got = httpx.get(rt.url + url)  # no credentials: the URL is the authorization
        assert got.status_code == 200 and len(got.content) == 50000
        assert hashlib.sha256(got.content).hexdigest() == art["sha256"] == got.headers["x-artifact-sha256"]
        for tampered in (url.replace("sig=", "sig=0"), url.replace(job["id"], job["id"][:-1] + "x"),
                         url.replace("expires=", "expires=9")):
            r = httpx.get(rt.url + tampered)
            assert r.status_code == 403 and r.json()["status"] == "FORBIDDEN", tampered
        time.sleep(2.5)
        r = httpx.get(rt.url + url)
        assert r.status_code == 403 and "expired" in r.json()["message"]
        # Uploads: over the size limit is 413 and stores nothing.
        up = api.http.post("/api/compute/jobs/artifacts/presign-upload",
                           json={"jobId": job["id"], "name": "big.bin"}).json()["payload"]["url"]
        r = httpx.put(rt.url + up, content=b"x" * 100001)
        assert r.status_code == 413
        up2 = api.http.post("/api/compute/jobs/artifacts/presign-upload",
                            json={"jobId": job["id"], "name": "small.txt"}).json()["payload"]["url"]
        assert httpx.put(rt.url + up2, content=b"hi").json()["payload"]["size"] == 2
        assert httpx.put(rt.url + up2, content=b"again").status_code == 409
    finally:
        node.stop()


def test_usage_caps_and_billing(make_runtime, tmp_path: Path) -> None:
    rt = make_runtime(FAST, name="billing")
    api = Api(rt)
    node = Node(rt, api.compute_key(), tmp_path, "bill", {"test": "bill"})
    try:
        job = api.submit("python3 -c 'sum(i*i for i in range(3_000_000))'", {"test": "bill"})
        done = api.wait(job["id"])
        assert done["state"] == "SUCCEEDED" and done["usage"]["cpuSeconds"] > 0.05
        usage = api.http.get("/v0/billing/usage").json()
        assert usage["jobs"] == 1 and abs(usage["cpuSeconds"] - done["usage"]["cpuSeconds"]) < 1e-9
        assert usage["gbSeconds"] > 0 and usage["estimateUsd"] == 0.0
        r = api.http.patch("/v0/billing/limits", json={"softCpuSeconds": 0.01})
        assert r.json()["softCpuSeconds"] == 0.01
        warned = api.http.post("/v0/jobs", json={"command": "true", "labels": {"test": "bill"}})
        assert warned.status_code == 201 and "soft cap" in warned.headers["x-compute-usage-warning"]
        api.http.patch("/v0/billing/limits", json={"hardCpuSeconds": 0.01})
        refused = api.http.post("/v0/jobs", json={"command": "true", "labels": {"test": "bill"}})
        assert refused.status_code == 403 and "hard cap" in refused.json()["message"]
        assert api.http.get("/v0/billing/invoices").json()["items"] == []
        plans = api.http.post("/api/compute/billing/plans/list", json={}).json()["payload"]
        assert plans[0]["name"] == "Hobby (local only)"
        sub = api.http.post("/api/compute/billing/subscription", json={}).json()["payload"]
        assert sub["plan"]["id"] == "hobby" and sub["status"] == "active"
        checkout = api.http.post("/api/compute/billing/checkout/create", json={})
        assert checkout.status_code == 400 and "not available on a local runtime" in checkout.json()["message"]
    finally:
        node.stop()


def test_node_rotates_its_key(api: Api, nodes, request, rt: Runtime) -> None:
    lab = job_label(request)
    node = nodes(lab, extra=["--rotate-key-every", "1"])
    first = node.key
    wait_until(lambda: node.key != first, 15, node.log)
    r = httpx.post(rt.url + "/api/compute/nodes/heartbeat", headers={"X-API-Key": first}, json={})
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert api.wait(api.submit("echo still-working", lab)["id"])["state"] == "SUCCEEDED"


def test_local_node_runs_jobs_with_nothing_else_started(runtime: Runtime) -> None:
    api = Api(runtime)
    done = api.wait(api.submit("echo local", {})["id"])
    assert done["state"] == "SUCCEEDED"
    listed = api.http.get("/v0/agents").json()["items"]
    assert [n["name"] for n in listed if n["id"] == done["agentId"]] == ["local"]


def test_node_plane_refuses_other_credentials_and_other_jobs(rt: Runtime, api: Api, nodes, request) -> None:
    lab = job_label(request)
    node = nodes(lab)
    r = api.http.post("/api/compute/nodes/heartbeat", json={})
    assert r.status_code == 401 and r.json()["status"] == "UNAUTHORIZED"
    other = api.submit("true", {"test": "someone-else"})
    r = httpx.post(rt.url + "/api/compute/nodes/result", headers={"X-API-Key": node.key},
                   json={"jobId": other["id"], "attempt": 1, "state": "SUCCEEDED", "exitCode": 0})
    assert r.status_code == 409
    r = httpx.post(rt.url + "/api/compute/nodes/logs", headers={"X-API-Key": node.key},
                   json={"jobId": other["id"], "attempt": 1, "lines": [{"seq": 1, "text": "forged"}]})
    assert r.status_code == 409 and api.http.get(f"/v0/jobs/{other['id']}/logs").json()["items"] == []
    # Heartbeat and poll are idempotent: repeating them changes nothing.
    for _ in range(2):
        assert httpx.post(rt.url + "/api/compute/nodes/heartbeat", headers={"X-API-Key": node.key},
                          json={}).status_code == 200


def test_agents_delete_needs_admin_and_requeues(rt: Runtime, api: Api, nodes, request) -> None:
    lab = job_label(request)
    node = nodes(lab)
    project = api.http.get("/v0/workspaces").json()["items"][0]["id"]
    api.http.post(f"/v0/workspaces/{project}/members", json={"email": "m4@example.com", "role": "member"})
    member = {**bearer(user_key(rt, "m4@example.com")), "X-Project-ID": project}
    r = httpx.delete(rt.url + f"/v0/agents/{node.id}", headers=member)
    assert r.status_code == 403
    assert api.http.delete(f"/v0/agents/{node.id}").status_code == 204
    assert node.id not in [a["id"] for a in api.http.get("/v0/agents").json()["items"]]
    r = httpx.post(rt.url + "/api/compute/nodes/heartbeat", headers={"X-API-Key": node.key}, json={})
    assert r.status_code == 401


@pytest.mark.parametrize("body", [
    {"command": ""}, {"command": 5}, {"command": "x", "timeoutSeconds": "soon"}, {"command": "x", "type": "GPU"},
    {"command": "x", "labels": ["a"]}, {"command": "x", "env": {"1BAD": "v"}}, {"command": "x", "priority": 1000},
    {"command": "x", "surprise": True},
])
def test_bad_job_bodies_are_400_in_envelope(api: Api, body: dict) -> None:
    for path in ("/v0/jobs", "/api/compute/jobs/submit"):
        r = api.http.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["status"] == "ERROR" and r.json()["payload"] is None


def test_unknown_and_foreign_jobs_are_404(rt: Runtime, api: Api) -> None:
    assert api.http.get("/v0/jobs/job_missing").status_code == 404
    job = api.submit("true", {"test": "foreign-never-runs"})
    other_ws = api.http.post("/v0/workspaces", json={"name": "Other WS"}).json()
    r = api.http.get(f"/v0/jobs/{job['id']}", headers={"X-Project-ID": other_ws["id"]})
    assert r.status_code == 404 and r.json()["status"] == "ERROR"
    assert api.http.get("/v0/jobs", headers={"X-Compute-API-Version": "v9"}).status_code == 400
