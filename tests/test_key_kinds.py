"""Each kind of credential reaches only its own family, and minting never yields more than the minting key holds.

The matrix is generated from the app's own routes: a new route is covered (and fails until its reach is declared in
runtime/api/reach.py). Every route is called with every kind of credential held by a user of every role, over HTTP
against one runtime; the bodies are deliberately invalid (or the ids unknown), so an admitted call is answered
without changing anything, while a refused one never reaches its handler.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from conftest import Runtime
from runtime.api.families import Family, family
from runtime.api.reach import ROUTES, declared, routes_of
from runtime.app import create_app
from support.identity import bearer, owner_key, sign_in

ROLES = ("owner", "admin", "editor", "member")
KINDS = ("jwt", "platform", "tarx_dev", "tarx_super", "compute", "node")
VIA = {"jwt": "jwt", "platform": "platform", "tarx_dev": "tarx", "tarx_super": "tarx", "compute": "compute",
       "node": "node"}
# Compute keys and nodes need the editor role to be created: a read-only member holds neither.
HELD = [(role, kind) for role in ROLES for kind in KINDS if not (role == "member" and kind in ("compute", "node"))]
PROBE = {"__probe": 1}  # every request body refuses unknown fields: admitted calls stop at validation


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) for every route the app serves."""
    found = set()
    for _, path, methods in routes_of(create_app()):
        for method in methods:
            if not (method == "HEAD" and "GET" in methods):
                found.add((method, path))
    return sorted(found, key=lambda mp: (mp[1], mp[0]))


ROUTE_LIST = app_routes()


# ---- the declarations, without a runtime ----------------------------------------------------------------------

def test_every_route_declares_its_reach() -> None:
    missing = [f"{m} {p}" for m, p in ROUTE_LIST if declared(m, p) is None]
    assert not missing, f"declare these routes' reach in runtime/api/reach.py ROUTES: {missing}"
    stale = [f"{m} {p}" for m, p in ROUTES if (m, p) not in ROUTE_LIST]
    assert not stale, f"ROUTES declares routes the app does not serve: {stale}"


def _admitted(kind: str) -> list[str]:
    return [p for m, p in ROUTE_LIST if (r := declared(m, p)) is not None and not r.public and r.admits(kind)]


def test_declarations_follow_the_policy() -> None:
    """The policy, stated independently of the table: each narrow key stays inside its own family."""
    for path in _admitted("tarx"):
        assert path.startswith("/v1/") or path == "/api/keys", path
    for path in _admitted("compute"):
        assert path.startswith(("/api/compute/", "/v0/")) and not path.startswith("/v0/workspaces"), path
    for path in _admitted("node"):
        assert path.startswith(("/api/compute/nodes/", "/api/compute/jobs/artifacts/presign-")), path
        assert not path.endswith(("/register", "/list")), path
    for method, path in ROUTE_LIST:
        reach = declared(method, path)
        assert reach is not None
        if path.startswith("/api/v1/"):
            assert reach.kinds == {"jwt", "platform"}, path
        if not reach.node_only:  # the user's own credentials reach everything else, by role
            assert reach.admits("jwt") and reach.admits("platform"), path


# ---- one runtime, a project with one user per role, each holding every kind of credential ---------------------

@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module({"TARX_RATE_LIMITS": "false", "TARX_LOCAL_NODE": "false"}, name="kinds")


@pytest.fixture(scope="module")
def world(rt: Runtime) -> dict[str, Any]:
    owner = bearer(owner_key(rt))
    c = httpx.Client(base_url=rt.url, timeout=30)
    project = c.post("/api/v1/projects", json={"name": "Kinds"}, headers=owner).json()
    ctx = {"X-Project-ID": project["id"]}
    creds: dict[tuple[str, str], dict[str, str]] = {}
    for role in ROLES:
        email = "owner@localhost" if role == "owner" else f"{role}@kinds.example"
        if role != "owner":
            r = c.post(f"/api/v1/projects/{project['id']}/members", json={"email": email, "role": role},
                       headers=owner)
            assert r.status_code == 201, r.text
        r = c.post("/api/account/entitlements", json={"entitlement": "supercomputer", "email": email}, headers=owner)
        assert r.status_code == 200, r.text
        session = bearer(sign_in(rt, email))
        platform = bearer(c.post("/api/v1/platform-keys", json={"name": "kinds"}, headers=session).json()["key"])
        held = {"jwt": session, "platform": platform}
        for kind, scope in (("tarx_dev", "developer_runtime"), ("tarx_super", "supercomputer")):
            r = c.post("/api/keys", json={"name": kind, "scope": scope}, headers=platform)
            assert r.status_code == 201, r.text
            held[kind] = bearer(r.json()["key"])
        if role != "member":
            r = c.post("/api/compute/api-keys/create", json={"name": "kinds", "maxJobsPerHour": 1},
                       headers={**platform, **ctx})
            assert r.status_code == 200, r.text
            held["compute"] = bearer(r.json()["payload"]["key"])
            r = c.post("/api/compute/nodes/register", json={"name": f"node-{role}"}, headers={**platform, **ctx})
            assert r.status_code == 200, r.text
            held["node"] = bearer(r.json()["payload"]["nodeKey"])
        for kind, headers in held.items():
            creds[(role, kind)] = {**headers, **ctx}
    return {"project": project, "creds": creds, "owner": owner}


def _fill(path: str, project_id: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: project_id if m.group(1) == "project_id" else f"probe_{m.group(1)}", path)


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(body.get("detail") or body.get("message") or "")


def refused_by_reach(r: httpx.Response) -> bool:
    message = _message(r)
    return (r.status_code == 403 and "cannot call" in message) or (
        r.status_code == 401 and "needs a node key" in message)


def assert_family_envelope(path: str, r: httpx.Response) -> None:
    body = r.json()
    fam = family(path)
    if fam is Family.platform:
        assert body["status"] == r.status_code and body["error_code"] in ("PERMISSION_DENIED", "AUTH_REQUIRED")
    elif fam.compute_envelope:
        assert body["status"] in ("FORBIDDEN", "UNAUTHORIZED") and body["payload"] is None
        if fam is Family.compute_v0:
            assert r.headers["x-compute-api-version"] == "v0"
    else:
        assert body["error"]["type"] in ("permission_error", "authentication_error")


def call(c: httpx.Client, method: str, path: str, headers: dict[str, str], project_id: str) -> httpx.Response:
    body = PROBE if method in ("POST", "PUT", "PATCH", "DELETE") else None
    return c.request(method, _fill(path, project_id), headers=headers, json=body)


@pytest.mark.parametrize("role,kind", HELD)
def test_route_matrix(rt: Runtime, world: dict, role: str, kind: str) -> None:
    headers = world["creds"][(role, kind)]
    project_id = world["project"]["id"]
    wrong = []
    with httpx.Client(base_url=rt.url, timeout=15) as c:
        for method, path in ROUTE_LIST:
            reach = declared(method, path)
            assert reach is not None, f"{method} {path} has no declared reach"
            r = call(c, method, path, headers, project_id)
            if reach.admits(VIA[kind]):
                if refused_by_reach(r):
                    wrong.append(f"{method} {path}: refused ({r.status_code} {_message(r)})")
            elif not refused_by_reach(r):
                wrong.append(f"{method} {path}: admitted, answered {r.status_code} {r.text[:120]}")
            else:
                assert_family_envelope(path, r)
    assert not wrong, f"{kind} of a project {role}:\n" + "\n".join(wrong)


# ---- the measured escalations, each as it was attempted ---------------------------------------------------------

def test_a_node_key_reaches_only_the_node_plane(rt: Runtime, world: dict) -> None:
    node = world["creds"][("owner", "node")]
    pid = world["project"]["id"]
    owner = world["owner"]
    attempts = [
        ("POST", "/api/v1/platform-keys", {"name": "escalated"}),  # mints a platform key for the owner
        ("POST", "/api/keys", {"name": "escalated"}),  # mints a TARX key for the owner
        ("GET", "/api/v1/llm-keys", None),  # lists the project's BYOK keys
        ("GET", f"/v0/workspaces/{pid}/audit", None),  # reads the audit log
        ("PUT", "/api/planes/supercomputer", {"url": "http://127.0.0.1:9"}),  # repoints the hosted plane
        ("POST", "/api/account/entitlements", {"entitlement": "supercomputer", "email": "member@kinds.example"}),
        ("POST", "/api/compute/nodes/register", {"name": "spawned"}),  # mints another node key
        ("POST", "/api/compute/api-keys/create", {"name": "escalated"}),
    ]
    before = len(httpx.get(rt.url + "/api/v1/platform-keys", headers=owner, params={"per_page": 200}).json()["items"])
    for method, path, body in attempts:
        r = httpx.request(method, rt.url + path, headers=node, json=body)
        assert r.status_code == 403 and "node key" in _message(r), (path, r.text)
    after = httpx.get(rt.url + "/api/v1/platform-keys", headers=owner, params={"per_page": 200}).json()["items"]
    assert len(after) == before
    assert "escalated" not in [k["name"] for k in httpx.get(rt.url + "/api/keys", headers=owner).json()["data"]]
    # Its own plane still works.
    assert httpx.post(rt.url + "/api/compute/nodes/heartbeat", headers=node, json={}).status_code == 200
    # The refusals are on the workspace's audit log.
    audit = httpx.get(rt.url + f"/v0/workspaces/{pid}/audit", headers=owner,
                      params={"action": "key.out_of_reach"}).json()["items"]
    mine = [a for a in audit if a["detail"]["kind"] == "node" and a["outcome"] == "denied"]
    assert {"/api/v1/platform-keys", "/api/planes/supercomputer"} <= {a["detail"]["path"] for a in mine}


def test_a_compute_key_mints_nothing_beyond_itself(rt: Runtime, world: dict) -> None:
    compute = world["creds"][("owner", "compute")]  # maxJobsPerHour 1
    pid = world["project"]["id"]
    for method, path, body in (
        ("POST", "/api/v1/platform-keys", {"name": "escalated"}),
        ("POST", "/api/keys", {"name": "escalated"}),
        ("POST", f"/api/v1/projects/{pid}/members", {"email": "intruder@kinds.example", "role": "admin"}),
        ("POST", f"/v0/workspaces/{pid}/members", {"email": "intruder@kinds.example", "role": "admin"}),
        ("POST", "/api/v1/projects", {"name": "Escalated"}),
        ("POST", "/v0/workspaces", {"name": "Escalated"}),
        ("GET", f"/v0/workspaces/{pid}/audit", None),
    ):
        r = httpx.request(method, rt.url + path, headers=compute, json=body)
        assert r.status_code == 403 and "compute key" in _message(r), (path, r.text)
    members = httpx.get(rt.url + f"/api/v1/projects/{pid}/members", headers=world["owner"]).json()["items"]
    assert "intruder@kinds.example" not in [m["email"] for m in members]

    create = rt.url + "/api/compute/api-keys/create"
    r = httpx.post(create, headers=compute, json={"name": "unlimited", "maxJobsPerHour": 1000})
    assert r.status_code == 403 and r.json()["status"] == "FORBIDDEN", r.text
    r = httpx.post(create, headers=compute, json={"name": "child"})  # unset: the minter's own limit
    assert r.status_code == 200 and r.json()["payload"]["maxJobsPerHour"] == 1, r.text
    assert r.json()["payload"]["workspaceId"] == pid
    r = httpx.post(create, headers=compute, json={"name": "typed", "maxConcurrentJobs": 1,
                                                  "allowedJobTypes": ["COMMAND"]})
    assert r.status_code == 200 and r.json()["payload"]["maxConcurrentJobs"] == 1, r.text
    typed = {**bearer(r.json()["payload"]["key"]), "X-Project-ID": pid}
    for wider in ({"maxConcurrentJobs": 2}, {"allowedJobTypes": ["COMMAND", "GPU_TRAINING"]}):
        r = httpx.post(create, headers=typed, json={"name": "wider", **wider})
        assert r.status_code == 403, (wider, r.text)
    r = httpx.post(create, headers=typed, json={"name": "same"})
    assert r.json()["payload"]["allowedJobTypes"] == ["COMMAND"] and r.json()["payload"]["maxJobsPerHour"] == 1


def test_a_compute_key_sees_only_its_workspace_keys(rt: Runtime, world: dict) -> None:
    owner = world["owner"]
    other = httpx.post(rt.url + "/api/v1/projects", json={"name": "Elsewhere"}, headers=owner).json()
    foreign = httpx.post(rt.url + "/api/compute/api-keys/create", json={"name": "foreign"},
                         headers={**owner, "X-Project-ID": other["id"]}).json()["payload"]
    compute = world["creds"][("owner", "compute")]
    listed = httpx.post(rt.url + "/api/compute/api-keys/list", headers=compute, json={}).json()["payload"]
    assert listed and foreign["id"] not in [k["id"] for k in listed]
    assert {k["workspaceId"] for k in listed} == {world["project"]["id"]}
    r = httpx.post(rt.url + "/api/compute/api-keys/revoke", headers=compute, json={"id": foreign["id"]})
    assert r.status_code == 404
    r = httpx.post(rt.url + "/api/compute/api-keys/create", headers={**compute, "X-Project-ID": other["id"]},
                   json={"name": "foreign-child"})
    assert r.status_code == 404


def test_a_developer_tarx_key_stays_a_developer_key(rt: Runtime, world: dict) -> None:
    dev = world["creds"][("owner", "tarx_dev")]
    for path in ("/api/v1/projects", "/v0/workspaces"):
        r = httpx.post(rt.url + path, headers=dev, json={"name": "Escalated"})
        assert r.status_code == 403 and "TARX key" in _message(r), (path, r.text)
    r = httpx.post(rt.url + "/api/keys", headers=dev, json={"name": "up", "scope": "supercomputer"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = httpx.post(rt.url + "/api/keys", headers=dev, json={"name": "same"})
    assert r.status_code == 201 and r.json()["scope"] == "developer_runtime"
    r = httpx.post(rt.url + "/api/keys", headers=world["creds"][("owner", "tarx_super")],
                   json={"name": "down", "scope": "developer_runtime"})
    assert r.status_code == 201
    assert httpx.get(rt.url + "/api/account", headers=dev).status_code == 403
    assert httpx.get(rt.url + "/v1/usage", headers=dev).status_code == 200


def test_a_key_never_outlives_the_key_that_mints_it(rt: Runtime, world: dict) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    r = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "short", "expires_at": soon},
                   headers=world["owner"])
    short = bearer(r.json()["key"])
    child = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "child"}, headers=short).json()
    assert child["expires_at"] == soon
    r = httpx.post(rt.url + "/api/keys", json={"name": "long", "expires_at": later}, headers=short)
    assert r.status_code == 403


def test_within_its_reach_a_key_still_answers_to_its_users_role(rt: Runtime, world: dict) -> None:
    """PATCH /v0/billing/limits is in a compute key's reach and needs the admin role."""
    for role, expected in (("owner", 200), ("admin", 200), ("editor", 403)):
        r = httpx.patch(rt.url + "/v0/billing/limits", headers=world["creds"][(role, "compute")], json={})
        assert r.status_code == expected, (role, r.text)
        assert not refused_by_reach(r)
