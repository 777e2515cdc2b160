"""Outbound webhooks and their deliveries. Secrets arrive and leave sealed: this module never sees plain text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow

DELIVERY_INSERT = ("INSERT INTO webhook_deliveries (id, webhook_id, event, payload, state, next_attempt_at, "
                   "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)")


@dataclass
class Hook:
    id: str
    project_id: str
    url: str
    events: list[str]
    secret: bytes  # sealed
    previous_secret: bytes | None  # sealed; signs too until previous_valid_until
    previous_valid_until: str | None
    state: str  # active | disabled
    disabled_reason: str | None
    created_at: str


@dataclass
class Delivery:
    """A pending delivery with what sending it needs from its hook."""

    id: str
    webhook_id: str
    event: str
    payload: str
    attempts: int
    url: str
    secret: bytes
    previous_secret: bytes | None
    previous_valid_until: str | None
    hook_state: str


def _hook(row: Any) -> Hook:
    data = dict(row)
    data["events"] = json.loads(data["events"])
    return Hook(**data)


# ---- hooks ---------------------------------------------------------------------------------------------------------

async def insert(tx: aiosqlite.Connection, hook_id: str, project_id: str, url: str, events: list[str],
                 sealed_secret: bytes) -> Hook:
    now = utcnow()
    await tx.execute("INSERT INTO webhooks (id, project_id, url, events, secret, state, created_at) "
                     "VALUES (?, ?, ?, ?, ?, 'active', ?)", (hook_id, project_id, url, json.dumps(events),
                                                            sealed_secret, now))
    return Hook(hook_id, project_id, url, events, sealed_secret, None, None, "active", None, now)


async def get(db: Database | aiosqlite.Connection, project_id: str, hook_id: str) -> Hook | None:
    async with connection(db).execute("SELECT * FROM webhooks WHERE id = ? AND project_id = ?",
                                      (hook_id, project_id)) as cur:
        row = await cur.fetchone()
    return _hook(row) if row else None


async def list_for_project(db: Database, project_id: str) -> list[Hook]:
    rows = await db.fetchall("SELECT * FROM webhooks WHERE project_id = ? ORDER BY created_at", (project_id,))
    return [_hook(r) for r in rows]


async def active_for_project(conn: aiosqlite.Connection, project_id: str) -> list[tuple[str, list[str]]]:
    """(hook id, events it wants) for every active hook of the project."""
    async with conn.execute("SELECT id, events FROM webhooks WHERE project_id = ? AND state = 'active'",
                            (project_id,)) as cur:
        return [(r["id"], json.loads(r["events"])) for r in await cur.fetchall()]


async def delete(tx: aiosqlite.Connection, hook_id: str) -> None:
    await tx.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))


async def set_secret(tx: aiosqlite.Connection, hook_id: str, sealed_secret: bytes, previous: bytes,
                     previous_valid_until: str) -> None:
    await tx.execute("UPDATE webhooks SET secret = ?, previous_secret = ?, previous_valid_until = ? WHERE id = ?",
                     (sealed_secret, previous, previous_valid_until, hook_id))


# ---- deliveries ----------------------------------------------------------------------------------------------------

def delivery_row(delivery_id: str, hook_id: str, event: str, payload: str, now: str) -> tuple[str, tuple[Any, ...]]:
    """A pending delivery, due now, as (sql, parameters) for callers that batch their writes."""
    return DELIVERY_INSERT, (delivery_id, hook_id, event, payload, now, now)


async def deliveries(db: Database, hook_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT id, event, state, attempts, last_status, last_error, created_at, "
                             "delivered_at FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_at",
                             (hook_id,))
    return [dict(r) for r in rows]


async def due(db: Database, now: str, limit: int) -> list[Delivery]:
    """Pending deliveries whose time has come, oldest first."""
    rows = await db.fetchall(
        "SELECT d.id, d.webhook_id, d.event, d.payload, d.attempts, w.url, w.secret, w.previous_secret, "
        "w.previous_valid_until, w.state AS hook_state "
        "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        "WHERE d.state = 'pending' AND d.next_attempt_at <= ? ORDER BY d.rowid LIMIT ?", (now, limit))
    return [Delivery(**dict(r)) for r in rows]


async def drop(db: Database, delivery_id: str) -> None:
    await db.execute("UPDATE webhook_deliveries SET state = 'dropped' WHERE id = ?", (delivery_id,))


async def delivered(tx: aiosqlite.Connection, delivery_id: str, attempts: int, status: int) -> None:
    await tx.execute("UPDATE webhook_deliveries SET state = 'delivered', attempts = ?, last_status = ?, "
                     "delivered_at = ? WHERE id = ?", (attempts, status, utcnow(), delivery_id))


async def failed(tx: aiosqlite.Connection, delivery_id: str, attempts: int, status: int | None,
                 error: str | None) -> None:
    await tx.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?, last_status = ?, "
                     "last_error = ? WHERE id = ?", (attempts, status, error, delivery_id))


async def gone(tx: aiosqlite.Connection, delivery: Delivery, attempts: int, status: int, reason: str) -> None:
    """The receiver asked us to stop: this delivery fails and its hook is disabled."""
    await tx.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?, last_status = ? WHERE id = ?",
                     (attempts, status, delivery.id))
    await tx.execute("UPDATE webhooks SET state = 'disabled', disabled_reason = ? WHERE id = ?",
                     (reason, delivery.webhook_id))


async def retry_at(tx: aiosqlite.Connection, delivery_id: str, attempts: int, status: int | None, error: str | None,
                   when: str) -> None:
    await tx.execute("UPDATE webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?, "
                     "next_attempt_at = ? WHERE id = ?", (attempts, status, error, when, delivery_id))
