"""Bad input never reaches SQL as a 5xx (issue 12 §4), and job env values are secret after submission (§2)."""

from __future__ import annotations

import httpx
import pytest

from conftest import Runtime
from support.compute import FAST, Api

HUGE = 4611686018427387904  # 2**62: times a page size it overflows SQLite's 64-bit integers


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module(FAST, name="hardening")  # no node: jobs stay queued


@pytest.fixture(scope="module")
def api(rt: Runtime) -> Api:
    return Api(rt)


@pytest.fixture(scope="module")
def job_id(api: Api) -> str:
    return api.submit("true", {"test": "hardening-never-runs"})["id"]


def refused(r: httpx.Response, status: int = 400, words: str = "") -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] in ("ERROR", "FORBIDDEN") and body["payload"] is None, body
    assert words.lower() in body["message"].lower(), body


def test_huge_pages_are_400(api: Api) -> None:
    refused(api.http.get("/v0/jobs", params={"page": HUGE}), words="page")
    refused(api.http.get("/v0/jobs", params={"page": 10**30}), words="page")
    refused(api.http.post("/api/compute/jobs/list", json={"page": HUGE}), words="page")
    assert api.http.get("/v0/jobs", params={"page": 1000}).json()["items"] == []  # far but sane: empty page


def test_huge_log_positions_are_400(api: Api, job_id: str) -> None:
    refused(api.http.get(f"/v0/jobs/{job_id}/logs", params={"after": 10**30}), words="after")
    forty = "9" * 40
    refused(api.http.get(f"/v0/jobs/{job_id}/logs", headers={"Last-Event-ID": forty}), words="Last-Event-ID")
    refused(api.http.get(f"/api/compute/jobs/{job_id}/logs", headers={"Last-Event-ID": forty}),
            words="Last-Event-ID")
    superscript = "²".encode()  # str.isdigit() is true, int() fails
    refused(api.http.get(f"/api/compute/jobs/{job_id}/logs", headers={"Last-Event-ID": superscript}),
            words="Last-Event-ID")
    assert api.http.get(f"/v0/jobs/{job_id}/logs", params={"after": 2**63 - 1}).json()["items"] == []
    assert api.http.get(f"/v0/jobs/{job_id}/logs", headers={"Last-Event-ID": "12"}).json()["items"] == []


def test_filter_counts_are_capped(api: Api) -> None:
    many = [f"k{i}:v" for i in range(1000)]
    refused(api.http.get("/v0/jobs", params={"label": many}), words="at most 20")
    refused(api.http.get("/v0/jobs", params={"label": many[:21]}), words="at most 20")
    assert api.http.get("/v0/jobs", params={"label": many[:20]}).status_code == 200
    refused(api.http.get("/v0/jobs", params={"state": ["QUEUED"] * 21}), words="at most 20")
    labels = {f"k{i}": "v" for i in range(1000)}
    refused(api.http.post("/api/compute/jobs/list", json={"labels": labels}), words="labels")
    refused(api.http.post("/api/compute/jobs/list", json={"state": ["QUEUED"] * 21}), words="state")


def test_label_keys_cannot_break_json_paths(api: Api, job_id: str) -> None:  # a job to evaluate the path on
    refused(api.http.get("/v0/jobs", params={"label": 'a"b:1'}), words="label")
    refused(api.http.post("/api/compute/jobs/list", json={"labels": {'a"b': "1"}}), words="labels")
    refused(api.http.post("/v0/jobs", json={"command": "true", "labels": {'a"b': "1"}}), words="labels")


@pytest.mark.parametrize("params", [
    {"expires": "9999999999", "sig": "é" * 64},  # non-ASCII: hmac.compare_digest raises TypeError
    {"expires": "²", "sig": "0" * 64},  # str.isdigit() is true, int() fails
    {"expires": "9" * 5000, "sig": "0" * 64},  # past int()'s digit limit
    {"expires": "-1", "sig": "0" * 64},
    {"expires": "9999999999"},
])
def test_malformed_artifact_urls_are_403(rt: Runtime, job_id: str, params: dict) -> None:
    base = f"{rt.url}/api/compute/artifacts"
    refused(httpx.put(f"{base}/upload/{job_id}/art_x", params=params, content=b"x"), 403)
    refused(httpx.get(f"{base}/download/{job_id}/art_x", params=params), 403)


def test_platform_paging_is_bounded(api: Api) -> None:
    for path in ("/api/v1/projects", "/api/v1/platform-keys"):
        r = api.http.get(path, params={"page": HUGE})
        assert r.status_code == 422 and r.json()["error_code"] == "VALIDATION_ERROR", r.text
        assert api.http.get(path, params={"page": 2}).status_code == 200


def test_other_integers_are_bounded(api: Api) -> None:
    refused(api.http.post("/api/compute/api-keys/create", json={"name": "big", "maxJobsPerHour": 10**30}))
    refused(api.http.get("/v0/jobs", params={"pageSize": 10**30}), words="pageSize")


def test_env_values_are_shown_once(rt: Runtime, api: Api) -> None:
    env = {"API_TOKEN": "s3cret-value", "EMPTY": ""}
    lab = {"test": "env-masking"}
    submitted = api.submit("true", lab, env=env)
    assert submitted["env"] == env  # the submitter sees them once
    masked = {"API_TOKEN": "********", "EMPTY": "********"}
    job_id = submitted["id"]
    detail = api.job(job_id)
    assert detail["env"] == masked
    assert [j["env"] for j in api.http.get("/v0/jobs", params={"label": "test:env-masking"}).json()["items"]] \
        == [masked]
    retrieved = api.http.post("/api/compute/jobs/retrieve", json={"jobId": job_id}).json()["payload"]
    assert retrieved == detail  # both families show the same job data
    listed = api.http.post("/api/compute/jobs/list", json={"labels": lab}).json()["payload"]["items"]
    assert [j["env"] for j in listed] == [masked]
    again = api.http.post("/v0/jobs", json={"command": "true", "labels": lab, "env": env},
                          headers={"Idempotency-Key": "env-once"})
    assert again.status_code == 201 and again.json()["env"] == env
    replay = api.http.post("/v0/jobs", json={"command": "true", "labels": lab, "env": env},
                           headers={"Idempotency-Key": "env-once"})
    assert replay.status_code == 200 and replay.json()["env"] == masked  # a replay is a later read
    assert "s3cret-value" not in api.http.post(f"/v0/jobs/{job_id}:cancel").text

    # The node that runs the job still gets the real values.
    other = api.submit("true", {"test": "env-node"}, env=env)
    r = api.http.post("/api/compute/nodes/register", json={"name": "env-node", "labels": {"test": "env-node"}})
    node_key = r.json()["payload"]["nodeKey"]
    polled = httpx.post(f"{rt.url}/api/compute/nodes/poll", headers={"X-API-Key": node_key}, json={}).json()
    assert [(j["id"], j["env"]) for j in polled["payload"]["jobs"]] == [(other["id"], env)]
    assert api.job(other["id"])["env"] == masked
