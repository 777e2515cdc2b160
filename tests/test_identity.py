"""Identity and access over HTTP: bootstrap, keys of every kind, sessions, project context, RBAC, secrets, audit."""

from __future__ import annotations

import itertools
import json
import stat
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conftest import Runtime, chat_body
from runtime.config import Settings
from support.identity import bearer, owner_key, sign_in, user_key


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module()


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return bearer(owner_key(rt))


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- bootstrap and policy ----------------------------------------------------------------------------------------

def test_first_start_creates_owner_project_and_private_key_files(rt: Runtime, owner: dict) -> None:
    for name in ("owner.key", "tarx.db.key"):
        mode = stat.S_IMODE((rt.data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    me = httpx.get(rt.url + "/api/v1/auth/me", headers=owner).json()
    assert me["is_owner"] is True and me["auth"]["via"] == "platform"
    assert [p["slug"] for p in me["projects"]] == ["default"] and me["projects"][0]["role"] == "owner"
    assert httpx.get(rt.url + "/api/v1/users/me", headers=owner).json()["id"] == me["id"]


def test_every_family_but_local_inference_requires_a_key(rt: Runtime) -> None:
    r = httpx.get(rt.url + "/api/v1/projects")
    assert r.status_code == 401 and r.json() == {"detail": "Authentication required", "error_code": "AUTH_REQUIRED",
                                                 "status": 401}
    r = httpx.get(rt.url + "/api/keys")
    assert r.status_code == 401 and r.json()["error"]["code"] == "tarx_api_key_required"
    r = httpx.post(rt.url + "/api/compute/api-keys/list", json={})
    assert r.status_code == 401 and r.json() == {"status": "UNAUTHORIZED", "message": "Authentication required",
                                                 "payload": None}
    r = httpx.get(rt.url + "/v0/workspaces")
    assert r.status_code == 401 and r.json()["payload"] is None
    # Loopback bind: /v1 inference works without a key, and ignores a placeholder key from an SDK.
    assert httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=1), timeout=60).status_code == 200
    r = httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=1), headers=bearer("sk-local"),
                   timeout=60)
    assert r.status_code == 200


def test_inference_policy_follows_the_bind_address() -> None:
    assert Settings(host="127.0.0.1").inference_needs_key is False
    assert Settings(host="0.0.0.0").inference_needs_key is True
    assert Settings(host="192.0.2.10").inference_needs_key is True
    assert Settings(host="127.0.0.1", inference_requires_key=True).inference_needs_key is True


def test_inference_requires_key_when_configured(make_runtime) -> None:
    rt = make_runtime({"TARX_INFERENCE_REQUIRES_KEY": "true"}, name="strict")
    r = httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=1))
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=1), headers=bearer(owner_key(rt)),
                   timeout=60)
    assert r.status_code == 200


# ---- keys ----------------------------------------------------------------------------------------------------------

def test_tarx_key_lifecycle_and_entitlement(rt: Runtime, owner: dict) -> None:
    c = httpx.Client(base_url=rt.url, headers=owner)
    r = c.post("/api/keys", json={"name": "dev", "scope": "developer_runtime"})
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("tarx_") and created["scope"] == "developer_runtime"
    listed = c.get("/api/keys").json()["data"]
    assert created["id"] in [k["id"] for k in listed]
    assert created["key"] not in json.dumps(listed) and all("key" not in k for k in listed)

    r = c.post("/api/keys", json={"name": "hosted", "scope": "supercomputer"})
    assert r.status_code == 402
    assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "insufficient_quota",
                                 "code": "hosted_entitlement_required", "docs_url": "/docs/api-reference#errors"}
    assert c.post("/api/account/entitlements", json={"entitlement": "supercomputer"}).json() == {
        "entitlements": ["supercomputer"]}
    assert c.post("/api/keys", json={"name": "hosted", "scope": "supercomputer"}).status_code == 201

    dev = bearer(created["key"])
    assert httpx.get(rt.url + "/api/keys", headers=dev).status_code == 200
    assert c.get("/api/keys").json()["data"][0]["last_used_at"] is not None
    r = c.request("DELETE", "/api/keys", json={"id": created["id"]})
    assert r.status_code == 200 and r.json()["revoked"] is True
    for path, method in (("/api/keys", "GET"), ("/v1/chat/completions", "POST")):
        r = httpx.request(method, rt.url + path, headers=dev, json=chat_body(max_tokens=1))
        assert r.status_code == 401 and r.json()["error"]["code"] == "tarx_api_key_revoked", path
    assert c.request("DELETE", "/api/keys", params={"id": "key_doesnotexist"}).status_code == 404


def test_malformed_checksum_broken_and_unknown_keys(rt: Runtime, owner: dict) -> None:
    good = httpx.post(rt.url + "/api/keys", json={"name": "x"}, headers=owner).json()["key"]
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    body_changed = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    for bad, code in ((flipped, "tarx_api_key_invalid"), (body_changed, "tarx_api_key_invalid"),
                      ("tarx_short", "tarx_api_key_invalid"), ("sk-tarx-" + "a" * 38, "tarx_api_key_invalid")):
        r = httpx.get(rt.url + "/api/keys", headers=bearer(bad))
        assert r.status_code == 401 and r.json()["error"]["code"] == code, bad
        # Keys that look like ours are checked even where anonymous inference is allowed.
        r = httpx.post(rt.url + "/v1/chat/completions", json=chat_body(max_tokens=1), headers=bearer(bad))
        assert r.status_code == 401
    assert httpx.get(rt.url + "/api/keys", headers={"Authorization": "Basic abc"}).status_code == 401


def test_expired_key_is_refused(rt: Runtime, owner: dict) -> None:
    r = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "short", "expires_at": iso_in(1.5)},
                   headers=owner)
    key = r.json()["key"]
    assert httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(key)).status_code == 200
    time.sleep(1.7)
    r = httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(key))
    assert r.status_code == 401 and r.json()["error_code"] == "API_KEY_EXPIRED"
    past = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "p", "expires_at": iso_in(-5)}, headers=owner)
    assert past.status_code == 400


def test_platform_keys_shown_once_and_deleted(rt: Runtime, owner: dict) -> None:
    r = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "CI Pipeline"}, headers=owner)
    assert r.status_code == 201
    body = r.json()
    assert {"id", "name", "created_at", "key"} <= set(body) and body["key"].startswith("sk-tarx-")
    listing = httpx.get(rt.url + "/api/v1/platform-keys", headers=owner).json()
    assert {"items", "total", "page", "per_page"} <= set(listing)
    assert body["key"] not in json.dumps(listing)
    assert httpx.delete(rt.url + f"/api/v1/platform-keys/{body['id']}", headers=owner).status_code == 204
    r = httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(body["key"]))
    assert r.status_code == 401 and r.json()["error_code"] == "API_KEY_REVOKED"


def test_compute_keys_carry_quotas_and_use_x_api_key(rt: Runtime, owner: dict) -> None:
    r = httpx.post(rt.url + "/api/compute/api-keys/create", headers=owner, json={
        "name": "runner", "maxJobsPerHour": 10, "maxConcurrentJobs": 2, "allowedJobTypes": ["COMMAND"]})
    assert r.status_code == 200 and r.json()["status"] == "SUCCESS"
    created = r.json()["payload"]
    assert created["key"].startswith("tnv_") and created["maxJobsPerHour"] == 10
    assert created["allowedJobTypes"] == ["COMMAND"] and created["workspaceId"].startswith("proj_")
    mine = {"X-API-Key": created["key"]}
    listed = httpx.post(rt.url + "/api/compute/api-keys/list", headers=mine, json={}).json()["payload"]
    assert created["id"] in [k["id"] for k in listed] and created["key"] not in json.dumps(listed)
    r = httpx.post(rt.url + "/api/compute/api-keys/revoke", headers=owner, json={"id": created["id"]})
    assert r.json()["payload"]["revokedAt"] is not None
    r = httpx.post(rt.url + "/api/compute/api-keys/list", headers=mine, json={})
    assert r.status_code == 401 and r.json()["status"] == "UNAUTHORIZED" and "revoked" in r.json()["message"]


def test_keys_of_one_family_cannot_be_revoked_through_another(rt: Runtime, owner: dict) -> None:
    tarx = httpx.post(rt.url + "/api/keys", json={"name": "t"}, headers=owner).json()
    assert httpx.delete(rt.url + f"/api/v1/platform-keys/{tarx['id']}", headers=owner).status_code == 404
    r = httpx.post(rt.url + "/api/compute/api-keys/revoke", json={"id": tarx["id"]}, headers=owner)
    assert r.status_code == 404 and r.json()["status"] == "ERROR"


# ---- sessions ------------------------------------------------------------------------------------------------------

def test_one_time_code_gives_a_jwt_session_that_expires(make_runtime) -> None:
    rt = make_runtime({"TARX_SESSION_SECONDS": "2"}, name="jwt")
    token = sign_in(rt, "owner@localhost")
    assert token.count(".") == 2
    me = httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["auth"]["via"] == "jwt"
    time.sleep(2.5)
    r = httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(token))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(forged)).status_code == 401


def test_wrong_or_replayed_codes_are_refused(rt: Runtime) -> None:
    r = httpx.post(rt.url + "/api/auth/verify-otp", json={"email": "owner@localhost", "code": "000000"})
    assert r.status_code == 401 and r.json()["status"] == "UNAUTHORIZED"
    unknown = httpx.post(rt.url + "/api/auth/request-otp", json={"email": "nobody@example.com"})
    assert unknown.status_code == 200  # no account enumeration
    sign_in(rt, "owner@localhost")
    code = rt.log().rsplit("one-time sign-in code for owner@localhost: ", 1)[1][:6]
    replay = httpx.post(rt.url + "/api/auth/verify-otp", json={"email": "owner@localhost", "code": code})
    assert replay.status_code == 401


# ---- projects, context, RBAC ---------------------------------------------------------------------------------------

def test_project_context_resolution(make_runtime) -> None:
    rt = make_runtime(name="ctx")
    owner = bearer(owner_key(rt))
    c = httpx.Client(base_url=rt.url, headers=owner)
    assert c.get("/api/v1/llm-keys").status_code == 200  # exactly one project: no header needed
    second = c.post("/api/v1/projects", json={"name": "Second One"}).json()
    assert second["slug"] == "second-one" and second["role"] == "owner"
    r = c.get("/api/v1/llm-keys")
    assert r.status_code == 400 and "X-Project-Slug" in r.json()["detail"]
    assert c.get("/api/v1/llm-keys", headers={"X-Project-Slug": "second-one"}).status_code == 200
    assert c.get("/api/v1/llm-keys", headers={"X-Project-ID": second["id"]}).status_code == 200
    assert c.get("/api/v1/llm-keys", headers={"X-Project-Slug": "nope"}).status_code == 404
    assert c.get("/api/v1/llm-keys", headers={"X-Project-ID": "proj_unknown"}).status_code == 404
    assert c.post("/api/v1/projects", json={"name": "x", "slug": "second-one"}).status_code == 409

    # Another user's project is indistinguishable from one that does not exist.
    c.post(f"/api/v1/projects/{second['id']}/members", json={"email": "bob@example.com", "role": "member"})
    bob = bearer(user_key(rt, "bob@example.com"))
    default_id = next(p for p in c.get("/api/v1/projects").json()["items"] if p["slug"] == "default")["id"]
    for path in (f"/api/v1/projects/{default_id}", f"/api/v1/projects/{default_id}/members"):
        r = httpx.get(rt.url + path, headers=bob)
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    r = httpx.get(rt.url + "/api/v1/llm-keys", headers={**bob, "X-Project-ID": default_id})
    assert r.status_code == 404
    # Bob has one project, so his requests resolve to it without a header.
    assert httpx.get(rt.url + "/api/v1/llm-keys", headers=bob).status_code == 200


ROLES = ("owner", "admin", "editor", "member")
_serial = itertools.count()


@pytest.fixture(scope="module")
def team(rt: Runtime, owner: dict) -> dict:
    """A project with one user per role, each with their own platform key."""
    project = httpx.post(rt.url + "/api/v1/projects", json={"name": "RBAC"}, headers=owner).json()
    keys = {"owner": owner}
    for role in ROLES[1:]:
        email = f"{role}@example.com"
        r = httpx.post(rt.url + f"/api/v1/projects/{project['id']}/members", headers=owner,
                       json={"email": email, "role": role})
        assert r.status_code == 201
        keys[role] = {**bearer(user_key(rt, email))}
    return {"project": project, "keys": keys}


def _mutations(rt: Runtime, project_id: str, owner: dict, n: int) -> list[tuple[str, str, dict | None]]:
    """Every mutating route of the identity issue, each with fresh targets (method, path, body)."""
    ctx = {"X-Project-ID": project_id}
    llm = httpx.post(rt.url + "/api/v1/llm-keys", headers={**owner, **ctx},
                     json={"provider": "openai", "name": f"victim-{n}", "key": "sk-victim-0123456789"}).json()
    cred = httpx.post(rt.url + "/api/v1/credentials", headers={**owner, **ctx},
                      json={"name": f"victim-{n}", "value": "hunter2-hunter2"}).json()
    victim = httpx.post(rt.url + f"/api/v1/projects/{project_id}/members", headers=owner,
                        json={"email": f"victim{n}@example.com", "role": "member"}).json()
    return [
        ("POST", f"/api/v1/projects/{project_id}/members", {"email": f"new{n}@example.com", "role": "member"}),
        ("DELETE", f"/api/v1/projects/{project_id}/members/{victim['user_id']}", None),
        ("PATCH", f"/api/v1/projects/{project_id}", {"description": f"changed {n}"}),
        ("POST", "/api/v1/llm-keys", {"provider": "anthropic", "name": f"k{n}", "key": "sk-ant-0123456789abc"}),
        ("DELETE", f"/api/v1/llm-keys/{llm['id']}", None),
        ("POST", "/api/v1/credentials", {"name": f"c{n}", "value": "s3cret-value-123"}),
        ("DELETE", f"/api/v1/credentials/{cred['id']}", None),
        ("PATCH", f"/v0/workspaces/{project_id}", {"defaultRegion": f"r{n}"}),
        ("POST", f"/v0/workspaces/{project_id}/members", {"email": f"v0new{n}@example.com", "role": "member"}),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_rbac_matrix(rt: Runtime, owner: dict, team: dict, role: str) -> None:
    project_id = team["project"]["id"]
    allowed = role in ("owner", "admin")  # members, credentials, BYOK keys, project settings: admin only
    headers = {**team["keys"][role], "X-Project-ID": project_id}
    for method, path, body in _mutations(rt, project_id, owner, next(_serial)):
        r = httpx.request(method, rt.url + path, headers=headers, json=body)
        if allowed:
            assert 200 <= r.status_code < 300, (role, method, path, r.text)
        else:
            assert r.status_code == 403, (role, method, path, r.text)
            if path.startswith("/api/v1"):
                assert r.json()["error_code"] == "PERMISSION_DENIED"
            else:
                assert r.json()["status"] == "FORBIDDEN"
    # Reads are open to every member.
    assert httpx.get(rt.url + "/api/v1/llm-keys", headers=headers).status_code == 200
    assert httpx.get(rt.url + f"/api/v1/projects/{project_id}/members", headers=headers).status_code == 200


def test_only_owners_make_owners(rt: Runtime, team: dict) -> None:
    pid = team["project"]["id"]
    r = httpx.post(rt.url + f"/api/v1/projects/{pid}/members", headers=team["keys"]["admin"],
                   json={"email": "wannabe@example.com", "role": "owner"})
    assert r.status_code == 403


# ---- secrets -------------------------------------------------------------------------------------------------------

def test_secrets_are_masked_and_never_stored_in_plaintext(make_runtime) -> None:
    rt = make_runtime(name="secrets")
    owner = bearer(owner_key(rt))
    plaintexts = [owner_key(rt)]
    c = httpx.Client(base_url=rt.url, headers=owner)
    plaintexts.append(c.post("/api/keys", json={"name": "a"}).json()["key"])
    plaintexts.append(c.post("/api/v1/platform-keys", json={"name": "b"}).json()["key"])
    plaintexts.append(c.post("/api/compute/api-keys/create", json={"name": "c"}).json()["payload"]["key"])
    llm_value = "sk-proj-Zq81bYvV0c3Xr7TtLmA9"
    cred_value = "postgres://admin:Vr7!pass-word@db.internal/prod"
    plaintexts += [llm_value, cred_value]
    llm = c.post("/api/v1/llm-keys", json={"provider": "openai", "key": llm_value}).json()
    assert llm["masked"] == "sk-…" + llm_value[-4:]
    c.post("/api/v1/credentials", json={"name": "DATABASE_URL", "value": cred_value})
    listed = c.get("/api/v1/llm-keys").text + c.get("/api/v1/credentials").text
    assert llm_value not in listed and cred_value not in listed and "DATABASE_URL" in listed
    db = rt.data_dir / "tarx.db"
    raw = db.read_bytes() + (db.with_name("tarx.db-wal").read_bytes() if db.with_name("tarx.db-wal").exists()
                             else b"")
    assert rt.stop() == 0
    raw += db.read_bytes()
    for secret in plaintexts:
        assert secret.encode() not in raw, secret[:8]


# ---- audit ---------------------------------------------------------------------------------------------------------

def test_audit_log_records_mutations_and_exports_jsonl(rt: Runtime, owner: dict, team: dict) -> None:
    pid = team["project"]["id"]
    before = iso_in(0)
    httpx.post(rt.url + "/api/v1/credentials", headers={**owner, "X-Project-ID": pid},
               json={"name": "AUDITED", "value": "value-123456"})
    httpx.post(rt.url + "/api/v1/credentials", headers={**team["keys"]["member"], "X-Project-ID": pid},
               json={"name": "DENIED", "value": "value-123456"})
    r = httpx.get(rt.url + f"/v0/workspaces/{pid}/audit", headers=owner, params={"since": before})
    assert r.status_code == 200 and r.headers["x-compute-api-version"] == "v0"
    records = r.json()["items"]
    created = [x for x in records if x["action"] == "credential.create"]
    assert [x["outcome"] for x in created] == ["success", "denied"]
    assert {"actor", "key_id", "action", "target", "project_id", "client", "outcome", "time"} <= set(created[0])
    assert created[0]["client"] == "127.0.0.1" and created[0]["key_id"].startswith("key_")
    only = httpx.get(rt.url + f"/v0/workspaces/{pid}/audit", headers=owner,
                     params={"action": "credential.create", "actor": created[1]["actor"]}).json()["items"]
    assert only and all(x["actor"] == created[1]["actor"] for x in only)
    jsonl = httpx.get(rt.url + f"/v0/workspaces/{pid}/audit", headers=owner, params={"format": "jsonl"})
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(lines) >= len(records) and lines[0]["action"] == "project.create"
    assert httpx.get(rt.url + f"/v0/workspaces/{pid}/audit", headers=team["keys"]["member"]).status_code == 403


# ---- v0 workspaces -------------------------------------------------------------------------------------------------

def test_workspaces_are_projects(rt: Runtime, owner: dict) -> None:
    v0 = {**owner, "X-Compute-API-Version": "v0"}
    r = httpx.post(rt.url + "/v0/workspaces", json={"name": "Batch", "defaultRegion": "eu"}, headers=v0)
    assert r.status_code == 201
    ws = r.json()
    assert ws["role"] == "owner" and ws["defaultRegion"] == "eu"
    assert ws["id"] in [p["id"] for p in httpx.get(rt.url + "/api/v1/projects", headers=owner,
                                                    params={"per_page": 200}).json()["items"]]
    r = httpx.patch(rt.url + f"/v0/workspaces/{ws['id']}", json={"name": "Batch 2"}, headers=v0)
    assert r.json()["name"] == "Batch 2"
    assert httpx.get(rt.url + f"/api/v1/projects/{ws['id']}", headers=owner).json()["name"] == "Batch 2"
    r = httpx.post(rt.url + f"/v0/workspaces/{ws['id']}/members", json={"email": "m@example.com", "role": "member"},
                   headers=v0)
    assert r.status_code == 201 and r.json()["role"] == "member"
    r = httpx.get(rt.url + "/v0/workspaces", headers={**owner, "X-Compute-API-Version": "v1"})
    assert r.status_code == 400 and r.json()["status"] == "ERROR" and r.headers["x-compute-api-version"] == "v0"


# ---- hostile input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/keys", {"scope": "root"}),
    ("POST", "/api/keys", {"name": 5}),
    ("POST", "/api/v1/platform-keys", {}),
    ("POST", "/api/v1/projects", {"name": "x", "slug": "Bad Slug!"}),
    ("POST", "/api/v1/llm-keys", {"provider": "openai"}),
    ("POST", "/api/compute/api-keys/create", {"name": "x", "maxJobsPerHour": "lots"}),
    ("POST", "/api/auth/verify-otp", {"email": "owner@localhost", "code": "12"}),
    ("POST", "/v0/workspaces", {"name": ""}),
    ("DELETE", "/api/keys", "not json"),
])
def test_bad_identity_bodies_are_4xx_in_envelope(rt: Runtime, owner: dict, method: str, path: str, body) -> None:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    r = httpx.request(method, rt.url + path, headers=owner, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    data = r.json()
    assert ("error" in data) or ("error_code" in data) or (data.get("payload", 1) is None)


# ---- rate limits ---------------------------------------------------------------------------------------------------

def test_rate_limits_per_key_with_headers_and_429(make_runtime) -> None:
    rt = make_runtime({"TARX_RATE_PLATFORM_PER_MINUTE": "5", "TARX_RATE_PLATFORM_BURST": "3",
                       "TARX_RATE_PLATFORM_BURST_SECONDS": "5", "TARX_RATE_COMPUTE_PER_MINUTE": "2"}, name="rl")
    owner = bearer(owner_key(rt))
    other = bearer(httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "other"}, headers=owner).json()["key"])
    # That POST counted against the owner's key: 2 of the burst of 3 remain.
    seen = []
    for _ in range(2):
        r = httpx.get(rt.url + "/api/v1/auth/me", headers=owner)
        assert r.status_code == 200
        seen.append(int(r.headers["x-ratelimit-remaining"]))
        assert r.headers["x-ratelimit-limit"] == "5" and int(r.headers["x-ratelimit-reset"]) > time.time()
        assert r.headers["ratelimit-policy"] == "5;w=60, 3;w=5" and "remaining=" in r.headers["ratelimit"]
    assert seen == [3, 2]
    r = httpx.get(rt.url + "/api/v1/auth/me", headers=owner)
    assert r.status_code == 429
    assert r.json()["error_code"] == "RATE_LIMIT_EXCEEDED" and r.json()["status"] == 429
    assert 1 <= int(r.headers["retry-after"]) <= 5 and r.headers["x-ratelimit-remaining"] == "0"
    assert httpx.get(rt.url + "/api/v1/auth/me", headers=other).status_code == 200  # its own bucket
    # /v1 inference is outside these families.
    assert "x-ratelimit-limit" not in httpx.get(rt.url + "/v1/models").headers

    for expected in (200, 200, 429):
        r = httpx.post(rt.url + "/api/compute/api-keys/list", headers=owner, json={})
        assert r.status_code == expected
    assert r.json() == {"status": "RATE_LIMITED", "message": r.json()["message"], "payload": None}
    assert "retry-after" in r.headers
