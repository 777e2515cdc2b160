"""Outbound webhooks against a local receiver: Standard Webhooks signatures, rotation, retries on the Standard
Webhooks schedule, 410; and the WAL checkpoints that keep retried deliveries from growing the database's log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import Runtime, free_port
from support.compute import FAST, Api, wait_until


class Receiver:
    """Records every delivery; answers with the scripted statuses first, then 200."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                outer.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                                       "at": time.monotonic()})
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, kind: str | None = None) -> list[dict]:
        out = [json.loads(r["body"]) for r in self.received]
        return [e for e in out if kind is None or e["type"] == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    # The runtime's own local node runs the jobs here.
    return make_runtime_module({**FAST, "TARX_LOCAL_NODE": "true"}, name="hooks")


def verify(secret: str, delivery: dict) -> dict:
    return Webhook(secret).verify(delivery["body"], delivery["headers"])


def test_signed_events_for_a_job_lifecycle_with_retry(rt: Runtime, receiver: Receiver) -> None:
    api = Api(rt)
    receiver.script = [(500, {})]  # the first delivery fails and is retried
    hook = api.http.post("/v0/webhooks", json={"url": receiver.url,
                                               "events": ["job.created", "job.transitioned", "job.terminal"]}).json()
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in json.dumps(api.http.get("/v0/webhooks").json())
    job = api.submit("echo hi", {}, env={"TOKEN": "t0k3n"})
    api.wait(job["id"])
    wait_until(lambda: receiver.events("job.terminal") and len(receiver.events("job.created")) == 2, 15)
    for delivery in receiver.received:
        verify(hook["secret"], delivery)
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(delivery["body"], delivery["headers"])
    created = receiver.events("job.created")
    assert created[0]["data"]["id"] == job["id"] and len(created) == 2  # delivered again after the 500
    assert created[0]["data"]["env"] == {"TOKEN": "********"}  # env values are secret: events carry names only
    assert not [r for r in receiver.received if "t0k3n" in r["body"]]
    created_ids = [r["headers"]["webhook-id"] for r in receiver.received if '"job.created"' in r["body"]]
    assert len(set(created_ids)) == 1  # a retry keeps its message id, so receivers can deduplicate
    states = [e["data"]["state"] for e in receiver.events("job.transitioned")]
    assert states == ["ASSIGNED", "RUNNING", "SUCCEEDED"]
    assert receiver.events("job.terminal")[0]["data"]["state"] == "SUCCEEDED"
    deliveries = api.http.get(f"/v0/webhooks/{hook['id']}/deliveries").json()["items"]
    assert all(d["state"] == "delivered" for d in deliveries)
    assert [d["attempts"] for d in deliveries if d["event"] == "job.created"] == [2]
    api.http.delete(f"/v0/webhooks/{hook['id']}")


def test_rotation_signs_with_both_secrets_during_grace(rt: Runtime, receiver: Receiver) -> None:
    api = Api(rt)
    hook = api.http.post("/v0/webhooks", json={"url": receiver.url, "events": ["job.created"]}).json()
    rotated = api.http.post(f"/v0/webhooks/{hook['id']}:rotate-secret").json()
    assert rotated["secret"] != hook["secret"] and rotated["previousSecretValidUntil"]
    api.submit("true", {"test": "rotation-never-runs"})
    wait_until(lambda: receiver.events("job.created"), 15)
    delivery = receiver.received[-1]
    assert len(delivery["headers"]["webhook-signature"].split()) == 2
    verify(hook["secret"], delivery)
    verify(rotated["secret"], delivery)
    api.http.delete(f"/v0/webhooks/{hook['id']}")


def test_retry_after_is_honoured_and_410_disables(rt: Runtime, receiver: Receiver) -> None:
    api = Api(rt)
    receiver.script = [(429, {"Retry-After": "1"})]
    hook = api.http.post("/v0/webhooks", json={"url": receiver.url, "events": ["job.created"]}).json()
    api.submit("true", {"test": "retry-after-never-runs"})
    wait_until(lambda: len(receiver.received) >= 2, 15)
    assert receiver.received[1]["at"] - receiver.received[0]["at"] >= 0.9
    receiver.script = [(410, {})]
    api.submit("true", {"test": "gone-never-runs"})
    wait_until(lambda: api.http.get("/v0/webhooks").json()["items"][-1]["state"] == "disabled", 15)
    count = len(receiver.received)
    api.submit("true", {"test": "after-gone-never-runs"})
    time.sleep(1.0)
    assert len(receiver.received) == count  # a disabled hook gets nothing more
    api.http.delete(f"/v0/webhooks/{hook['id']}")


def test_4xx_is_not_retried_and_webhook_admin_rules(rt: Runtime, receiver: Receiver) -> None:
    api = Api(rt)
    receiver.script = [(400, {})]
    hook = api.http.post("/v0/webhooks", json={"url": receiver.url, "events": ["job.created"]}).json()
    api.submit("true", {"test": "4xx-never-runs"})
    wait_until(lambda: api.http.get(f"/v0/webhooks/{hook['id']}/deliveries").json()["items"]
               and api.http.get(f"/v0/webhooks/{hook['id']}/deliveries").json()["items"][0]["state"] == "failed", 15)
    assert len(receiver.received) == 1
    assert api.http.post("/v0/webhooks", json={"url": "ftp://x", "events": ["job.created"]}).status_code == 400
    assert api.http.post("/v0/webhooks", json={"url": receiver.url, "events": []}).status_code == 400
    assert api.http.delete("/v0/webhooks/wh_missing").status_code == 404


@pytest.fixture(scope="module")
def capped(make_runtime_module) -> Runtime:
    # Four attempts on the schedule sped up 1000 times (waits of 5 ms, 300 ms, 1.8 s); the WAL checkpointed each second.
    return make_runtime_module({**FAST, "TARX_WEBHOOK_MAX_ATTEMPTS": "4", "TARX_WEBHOOK_BACKOFF_SECONDS": "0.005",
                                "TARX_WAL_CHECKPOINT_SECONDS": "1"}, name="capped")


def test_retries_follow_the_schedule_then_the_delivery_fails(capped: Runtime, receiver: Receiver) -> None:
    api = Api(capped)
    receiver.script = [(503, {})] * 10
    live = api.http.post("/v0/webhooks", json={"url": receiver.url, "events": ["job.created"]}).json()
    dead = api.http.post("/v0/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/hook",
                                               "events": ["job.created"]}).json()
    api.submit("true", {"test": "capped-never-runs"})

    def ended(hook: dict) -> list[dict]:
        items = api.http.get(f"/v0/webhooks/{hook['id']}/deliveries").json()["items"]
        return items if items and items[0]["state"] == "failed" else []

    for hook in (dead, live):
        [delivery] = wait_until(lambda h=hook: ended(h), 20)
        assert delivery["attempts"] == 4  # then it gave up
    assert "ConnectError" in ended(dead)[0]["last_error"]
    assert ended(live)[0]["last_status"] == 503
    time.sleep(1.0)
    assert len(receiver.received) == 4  # nothing after the last attempt
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    # 5 s, 5 min, 30 min scaled: the third wait is six times the second, not double it.
    assert gaps[1] >= 0.29 and gaps[2] >= 1.75, gaps
    assert [h["state"] for h in api.http.get("/v0/webhooks").json()["items"]] == ["active", "active"]
    for hook in (live, dead):
        api.http.delete(f"/v0/webhooks/{hook['id']}")


def test_the_wal_is_checkpointed_and_truncated(capped: Runtime) -> None:
    api = Api(capped)
    wal = capped.data_dir / "tarx.db-wal"
    env = {f"V{i}": "x" * 32_000 for i in range(100)}  # about 3 MB a job
    for _ in range(4):
        api.submit("true", {"test": "wal-never-runs"}, env=env)

    def size() -> int:
        return wal.stat().st_size if wal.exists() else 0

    wait_until(lambda: size() < 256 * 1024, 10, lambda: f"{size()} bytes")
