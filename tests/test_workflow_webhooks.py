"""Inbound workflow webhooks (issue 14): setup answers the URL and a secret once; a delivery signed the Standard
Webhooks way starts an execution with its JSON body as input; a bad, missing, malformed, stale or replayed
signature is a 401 in the platform envelope and starts nothing; the secret is not in the SQLite file in plain text.

Signatures are computed here by hand (HMAC-SHA256 over `id.timestamp.body` with the base64 key after `whsec_`), not
with the library the runtime verifies with, so the wire format itself is what is tested."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from typing import Any

import httpx

from conftest import Runtime
from support.identity import owner_in_default_project
from support.workflows import create_graph, polling_owner, polling_rt, wait  # noqa: F401 (fixtures)
from support.workflows import executions as executions_of

GRAPH = {
    "nodes": [
        {"id": "start", "type": "trigger", "config": {"trigger_type": "webhook"}},
        {"id": "shape", "type": "transformNode", "config": {"template": "order {{ input.order }} for {{ input.who }}"}},
        {"id": "out", "type": "outputNode", "config": {"template": "{{ prev }}"}},
    ],
    "edges": [{"source": "start", "target": "shape"}, {"source": "shape", "target": "out"}],
}


def make_workflow(rt: Runtime, owner: dict[str, str], name: str = "hooked") -> str:
    return create_graph(rt, owner, GRAPH, name)


def setup(rt: Runtime, owner: dict[str, str], workflow_id: str) -> dict[str, Any]:
    r = httpx.post(f"{rt.url}/api/v1/webhooks/setup/{workflow_id}", headers=owner)
    assert r.status_code == 201, r.text
    return r.json()


def signed(secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "content-type": "application/json"}


def deliver(hook: dict[str, Any], body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(hook["url"], content=body, headers=headers)  # no key: the signature is the authorization


def assert_refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["status"] == 401 and body["error_code"] == "AUTH_REQUIRED", body
    assert words in body["detail"], body


def test_setup_answers_the_url_and_a_secret_once(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    first = setup(rt, owner, workflow_id)
    assert first["url"] == f"{rt.url}/api/v1/webhooks/{workflow_id}" and first["workflow_id"] == workflow_id
    assert first["secret"].startswith("whsec_") and len(base64.b64decode(first["secret"][6:])) == 32
    # nothing else shows it again: not the workflow, not its schedule
    assert first["secret"] not in httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}", headers=owner).text
    # setting up again rotates: the old secret stops working at once
    second = setup(rt, owner, workflow_id)
    assert second["secret"] != first["secret"]
    body = b'{"order": 1, "who": "old"}'
    assert_refused(deliver(second, body, signed(first["secret"], body)), "No matching signature")
    assert executions_of(rt, owner, workflow_id) == []
    # an unknown workflow, a missing key, a member's role are the API's usual answers
    assert httpx.post(f"{rt.url}/api/v1/webhooks/setup/wf_nope", headers=owner).status_code == 404
    r = httpx.post(f"{rt.url}/api/v1/webhooks/setup/{workflow_id}")
    assert r.status_code == 401 and r.json()["error_code"] == "AUTH_REQUIRED"
    r = httpx.post(f"{rt.url}/api/v1/webhooks/wf_nope", content=body, headers=signed(second["secret"], body))
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"


def test_a_signed_delivery_starts_an_execution_with_the_body(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    hook = setup(rt, owner, workflow_id)
    body = json.dumps({"order": 42, "who": "ada"}).encode()
    r = deliver(hook, body, signed(hook["secret"], body))
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    ex = wait(rt, owner, r.json()["execution_id"], timeout=60)
    assert ex["status"] == "completed", ex
    assert ex["trigger"] == "webhook" and ex["workflow_id"] == workflow_id
    assert ex["input"] == {"order": 42, "who": "ada"}
    assert ex["output"] == "order 42 for ada"
    # a second, distinct delivery runs too (the replay defence is per message id)
    body2 = json.dumps({"order": 43, "who": "bob"}).encode()
    r2 = deliver(hook, body2, signed(hook["secret"], body2))
    assert r2.status_code == 202, r2.text
    assert wait(rt, owner, r2.json()["execution_id"], timeout=60)["output"] == "order 43 for bob"
    assert len(executions_of(rt, owner, workflow_id)) == 2


def test_bad_stale_and_replayed_deliveries_start_nothing(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    hook = setup(rt, owner, workflow_id)
    secret = hook["secret"]
    body = b'{"order": 7, "who": "eve"}'
    good = signed(secret, body)

    # the body changed after signing; the id changed; a signature with another key
    assert_refused(deliver(hook, b'{"order": 8, "who": "eve"}', good), "No matching signature")
    assert_refused(deliver(hook, body, {**good, "webhook-id": "msg_other"}), "No matching signature")
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert_refused(deliver(hook, body, signed(other, body)), "No matching signature")
    # missing and malformed headers
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert_refused(deliver(hook, body, {k: v for k, v in good.items() if k != name}), "Missing required headers")
    assert_refused(deliver(hook, body, {**good, "webhook-signature": "garbage"}), "malformed")
    assert_refused(deliver(hook, body, {**good, "webhook-signature": good["webhook-signature"] + " garbage"}),
                   "malformed")
    assert_refused(deliver(hook, body, {**good, "webhook-signature": "v1,!!notbase64!!"}), "")
    assert_refused(deliver(hook, body, {**good, "webhook-timestamp": "yesterday"}), "Invalid Signature Headers")
    # outside the 5-minute tolerance, either way, even when correctly signed
    now = int(time.time())
    assert_refused(deliver(hook, body, signed(secret, body, timestamp=now - 310)), "too old")
    assert_refused(deliver(hook, body, signed(secret, body, timestamp=now + 310)), "too new")
    # inside it, fine; the same message again is a replay
    fresh = signed(secret, body, timestamp=now - 240)
    accepted = deliver(hook, body, fresh)
    assert accepted.status_code == 202, accepted.text
    assert_refused(deliver(hook, body, fresh), "replay")
    # a signed body that is not JSON is refused as such, and nothing ran for it either
    for raw in (b"not json", b'{"who": "\xff"}'):  # the second is not UTF-8 either: verified byte for byte
        r = deliver(hook, raw, signed(secret, raw))
        assert r.status_code == 422 and r.json()["error_code"] == "VALIDATION_ERROR", r.text

    assert [e["id"] for e in executions_of(rt, owner, workflow_id)] == [accepted.json()["execution_id"]]


def test_the_secret_is_not_stored_in_plain_text(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    secret = setup(rt, owner, workflow_id)["secret"]
    raw_key = base64.b64decode(secret[6:])
    db = rt.data_dir / "tarx.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        sealed = conn.execute("SELECT secret FROM workflow_webhooks WHERE workflow_id = ?", (workflow_id,)).fetchone()
    assert sealed is not None and isinstance(sealed[0], bytes) and len(sealed[0]) > 40
    files = [p for p in db.parent.iterdir() if p.name.startswith("tarx.db")]
    for path in files:
        data = path.read_bytes()
        for needle in (secret.encode(), secret[6:].encode(), raw_key):
            assert needle not in data, f"{path.name} holds the secret"


def test_a_deleted_workflow_takes_its_webhook_along(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    hook = setup(rt, owner, workflow_id)
    assert httpx.delete(f"{rt.url}/api/v1/workflows/{workflow_id}", headers=owner).status_code == 204
    body = b"{}"
    r = deliver(hook, body, signed(hook["secret"], body))
    assert r.status_code == 404, r.text


def test_a_delivery_that_cannot_start_may_be_retried_with_its_id(make_runtime: Any) -> None:
    """Over the project's executions-per-hour limit the delivery is a 429 and its id is not used up: Standard
    Webhooks senders retry with the same id, and that retry must meet the limit again, not the replay check."""
    rt = make_runtime({"TARX_WORKFLOW_EXECUTIONS_PER_HOUR": "1"}, name="limited")
    owner = owner_in_default_project(rt)
    workflow_id = make_workflow(rt, owner)
    hook = setup(rt, owner, workflow_id)
    body = b'{"order": 1, "who": "first"}'
    first = deliver(hook, body, signed(hook["secret"], body))
    assert first.status_code == 202, first.text
    retried = signed(hook["secret"], body, msg_id="msg_retried")
    for _ in range(2):
        r = deliver(hook, body, retried)
        assert r.status_code == 429 and r.json()["error_code"] == "RATE_LIMIT_EXCEEDED", r.text
    assert len(executions_of(rt, owner, workflow_id)) == 1
