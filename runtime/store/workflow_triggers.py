"""Workflow triggers: cron schedules, inbound webhooks (their sealed secrets) and the message ids already accepted.

Secrets arrive and leave sealed: this module never sees plain text.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow


@dataclass(frozen=True)
class Schedule:
    workflow_id: str
    project_id: str
    enabled: bool
    cron: str
    timezone: str
    actor_user_id: str | None
    last_fired_at: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class InboundHook:
    workflow_id: str
    project_id: str
    secret: bytes  # sealed
    actor_user_id: str | None
    created_at: str


def _schedule(row: Any) -> Schedule:
    data = dict(row)
    data["enabled"] = bool(data["enabled"])
    return Schedule(**data)


# ---- schedules -----------------------------------------------------------------------------------------------------

async def put_schedule(tx: aiosqlite.Connection, workflow_id: str, project_id: str, *, enabled: bool, cron: str,
                       timezone: str, actor_user_id: str | None) -> Schedule:
    now = utcnow()
    await tx.execute(
        "INSERT INTO workflow_schedules (workflow_id, project_id, enabled, cron, timezone, actor_user_id, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (workflow_id) DO UPDATE SET enabled = excluded.enabled, cron = excluded.cron, "
        "timezone = excluded.timezone, actor_user_id = excluded.actor_user_id, updated_at = excluded.updated_at",
        (workflow_id, project_id, int(enabled), cron, timezone, actor_user_id, now, now))
    found = await get_schedule(tx, workflow_id)
    assert found is not None
    return found


async def get_schedule(db: Database | aiosqlite.Connection, workflow_id: str) -> Schedule | None:
    async with connection(db).execute("SELECT * FROM workflow_schedules WHERE workflow_id = ?",
                                      (workflow_id,)) as cur:
        row = await cur.fetchone()
    return _schedule(row) if row else None


async def enabled_schedules(db: Database) -> list[Schedule]:
    rows = await db.fetchall("SELECT * FROM workflow_schedules WHERE enabled = 1 ORDER BY workflow_id")
    return [_schedule(r) for r in rows]


async def mark_fired(tx: aiosqlite.Connection, workflow_id: str, at: str) -> None:
    await tx.execute("UPDATE workflow_schedules SET last_fired_at = ? WHERE workflow_id = ?", (at, workflow_id))


# ---- inbound webhooks ----------------------------------------------------------------------------------------------

async def put_hook(tx: aiosqlite.Connection, workflow_id: str, project_id: str, sealed_secret: bytes,
                   actor_user_id: str | None) -> InboundHook:
    """Set up the workflow's webhook, replacing any earlier secret (setting up again rotates it)."""
    now = utcnow()
    await tx.execute(
        "INSERT INTO workflow_webhooks (workflow_id, project_id, secret, actor_user_id, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workflow_id) DO UPDATE SET secret = excluded.secret, "
        "actor_user_id = excluded.actor_user_id, created_at = excluded.created_at",
        (workflow_id, project_id, sealed_secret, actor_user_id, now))
    return InboundHook(workflow_id, project_id, sealed_secret, actor_user_id, now)


async def get_hook(db: Database | aiosqlite.Connection, workflow_id: str) -> InboundHook | None:
    async with connection(db).execute("SELECT workflow_id, project_id, secret, actor_user_id, created_at "
                                      "FROM workflow_webhooks WHERE workflow_id = ?", (workflow_id,)) as cur:
        row = await cur.fetchone()
    return InboundHook(**dict(row)) if row else None


async def remember_message(tx: aiosqlite.Connection, workflow_id: str, message_id: str, expires_at: str) -> bool:
    """Record an accepted message id; False when it was already there (a replay). Expired ids are dropped first,
    so the table holds only the last few minutes' messages."""
    await tx.execute("DELETE FROM workflow_webhook_messages WHERE expires_at < ?", (utcnow(),))
    try:
        await tx.execute("INSERT INTO workflow_webhook_messages (workflow_id, message_id, expires_at) "
                         "VALUES (?, ?, ?)", (workflow_id, message_id, expires_at))
    except sqlite3.IntegrityError:
        return False
    return True


async def forget_message(tx: aiosqlite.Connection, workflow_id: str, message_id: str) -> None:
    """Let a message id be delivered again: its execution could not start, and the sender retries with the same id."""
    await tx.execute("DELETE FROM workflow_webhook_messages WHERE workflow_id = ? AND message_id = ?",
                     (workflow_id, message_id))
