"""Keys of every kind in one table, stored as hashes with a display prefix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, utcnow
from runtime.store.ids import new_id


@dataclass
class ApiKey:
    id: str
    kind: str
    user_id: str
    project_id: str | None
    name: str
    scope: str | None
    display_prefix: str
    quotas: dict[str, Any] | None
    subject_id: str | None  # what the key stands for beyond its user (a node id, for node keys)
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "user_id"}


def _key(row: Any) -> ApiKey:
    data = {k: row[k] for k in row.keys() if k != "key_hash"}
    data["quotas"] = json.loads(data["quotas"]) if data["quotas"] else None
    return ApiKey(**data)


async def insert(tx: aiosqlite.Connection, *, kind: str, user_id: str, name: str, key_hash: str,
                 display_prefix: str, project_id: str | None = None, scope: str | None = None,
                 quotas: dict[str, Any] | None = None, subject_id: str | None = None,
                 expires_at: str | None = None) -> ApiKey:
    key = ApiKey(new_id("key"), kind, user_id, project_id, name, scope, display_prefix, quotas, subject_id,
                 utcnow(), None, expires_at, None)
    await tx.execute(
        "INSERT INTO api_keys (id, kind, user_id, project_id, name, scope, display_prefix, key_hash, quotas, "
        "subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key.id, kind, user_id, project_id, name, scope, display_prefix, key_hash,
         json.dumps(quotas) if quotas else None, subject_id, key.created_at, expires_at))
    return key


async def by_hash(db: Database, key_hash: str) -> ApiKey | None:
    row = await db.fetchone("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))
    return _key(row) if row else None


async def get(db: Database, key_id: str) -> ApiKey | None:
    row = await db.fetchone("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    return _key(row) if row else None


async def list_for(db: Database, user_id: str, kinds: tuple[str, ...], project_id: str | None = None
                   ) -> list[ApiKey]:
    """A user's keys of these kinds, oldest first; only one workspace's when `project_id` is given."""
    marks = ", ".join("?" for _ in kinds)
    where, params = f"user_id = ? AND kind IN ({marks})", [user_id, *kinds]
    if project_id is not None:
        where += " AND project_id = ?"
        params.append(project_id)
    rows = await db.fetchall(f"SELECT * FROM api_keys WHERE {where} ORDER BY created_at", params)
    return [_key(r) for r in rows]


async def revoke(tx: aiosqlite.Connection, key_id: str) -> None:
    await tx.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (utcnow(), key_id))


async def revoke_node_keys(tx: aiosqlite.Connection, node_id: str) -> None:
    """Every key that stands for this node stops working."""
    await tx.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE subject_id = ? AND kind = 'node'",
                     (utcnow(), node_id))


async def touch(db: Database, key_id: str) -> None:
    await db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (utcnow(), key_id))
