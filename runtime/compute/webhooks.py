"""Outbound webhooks signed with the Standard Webhooks scheme, persisted and retried with backoff.

The receiver's answer decides: 2xx delivered; 410 disables the hook; 429, 5xx and network errors are retried on
Standard Webhooks' schedule (honouring Retry-After) until the attempts run out, then the delivery fails; other 4xx
fail for good. After a secret rotation the old and new secrets both sign during a grace window, so receivers can
switch without dropping messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
import httpx
from standardwebhooks.webhooks import Webhook

from runtime.auth.access import ADMIN, READ, ProjectContext, require
from runtime.auth.secretbox import SecretBox
from runtime.compute.signals import Signals
from runtime.errors import NotFound
from runtime.metrics import DETACHED, Metrics
from runtime.store import Database, audit
from runtime.store import webhooks as hook_store
from runtime.store.batch import Rows, write_rows
from runtime.store.db import iso_in, utcnow
from runtime.store.ids import new_id
from runtime.store.webhooks import Delivery, Hook

log = logging.getLogger("tarx.webhooks")

WAKE = "webhooks"

# Standard Webhooks' retry schedule: the first attempt at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
# 10 h; the eighth attempt is the last (`webhook_max_attempts`). `webhook_backoff_seconds` is the first wait (5 by
# default) and later waits keep the schedule's proportions, so a small value speeds the whole schedule up.
RETRY_SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


def retry_delay(attempts: int, first_wait: float) -> float:
    """Seconds to wait after failed attempt number `attempts` (1-based); past the schedule, its last wait."""
    return first_wait * RETRY_SCHEDULE[min(max(attempts, 1), len(RETRY_SCHEDULE)) - 1] / RETRY_SCHEDULE[0]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def view(hook: Hook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "events": hook.events, "state": hook.state,
            "disabledReason": hook.disabled_reason, "createdAt": hook.created_at}


class WebhookService:
    metrics: Metrics = DETACHED  # the app's metrics (runtime/metrics.py); Services sets it

    def __init__(self, db: Database, box: SecretBox, signals: Signals, *, max_attempts: int = 8,
                 rotation_grace_seconds: float = 86400, base_backoff_seconds: float = 5.0,
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

    async def create(self, ctx: ProjectContext, url: str, events: list[str]) -> dict[str, Any]:
        """A new hook; its signing secret is in the answer, and only there."""
        await require(self.db, ctx, ADMIN, "webhook.create")
        secret = new_secret()
        project_id = ctx.project.id
        try:
            async with self.db.transaction() as tx:
                hook = await hook_store.insert(tx, new_id("wh"), project_id, url, events, self.box.seal(secret))
                await audit.write(tx, ctx.principal.actor, "webhook.create", target=hook.id, project_id=project_id,
                                  detail={"url": url, "events": events})
        finally:
            self._active.pop(project_id, None)
        return {**view(hook), "secret": secret}

    async def list(self, ctx: ProjectContext) -> list[dict[str, Any]]:
        await require(self.db, ctx, READ, "webhook.list")
        return [view(h) for h in await hook_store.list_for_project(self.db, ctx.project.id)]

    async def _get(self, conn: Database | aiosqlite.Connection, project_id: str, hook_id: str) -> Hook:
        hook = await hook_store.get(conn, project_id, hook_id)
        if hook is None:
            raise NotFound(f"Webhook '{hook_id}' was not found.")
        return hook

    async def delete(self, ctx: ProjectContext, hook_id: str) -> None:
        await require(self.db, ctx, ADMIN, "webhook.delete")
        project_id = ctx.project.id
        try:
            async with self.db.transaction() as tx:
                await self._get(tx, project_id, hook_id)
                await hook_store.delete(tx, hook_id)
                await audit.write(tx, ctx.principal.actor, "webhook.delete", target=hook_id, project_id=project_id)
        finally:
            self._active.pop(project_id, None)

    async def rotate(self, ctx: ProjectContext, hook_id: str) -> dict[str, Any]:
        """A new secret; the old one keeps signing too until the grace window ends."""
        await require(self.db, ctx, ADMIN, "webhook.rotate_secret")
        project_id = ctx.project.id
        secret = new_secret()
        until = iso_in(self.rotation_grace.total_seconds())
        async with self.db.transaction() as tx:
            hook = await self._get(tx, project_id, hook_id)
            await hook_store.set_secret(tx, hook_id, self.box.seal(secret), hook.secret, until)
            await audit.write(tx, ctx.principal.actor, "webhook.rotate_secret", target=hook_id,
                              project_id=project_id)
        return {**view(hook), "secret": secret, "previousSecretValidUntil": until}

    async def deliveries(self, ctx: ProjectContext, hook_id: str) -> list[dict[str, Any]]:
        await require(self.db, ctx, ADMIN, "webhook.read")
        await self._get(self.db, ctx.project.id, hook_id)
        return await hook_store.deliveries(self.db, hook_id)

    # ---- events ---------------------------------------------------------------------------------------------------

    async def delivery_rows(self, conn: aiosqlite.Connection, project_id: str, event: str, data: dict[str, Any]
                            ) -> Rows:
        """Rows queueing `event` for every active hook of the project that wants it (not yet written)."""
        if project_id not in self._active:
            self._active[project_id] = await hook_store.active_for_project(conn, project_id)
        hooks = [hook_id for hook_id, events in self._active[project_id] if event in events]
        if not hooks:
            return []
        now = utcnow()
        payload = json.dumps({"type": event, "timestamp": now, "data": data}, separators=(",", ":"))
        return [hook_store.delivery_row(new_id("msg"), hook_id, event, payload, now) for hook_id in hooks]

    async def enqueue(self, tx: aiosqlite.Connection, project_id: str, event: str, data: dict[str, Any]) -> int:
        """Queue `event` for every active hook of the project that wants it, in the caller's transaction."""
        rows = await self.delivery_rows(tx, project_id, event, data)
        await write_rows(tx, rows)
        return len(rows)

    def wake(self) -> None:
        self.signals.notify(WAKE)

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

    def _signatures(self, d: Delivery, when: datetime) -> str:
        sigs = [Webhook(self.box.open(d.secret)).sign(d.id, when, d.payload)]
        if d.previous_secret and d.previous_valid_until and d.previous_valid_until > utcnow():
            sigs.append(Webhook(self.box.open(d.previous_secret)).sign(d.id, when, d.payload))
        return " ".join(sigs)

    async def send_due(self, http: httpx.AsyncClient) -> int:
        due = await hook_store.due(self.db, utcnow(), 20)
        for d in due:
            if d.hook_state != "active":
                await hook_store.drop(self.db, d.id)
                continue
            await self._attempt(http, d)
        return len(due)

    async def _attempt(self, http: httpx.AsyncClient, d: Delivery) -> None:
        when = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": d.id,
                   "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": self._signatures(d, when),
                   "user-agent": "tarx-webhooks"}
        status, error, retry_after = None, None, None
        try:
            r = await http.post(d.url, content=d.payload, headers=headers)
            status = r.status_code
            retry_after = _retry_after(r.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = d.attempts + 1
        async with self.db.transaction() as tx:
            if status is not None and 200 <= status < 300:
                await hook_store.delivered(tx, d.id, attempts, status)
                return
            self.metrics.webhook_failed()
            if status == 410:  # Gone: the receiver asks us to stop
                await hook_store.gone(tx, d, attempts, status, "receiver answered 410")
                self._active.clear()
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempts >= self.max_attempts:
                await hook_store.failed(tx, d.id, attempts, status, error)
                return
            delay = retry_delay(attempts, self.base_backoff)
            if retry_after is not None:  # the receiver's wish, up to the schedule's longest wait
                delay = min(retry_after, retry_delay(len(RETRY_SCHEDULE), self.base_backoff))
            await hook_store.retry_at(tx, d.id, attempts, status, error, iso_in(delay))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date, or junk: the schedule decides
    return max(seconds, 0.0) if math.isfinite(seconds) else None
