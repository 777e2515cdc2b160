"""Execution planes with two real runtimes, one the hosted upstream of the other."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from conftest import LONG_PROMPT, Runtime, chat_body, free_port
from support.identity import bearer, owner_key, user_key

HOSTED = {"x-tarx-execution-policy": "supercomputer-fast", "x-tarx-privacy-tier": "mesh_safe"}
QUIET = {"TARX_LOCAL_NODE": "false"}


@pytest.fixture(scope="module")
def upstream(make_runtime_module) -> Runtime:
    return make_runtime_module(QUIET, name="upstream")


@pytest.fixture(scope="module")
def front(make_runtime_module, upstream: Runtime) -> Runtime:
    return make_runtime_module({**QUIET, "TARX_SUPERCOMPUTER_URL": upstream.url,
                                "TARX_SUPERCOMPUTER_KEY": owner_key(upstream)}, name="front")


@pytest.fixture(scope="module")
def keys(front: Runtime) -> dict[str, dict[str, str]]:
    owner = bearer(owner_key(front))
    httpx.post(front.url + "/api/account/entitlements", json={"entitlement": "supercomputer"}, headers=owner)
    hosted = httpx.post(front.url + "/api/keys", json={"name": "h", "scope": "supercomputer"}, headers=owner)
    dev = httpx.post(front.url + "/api/keys", json={"name": "d"}, headers=owner)
    return {"owner": owner, "hosted": bearer(hosted.json()["key"]), "dev": bearer(dev.json()["key"])}


def upstream_calls(rt: Runtime) -> int:
    """Completions the upstream itself recorded for its owner's key (the key the front forwards with)."""
    usage = httpx.get(rt.url + "/v1/usage", headers=bearer(owner_key(rt))).json()
    return usage["requests_this_month"]


def chat(rt: Runtime, headers: dict[str, str], **body: object) -> httpx.Response:
    return httpx.post(rt.url + "/v1/chat/completions", json=chat_body(**body), headers=headers, timeout=120)


def test_hosted_routing_with_the_right_key(front: Runtime, upstream: Runtime, keys: dict) -> None:
    before = upstream_calls(upstream)
    r = chat(front, {**keys["hosted"], **HOSTED}, max_tokens=8)
    assert r.status_code == 200, r.text
    route = r.json()["tarx_route"]
    assert route["execution_plane"] == "supercomputer" and route["provider"] == "tarx-supercomputer"
    assert route["fallback"] is False and route["fallback_reason"] is None
    assert route["policy"] == "supercomputer-fast" and route["privacy_tier"] == "mesh_safe"
    assert r.headers["x-tarx-evidence-id"] == route["evidence_id"]
    assert upstream_calls(upstream) == before + 1
    # The upstream's own evidence supplied the joules.
    assert route["joules_method"].startswith("upstream:") and route["estimated_joules"] > 0
    direct = chat(upstream, bearer(owner_key(upstream)), max_tokens=8)
    assert r.json()["choices"][0]["message"]["content"] == direct.json()["choices"][0]["message"]["content"]


def test_hosted_stream_ends_with_route_evidence(front: Runtime, keys: dict) -> None:
    with httpx.stream("POST", front.url + "/v1/chat/completions", json=chat_body(max_tokens=6, stream=True),
                      headers={**keys["hosted"], **HOSTED}, timeout=120) as r:
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(len(c["choices"]) == 1 for c in chunks)  # no include_usage: every chunk has its choice
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] and last["tarx_route"]["execution_plane"] == "supercomputer"
    assert r.headers["x-tarx-evidence-id"] == last["tarx_route"]["evidence_id"]
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.strip()


def test_hosted_without_entitlement_is_402(front: Runtime, upstream: Runtime, keys: dict) -> None:
    before = upstream_calls(upstream)
    for headers in (keys["dev"], keys["owner"], {}):
        r = chat(front, {**headers, **HOSTED})
        assert r.status_code == 402, r.text
        assert r.json()["error"]["type"] == "insufficient_quota" and r.json()["error"]["code"] == "insufficient_quota"
    assert upstream_calls(upstream) == before


@pytest.mark.parametrize("policy,tier", [("supercomputer-fast", "private"), ("supercomputer-deep", "personal"),
                                         ("supercomputer-fast", None), ("enterprise-private", "personal"),
                                         ("enterprise-byo", "private")])
def test_private_content_never_leaves(front: Runtime, upstream: Runtime, keys: dict, policy: str,
                                      tier: str | None) -> None:
    before = upstream_calls(upstream)
    headers = {**keys["hosted"], "x-tarx-execution-policy": policy}
    if tier:
        headers["x-tarx-privacy-tier"] = tier
    r = chat(front, headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "privacy_tier_violation", r.text
    assert upstream_calls(upstream) == before  # asserted on the upstream's own request log


def test_bad_route_headers_are_400(front: Runtime, keys: dict) -> None:
    for headers in ({"x-tarx-execution-policy": "warp"}, {"x-tarx-privacy-tier": "secret"},
                    {"x-tarx-max-joules": "lots"}, {"x-tarx-max-latency-ms": "-5"}):
        r = chat(front, {**keys["dev"], **headers})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", headers


def test_upstream_slower_than_max_latency_falls_back(front: Runtime, keys: dict) -> None:
    r = chat(front, {**keys["hosted"], **HOSTED, "x-tarx-max-latency-ms": "1"}, max_tokens=4)
    assert r.status_code == 200
    route = r.json()["tarx_route"]
    assert route["fallback"] is True and route["fallback_reason"] == "upstream_timeout"
    assert route["execution_plane"] == "local" and route["provider"] == "tarx-local"


def test_local_limits_cut_output_or_fail_explicitly(front: Runtime, keys: dict) -> None:
    r = chat(front, {**keys["dev"], "x-tarx-max-latency-ms": "400"}, content=LONG_PROMPT, max_tokens=1500)
    body = r.json()
    assert r.status_code == 200 and body["tarx_route"]["limited_by"] == "max_latency_ms"
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] < 1500
    assert body["tarx_route"]["latency_ms"] < 3000

    r = chat(front, {**keys["dev"], "x-tarx-max-joules": "20"}, content=LONG_PROMPT, max_tokens=1500)
    body = r.json()
    assert r.status_code == 200 and body["tarx_route"]["limited_by"] == "max_joules"
    assert 0 < body["usage"]["completion_tokens"] < 1500

    r = chat(front, {**keys["dev"], "x-tarx-max-joules": "0.0001"}, content=LONG_PROMPT, max_tokens=50)
    assert r.status_code == 422 and r.json()["error"]["code"] == "joules_budget_exceeded"


def test_evidence_round_trip_and_contract(front: Runtime, keys: dict) -> None:
    r = chat(front, keys["dev"], max_tokens=4)
    route = r.json()["tarx_route"]
    for field in ("execution_plane", "policy", "privacy_tier", "model", "provider", "latency_ms", "raw_joules",
                  "estimated_joules", "billable_joules", "fallback", "fallback_reason", "evidence_id"):
        assert field in route
    assert route["billable_joules"] >= 1 and route["policy"] == "local" and route["privacy_tier"] == "private"
    stored = httpx.get(front.url + f"/v1/evidence/{route['evidence_id']}", headers=keys["dev"]).json()
    assert {k: stored[k] for k in route} == route
    assert stored["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    contract = httpx.get(front.url + "/v1/evidence").json()
    assert set(contract["request_headers"]) == {"x-tarx-execution-policy", "x-tarx-privacy-tier",
                                                "x-tarx-project-id", "x-tarx-max-joules", "x-tarx-max-latency-ms",
                                                "x-tarx-llm-key-id"}
    assert set(route) - {"joules_method", "limited_by", "recorded_at"} <= set(
        contract["tarx_route_schema"]["required"])
    assert httpx.get(front.url + "/v1/evidence/ev_missing").status_code == 404


def test_usage_equals_the_requests_made(front: Runtime, upstream: Runtime, keys: dict) -> None:
    owner = keys["owner"]
    fresh = bearer(httpx.post(front.url + "/api/keys", json={"name": "usage", "scope": "supercomputer"},
                              headers=owner).json()["key"])
    billed = 0.0
    for headers in ({"x-tarx-project-id": "default"}, {"x-tarx-project-id": "default"}, HOSTED, {}):
        r = chat(front, {**fresh, **headers}, max_tokens=3)
        assert r.status_code == 200
        billed += r.json()["tarx_route"]["billable_joules"]
    usage = httpx.get(front.url + "/v1/usage", headers=fresh).json()
    assert usage["key"]["requests"] == 4 and abs(usage["key"]["joules"] - billed) < 1e-6
    project = httpx.get(front.url + "/api/v1/projects", headers=owner).json()["items"][0]["id"]
    assert {p["id"]: p["requests"] for p in usage["projects"]}.get(project, 0) >= 2
    assert usage["joules_remaining"] == usage["joules_plan"] - usage["joules_used_this_month"]
    assert usage["daily"] and usage["source_descriptor"]["billing_grade"] is False
    assert httpx.get(front.url + "/v1/usage").status_code == 401
    # A name that is none of the caller's projects is an attribution label on the local plane (seed 000).
    r = chat(front, {**fresh, "x-tarx-project-id": "not-my-project"}, max_tokens=2)
    assert r.status_code == 200
    labels = {p["id"] for p in httpx.get(front.url + "/v1/usage", headers=fresh).json()["projects"]}
    assert "not-my-project" in labels


def test_routes_and_capacity(front: Runtime, keys: dict) -> None:
    routes = {r["policy"]: r for r in httpx.get(front.url + "/v1/routes").json()["data"]}
    assert set(routes) == {"local", "supercomputer-fast", "supercomputer-deep", "enterprise-private",
                           "enterprise-byo"}
    assert routes["supercomputer-fast"]["available"] is True
    assert routes["supercomputer-fast"]["requires"]["entitlement"] == "supercomputer"
    assert routes["local"]["privacy_tiers"] == ["personal", "private", "mesh_safe", "public"]
    capacity = httpx.get(front.url + "/v1/capacity").json()["queue_classes"]
    assert set(capacity) == {"interactive", "deep", "enterprise"}


def test_upstream_in_flight_shows_in_capacity(front: Runtime, keys: dict) -> None:
    assert httpx.get(front.url + "/v1/capacity").json()["queue_classes"]["interactive"]["upstream_in_flight"] == 0
    with httpx.stream("POST", front.url + "/v1/chat/completions", headers={**keys["hosted"], **HOSTED},
                      json=chat_body(LONG_PROMPT, max_tokens=300, stream=True), timeout=120) as r:
        lines = r.iter_lines()
        next(lines)
        cap = httpx.get(front.url + "/v1/capacity").json()["queue_classes"]["interactive"]
        rest = list(lines)
        assert cap["upstream_in_flight"] == 1 and cap["in_flight"] >= 1, (cap, len(rest), rest[-3:])
    assert httpx.get(front.url + "/v1/capacity").json()["queue_classes"]["interactive"]["upstream_in_flight"] == 0


def test_enterprise_plane_uses_the_projects_byok_upstream(front: Runtime, upstream: Runtime, keys: dict) -> None:
    owner = keys["owner"]
    r = httpx.post(front.url + "/api/v1/llm-keys", headers=owner, json={
        "provider": "acme-private-cloud", "key": owner_key(upstream), "base_url": upstream.url})
    assert r.status_code == 201
    before = upstream_calls(upstream)
    r = chat(front, {**owner, "x-tarx-execution-policy": "enterprise-private", "x-tarx-privacy-tier": "private"},
             max_tokens=3)
    assert r.status_code == 200, r.text
    route = r.json()["tarx_route"]
    assert route["execution_plane"] == "enterprise" and route["provider"] == "acme-private-cloud"
    assert upstream_calls(upstream) == before + 1
    acme = next(k["id"] for k in httpx.get(front.url + "/api/v1/llm-keys", headers=owner).json()["items"]
                if k["provider"] == "acme-private-cloud")

    # A newer key whose endpoint is down becomes the project's default; naming a key (as agents with their own
    # BYOK key do) routes to that one.
    r = httpx.post(front.url + "/api/v1/llm-keys", headers=owner, json={
        "provider": "dead-cloud", "key": "sk-nothing", "base_url": f"http://127.0.0.1:{free_port()}"})
    assert r.status_code == 201
    dead = r.json()["id"]
    try:
        enterprise = {**owner, "x-tarx-execution-policy": "enterprise-private", "x-tarx-privacy-tier": "private"}
        route = chat(front, enterprise, max_tokens=3).json()["tarx_route"]
        assert route["fallback"] is True and route["execution_plane"] == "local", route
        route = chat(front, {**enterprise, "x-tarx-llm-key-id": acme}, max_tokens=3).json()["tarx_route"]
        assert route["provider"] == "acme-private-cloud" and route["fallback"] is False, route
        r = chat(front, {**enterprise, "x-tarx-llm-key-id": "llmkey_missing"}, max_tokens=3)
        assert r.status_code == 404 and "llmkey_missing" in r.json()["error"]["message"], r.text
    finally:
        httpx.delete(front.url + f"/api/v1/llm-keys/{dead}", headers=owner)


def test_owner_configures_the_hosted_plane(make_runtime, upstream: Runtime) -> None:
    rt = make_runtime(QUIET, name="configured")
    owner = bearer(owner_key(rt))
    assert httpx.get(rt.url + "/v1/routes").json()["data"][1]["available"] is False
    project = httpx.get(rt.url + "/api/v1/projects", headers=owner).json()["items"][0]["id"]
    httpx.post(rt.url + f"/api/v1/projects/{project}/members", json={"email": "admin@example.com", "role": "admin"},
               headers=owner)
    admin = bearer(user_key(rt, "admin@example.com"))  # an admin of a project is still not the runtime's owner
    r = httpx.put(rt.url + "/api/planes/supercomputer", json={"url": upstream.url}, headers=admin)
    assert r.status_code == 403
    assert httpx.get(rt.url + "/v1/routes").json()["data"][1]["available"] is False
    r = httpx.put(rt.url + "/api/planes/supercomputer", json={"url": upstream.url}, headers=owner)
    assert r.status_code == 200
    assert httpx.get(rt.url + "/v1/routes").json()["data"][1]["available"] is True
    hosted_key = httpx.post(rt.url + "/api/keys", json={"name": "h", "scope": "supercomputer"}, headers=owner)
    assert hosted_key.status_code == 402  # configuring the plane grants no entitlement


@pytest.fixture
def doomed_upstream(make_runtime) -> Iterator[tuple[Runtime, Runtime, dict[str, str]]]:
    up = make_runtime(QUIET, name="doomed")
    front = make_runtime({**QUIET, "TARX_SUPERCOMPUTER_URL": up.url}, name="front2")
    owner = bearer(owner_key(front))
    httpx.post(front.url + "/api/account/entitlements", json={"entitlement": "supercomputer"}, headers=owner)
    key = httpx.post(front.url + "/api/keys", json={"name": "h", "scope": "supercomputer"}, headers=owner).json()
    yield up, front, bearer(key["key"])


def test_killing_the_upstream_triggers_a_recorded_fallback(doomed_upstream) -> None:
    up, front, hosted = doomed_upstream
    assert chat(front, {**hosted, **HOSTED}, max_tokens=2).json()["tarx_route"]["fallback"] is False
    up.stop()
    for stream in (False, True):
        r = chat(front, {**hosted, **HOSTED}, max_tokens=4, stream=stream)
        assert r.status_code == 200
        if stream:
            route = json.loads([line[6:] for line in r.text.splitlines() if line.startswith("data: ")][-2])[
                "tarx_route"]
        else:
            route = r.json()["tarx_route"]
        assert route["fallback"] is True and route["fallback_reason"] == "upstream_unavailable"
        assert route["execution_plane"] == "local" and route["policy"] == "supercomputer-fast"
        stored = httpx.get(front.url + f"/v1/evidence/{route['evidence_id']}").json()
        assert stored["fallback"] is True


def test_cors_policy(make_runtime) -> None:
    """Listed origins and pages on this machine may read the API with any request header (SDKs add their own,
    e.g. the OpenAI JS SDK's x-stainless-*); other origins get no CORS grant."""
    rt = make_runtime({**QUIET, "TARX_CORS_ORIGINS": '["https://app.example"]'}, name="cors")
    sdk_headers = "x-stainless-os, x-stainless-lang, authorization, content-type, x-tarx-execution-policy"
    for origin in ("https://app.example", "http://localhost:5173", "http://127.0.0.1:8080"):
        ok = httpx.options(rt.url + "/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sdk_headers})
        assert ok.status_code == 200, (origin, ok.text)
        assert ok.headers["access-control-allow-origin"] == origin
        assert "x-stainless-os" in ok.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in ok.headers
    got = httpx.get(rt.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert got.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-tarx-evidence-id" in got.headers["access-control-expose-headers"]
    for origin in ("https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil.example"):
        other = httpx.options(rt.url + "/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        assert "access-control-allow-origin" not in httpx.get(rt.url + "/v1/models", headers={"Origin": origin}).headers
    strict = make_runtime({**QUIET, "TARX_CORS_LOOPBACK_ORIGINS": "false"}, name="cors-strict")
    r = httpx.options(strict.url + "/v1/chat/completions", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_project_header_is_a_label_on_the_local_plane(front: Runtime, keys: dict) -> None:
    """Seed 000's own example, `x-tarx-project-id: demo-project`, is an attribution label for local calls."""
    r = chat(front, {**keys["dev"], "x-tarx-project-id": "demo-project"}, max_tokens=2)
    assert r.status_code == 200, r.text
    usage = httpx.get(front.url + "/v1/usage", headers=keys["dev"]).json()
    assert any(p["id"] == "demo-project" and p["requests"] >= 1 for p in usage["projects"])
    # A real project of the caller is still resolved by slug to its id.
    r = chat(front, {**keys["owner"], "x-tarx-project-id": "default"}, max_tokens=2)
    stored = httpx.get(front.url + f"/v1/evidence/{r.json()['tarx_route']['evidence_id']}").json()
    assert stored["project_id"].startswith("proj_")
    # The enterprise plane needs the project itself.
    r = chat(front, {**keys["owner"], "x-tarx-execution-policy": "enterprise-private",
                     "x-tarx-project-id": "demo-project"}, max_tokens=2)
    assert r.status_code == 404


def test_log_row_and_evidence_are_written_together_on_every_plane(front: Runtime, keys: dict) -> None:
    ids = []
    for headers, stream in (({}, False), ({}, True), (HOSTED, False), (HOSTED, True)):
        r = chat(front, {**keys["hosted"], **headers}, max_tokens=3, stream=stream)
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-tarx-evidence-id"])
    with sqlite3.connect(front.data_dir / "tarx.db") as db:
        for evidence_id in ids:
            ev = db.execute("SELECT request_id, execution_plane, prompt_tokens, completion_tokens, stream "
                            "FROM route_evidence WHERE id = ?", (evidence_id,)).fetchone()
            assert ev is not None and ev[0], evidence_id
            log = db.execute("SELECT prompt_tokens, completion_tokens, stream FROM inference_requests WHERE id = ?",
                             (ev[0],)).fetchone()
            assert log is not None and log == ev[2:], (ev, log)
        planes = {row[0] for row in db.execute(
            f"SELECT execution_plane FROM route_evidence WHERE id IN ({','.join('?' * len(ids))})", ids)}
    assert planes == {"local", "supercomputer"}
