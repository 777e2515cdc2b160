"""Project secrets (BYOK LLM keys and credentials): ciphertext plus a masked form; never the plaintext."""

from __future__ import annotations

from typing import Any

import aiosqlite

from runtime.store.db import Database, utcnow
from runtime.store.ids import new_id

PUBLIC_COLUMNS = "id, kind, project_id, name, provider, base_url, masked, created_by, created_at"


async def insert(tx: aiosqlite.Connection, *, kind: str, project_id: str, name: str, provider: str | None,
                 masked: str, ciphertext: bytes, created_by: str, base_url: str | None = None) -> dict[str, Any]:
    row = {"id": new_id("llmkey" if kind == "llm_key" else "cred"), "kind": kind, "project_id": project_id,
           "name": name, "provider": provider, "base_url": base_url, "masked": masked, "created_by": created_by,
           "created_at": utcnow()}
    await tx.execute(
        "INSERT INTO project_secrets (id, kind, project_id, name, provider, base_url, masked, ciphertext, "
        "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row["id"], kind, project_id, name, provider, base_url, masked, ciphertext, created_by, row["created_at"]))
    return row


async def exists(tx: aiosqlite.Connection, project_id: str, kind: str, name: str) -> bool:
    async with tx.execute("SELECT 1 FROM project_secrets WHERE project_id = ? AND kind = ? AND name = ?",
                          (project_id, kind, name)) as cur:
        return await cur.fetchone() is not None


async def list_for(db: Database, project_id: str, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(f"SELECT {PUBLIC_COLUMNS} FROM project_secrets WHERE project_id = ? AND kind = ? "
                             "ORDER BY created_at", (project_id, kind))
    return [dict(r) for r in rows]


async def enterprise_upstream(db: Database, project_id: str, key_id: str | None = None) -> dict[str, Any] | None:
    """The project's BYOK LLM key `key_id`, or its newest one, that names an endpoint (base_url): its enterprise
    upstream."""
    row = await db.fetchone("SELECT name, provider, base_url, ciphertext FROM project_secrets WHERE project_id = ? "
                            "AND kind = 'llm_key' AND base_url IS NOT NULL AND (? IS NULL OR id = ?) "
                            "ORDER BY created_at DESC LIMIT 1", (project_id, key_id, key_id))
    return dict(row) if row else None


async def delete(tx: aiosqlite.Connection, project_id: str, kind: str, secret_id: str) -> bool:
    cur = await tx.execute("DELETE FROM project_secrets WHERE id = ? AND project_id = ? AND kind = ?",
                           (secret_id, project_id, kind))
    return cur.rowcount > 0
