"""Outbound webhooks signed with the Standard Webhooks scheme, persisted and retried with backoff.

The receiver's answer decides: 2xx delivered; 410 disables the hook; 429, 5xx and network errors are retried
(honouring Retry-After); other 4xx fail for good. After a secret rotation the old and new secrets both sign
during a grace window, so receivers can switch without dropping messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
import httpx
from standardwebhooks.webhooks import Webhook

from runtime.auth.secretbox import SecretBox
from runtime.compute.signals import Signals
from runtime.errors import NotFound
from runtime.store import Database
from runtime.store.db import iso_in, utcnow
from runtime.store.ids import new_id

log = logging.getLogger("tarx.webhooks")

WAKE = "webhooks"
DELIVERY_INSERT = ("INSERT INTO webhook_deliveries (id, webhook_id, event, payload, state, next_attempt_at, "
                   "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def view(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "events": json.loads(row["events"]), "state": row["state"],
            "disabledReason": row["disabled_reason"], "createdAt": row["created_at"]}


class WebhookService:
    def __init__(self, db: Database, box: SecretBox, signals: Signals, *, max_attempts: int = 8,
                 rotation_grace_seconds: float = 86400, base_backoff_seconds: float = 1.0,
                 timeout_seconds: float = 10.0) -> None:
        self.db = db
        self.box = box
        self.signals = signals
        self.max_attempts = max_attempts
        self.rotation_grace = timedelta(seconds=rotation_grace_seconds)
        self.base_backoff = base_backoff_seconds
        self.timeout = timeout_seconds
        self._task: asyncio.Task[None] | None = None
        # Active hooks per project, read on every job event; every change to webhooks goes through this service.
        self._active: dict[str, list[tuple[str, list[str]]]] = {}

    # ---- hooks ----------------------------------------------------------------------------------------------------

    async def create(self, tx: aiosqlite.Connection, project_id: str, url: str, events: list[str]) -> dict[str, Any]:
        secret = new_secret()
        hook_id = new_id("wh")
        await tx.execute("INSERT INTO webhooks (id, project_id, url, events, secret, state, created_at) "
                         "VALUES (?, ?, ?, ?, ?, 'active', ?)",
                         (hook_id, project_id, url, json.dumps(events), self.box.seal(secret), utcnow()))
        async with tx.execute("SELECT * FROM webhooks WHERE id = ?", (hook_id,)) as cur:
            row = await cur.fetchone()
        self._active.pop(project_id, None)
        return {**view(row), "secret": secret}

    async def list(self, project_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT * FROM webhooks WHERE project_id = ? ORDER BY created_at", (project_id,))
        return [view(r) for r in rows]

    async def _get(self, tx: aiosqlite.Connection, project_id: str, hook_id: str) -> Any:
        async with tx.execute("SELECT * FROM webhooks WHERE id = ? AND project_id = ?", (hook_id, project_id)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"Webhook '{hook_id}' was not found.")
        return row

    async def delete(self, tx: aiosqlite.Connection, project_id: str, hook_id: str) -> None:
        await self._get(tx, project_id, hook_id)
        await tx.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))
        self._active.pop(project_id, None)

    async def rotate(self, tx: aiosqlite.Connection, project_id: str, hook_id: str) -> dict[str, Any]:
        row = await self._get(tx, project_id, hook_id)
        secret = new_secret()
        until = iso_in(self.rotation_grace.total_seconds())
        await tx.execute("UPDATE webhooks SET secret = ?, previous_secret = ?, previous_valid_until = ? WHERE id = ?",
                         (self.box.seal(secret), row["secret"], until, hook_id))
        return {**view(row), "secret": secret, "previousSecretValidUntil": until}

    # ---- events ---------------------------------------------------------------------------------------------------

    async def delivery_rows(self, conn: aiosqlite.Connection, project_id: str, event: str, data: dict[str, Any]
                            ) -> list[tuple[str, tuple[Any, ...]]]:
        """Rows queueing `event` for every active hook of the project that wants it (not yet written)."""
        if project_id not in self._active:
            async with conn.execute("SELECT id, events FROM webhooks WHERE project_id = ? AND state = 'active'",
                                    (project_id,)) as cur:
                self._active[project_id] = [(r["id"], json.loads(r["events"])) for r in await cur.fetchall()]
        hooks = [hook_id for hook_id, events in self._active[project_id] if event in events]
        if not hooks:
            return []
        now = utcnow()
        payload = json.dumps({"type": event, "timestamp": now, "data": data}, separators=(",", ":"))
        return [(DELIVERY_INSERT, (new_id("msg"), hook_id, event, payload, now, now)) for hook_id in hooks]

    async def enqueue(self, tx: aiosqlite.Connection, project_id: str, event: str, data: dict[str, Any]) -> int:
        """Queue `event` for every active hook of the project that wants it, in the caller's transaction."""
        rows = await self.delivery_rows(tx, project_id, event, data)
        for sql, params in rows:
            await tx.execute(sql, params)
        return len(rows)

    def wake(self) -> None:
        self.signals.notify(WAKE)

    async def deliveries(self, hook_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall("SELECT id, event, state, attempts, last_status, last_error, created_at, "
                                      "delivered_at FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at",
                                      (hook_id,))
        return [dict(r) for r in rows]

    # ---- the sender -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tarx-webhooks")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
            while True:
                try:
                    sent = await self.send_due(http)
                except Exception:
                    log.exception("webhook sender failed; retrying")
                    sent = 0
                if not sent:
                    await self.signals.wait(WAKE, 0.5)

    def _signatures(self, row: Any, msg_id: str, when: datetime, payload: str) -> str:
        sigs = [Webhook(self.box.open(row["secret"])).sign(msg_id, when, payload)]
        if row["previous_secret"] and row["previous_valid_until"] and row["previous_valid_until"] > utcnow():
            sigs.append(Webhook(self.box.open(row["previous_secret"])).sign(msg_id, when, payload))
        return " ".join(sigs)

    async def send_due(self, http: httpx.AsyncClient) -> int:
        due = await self.db.fetchall(
            "SELECT d.*, w.url, w.secret, w.previous_secret, w.previous_valid_until, w.state AS hook_state "
            "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.state = 'pending' AND d.next_attempt_at <= ? ORDER BY d.rowid LIMIT 20", (utcnow(),))
        for d in due:
            if d["hook_state"] != "active":
                await self.db.execute("UPDATE webhook_deliveries SET state = 'dropped' WHERE id = ?", (d["id"],))
                continue
            await self._attempt(http, d)
        return len(due)

    async def _attempt(self, http: httpx.AsyncClient, d: Any) -> None:
        when = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": d["id"],
                   "webhook-timestamp": str(int(when.timestamp())),
                   "webhook-signature": self._signatures(d, d["id"], when, d["payload"]),
                   "user-agent": "tarx-webhooks"}
        status, error, retry_after = None, None, None
        try:
            r = await http.post(d["url"], content=d["payload"], headers=headers)
            status = r.status_code
            retry_after = _retry_after(r.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = d["attempts"] + 1
        async with self.db.transaction() as tx:
            if status is not None and 200 <= status < 300:
                await tx.execute("UPDATE webhook_deliveries SET state = 'delivered', attempts = ?, last_status = ?, "
                                 "delivered_at = ? WHERE id = ?", (attempts, status, utcnow(), d["id"]))
                return
            if status == 410:  # Gone: the receiver asks us to stop
                await tx.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?, last_status = ? "
                                 "WHERE id = ?", (attempts, status, d["id"]))
                await tx.execute("UPDATE webhooks SET state = 'disabled', disabled_reason = 'receiver answered 410' "
                                 "WHERE id = ?", (d["webhook_id"],))
                self._active.clear()
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempts >= self.max_attempts:
                await tx.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?, last_status = ?, "
                                 "last_error = ? WHERE id = ?", (attempts, status, error, d["id"]))
                return
            delay = retry_after if retry_after is not None else self.base_backoff * 2 ** (attempts - 1)
            await tx.execute("UPDATE webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?, "
                             "next_attempt_at = ? WHERE id = ?",
                             (attempts, status, error, iso_in(delay), d["id"]))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
