"""GET /metrics: the Prometheus text format, for the runtime's owner (or anyone with metrics_public), counting
requests by family and status, tokens by model as reported in usage, queue waits, jobs and nodes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Runtime, chat_body, free_port
from support.compute import Api, wait_until
from support.identity import bearer, owner_key, sign_in
from support.runners import runner_pids

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module({"TARX_RATE_LIMITS": "false"}, name="metrics")  # the local node runs the jobs


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return bearer(owner_key(rt))


def scrape(rt: Runtime, headers: dict[str, str] | None = None) -> Samples:
    r = httpx.get(rt.url + "/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def settles(read: Callable[[], float], expected: float) -> None:
    """A request is counted as its answer leaves; the next scrape may race it by a hair."""
    wait_until(lambda: read() == expected, 5, lambda: f"{read()} != {expected}")


def test_only_the_owner_reads_metrics(rt: Runtime, owner: dict[str, str]) -> None:
    r = httpx.get(rt.url + "/metrics")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
    project = httpx.post(rt.url + "/api/v1/projects", json={"name": "Metrics"}, headers=owner).json()
    r = httpx.post(rt.url + f"/api/v1/projects/{project['id']}/members",
                   json={"email": "viewer@metrics.example", "role": "admin"}, headers=owner)
    assert r.status_code == 201, r.text
    r = httpx.get(rt.url + "/metrics", headers=bearer(sign_in(rt, "viewer@metrics.example")))
    assert r.status_code == 403 and "owner" in r.json()["error"]["message"], r.text
    tarx_key = httpx.post(rt.url + "/api/keys", json={"name": "narrow"}, headers=owner).json()["key"]
    r = httpx.get(rt.url + "/metrics", headers=bearer(tarx_key))  # the owner's, but a key kind out of its reach
    assert r.status_code == 403 and "cannot call" in r.json()["error"]["message"], r.text
    assert scrape(rt, owner)  # the owner's platform key
    assert scrape(rt, bearer(sign_in(rt, "owner@localhost")))  # and the owner's session


def test_tokens_count_exactly_the_reported_usage(rt: Runtime, owner: dict[str, str]) -> None:
    before = scrape(rt, owner)
    chat = httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=8), timeout=120)
    assert chat.status_code == 200, chat.text
    emb = httpx.post(rt.url + "/v1/embeddings", json={"model": "tarx-local", "input": ["one two", "three"]},
                     timeout=120)
    assert emb.status_code == 200, emb.text
    after = scrape(rt, owner)
    usage, emb_usage = chat.json()["usage"], emb.json()["usage"]
    assert usage["completion_tokens"] > 0 and emb_usage["prompt_tokens"] > 0

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("llamacpp:prompt_tokens_total", model="tarx-local") == usage["prompt_tokens"] + \
        emb_usage["prompt_tokens"]
    assert delta("llamacpp:tokens_predicted_total", model="tarx-local") == usage["completion_tokens"]
    # The generation waited in the interactive queue once; the embeddings call is no generation.
    assert delta("tarx_queue_wait_seconds_count", model="tarx-local", queue_class="interactive") == 1
    # Live figures, read at scrape time: nothing runs or waits now, and the model was loaded once.
    for cls in ("interactive", "deep"):
        assert value(after, "llamacpp:requests_processing", queue_class=cls) == 0
        assert value(after, "llamacpp:requests_deferred", queue_class=cls) == 0
    assert ("tarx_runner_restarts_total", frozenset({("model", "tarx-local")})) in after
    assert value(after, "tarx_http_requests_total", family="openai", status="200") >= 2


def test_requests_count_by_family_and_status(rt: Runtime, owner: dict[str, str]) -> None:
    before = scrape(rt, owner)
    for path in ("/v1/no-such-thing", "/api/v1/no-such-thing", "/api/compute/no-such-thing", "/v0/no-such-thing"):
        assert httpx.get(rt.url + path, headers=owner).status_code == 404
    assert httpx.get(rt.url + "/v1/no-such-thing").status_code == 404

    def delta(fam: str) -> float:
        after = scrape(rt, owner)
        return (value(after, "tarx_http_requests_total", family=fam, status="404")
                - value(before, "tarx_http_requests_total", family=fam, status="404"))

    settles(lambda: delta("openai"), 2)
    for fam in ("platform", "compute", "compute_v0"):
        settles(lambda fam=fam: delta(fam), 1)
    after = scrape(rt, owner)
    assert value(after, "tarx_http_request_duration_seconds_count", family="compute_v0") >= 1
    assert value(after, "tarx_http_requests_total", family="openai", status="401") >= 1  # the unauthenticated scrape


def test_jobs_by_state_and_nodes(rt: Runtime, owner: dict[str, str]) -> None:
    before = scrape(rt, owner)
    api = Api(rt)
    # A receiver that is not there: each delivery attempt fails (and is retried).
    hook = api.http.post("/v0/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/hook",
                                               "events": ["job.created"]})
    assert hook.status_code == 201, hook.text
    done = api.wait(api.submit("echo metrics", {})["id"])
    assert done["state"] == "SUCCEEDED"
    wait_until(lambda: value(scrape(rt, owner), "tarx_webhook_delivery_failures_total") >= 1, 15)
    assert api.http.delete(f"/v0/webhooks/{hook.json()['id']}").status_code in (200, 204)
    after = scrape(rt, owner)
    assert value(after, "tarx_jobs", state="SUCCEEDED") - value(before, "tarx_jobs", state="SUCCEEDED") == 1
    assert value(after, "tarx_jobs", state="RUNNING") == 0 and value(after, "tarx_jobs", state="QUEUED") == 0
    assert value(after, "tarx_nodes", state="online") == 1  # the runtime's own local node
    assert total(after, "tarx_nodes") == 1


def test_metrics_public_opens_the_endpoint(make_runtime) -> None:
    rt = make_runtime({"TARX_METRICS_PUBLIC": "true", "TARX_LOCAL_NODE": "false"}, name="public")
    samples = scrape(rt)
    assert value(samples, "tarx_nodes", state="online") == 0
    assert ("tarx_jobs", frozenset({("state", "QUEUED")})) in samples


def test_runner_crashes_and_load_failures_are_counted(make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / "broken.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    rt = make_runtime({"TARX_METRICS_PUBLIC": "true"})
    with rt.client() as c:
        assert c.post("/v1/chat/completions", json=chat_body(model="broken")).status_code == 503
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200
        wait_until(lambda: len(runner_pids(rt)) == 1, 10)  # the broken model's runner has exited
        [pid] = runner_pids(rt)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: value(scrape(rt), "tarx_runner_crashes_total", model="tarx-local") == 1, 10)
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200
    samples = scrape(rt)
    assert value(samples, "tarx_model_load_failures_total", model="broken") == 1
    assert value(samples, "tarx_model_load_failures_total", model="tarx-local") == 0
    assert value(samples, "tarx_runner_crashes_total", model="tarx-local") == 1
    assert value(samples, "tarx_runner_crashes_total", model="broken") == 0
    # the crashed runner was loaded again on the next call: a reload, as after an idle unload
    assert value(samples, "tarx_runner_restarts_total", model="tarx-local") == 1
