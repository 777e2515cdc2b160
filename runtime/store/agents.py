"""Agents: one row per agent in a project; list fields are stored as JSON arrays."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

LISTS = ("tools", "rag_source_ids", "skills")
FIELDS = ("name", "description", "instructions", "model", "execution_policy", "temperature", "max_tokens",
          "tool_choice", "llm_key_id", *LISTS)


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in LISTS:
        out[key] = json.loads(out[key])
    return out


def _value(key: str, value: Any) -> Any:
    return json.dumps(list(value)) if key in LISTS else value


async def insert(tx: aiosqlite.Connection, project_id: str, created_by: str | None,
                 fields: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    row = {"id": new_id("agent"), "project_id": project_id, **{k: fields[k] for k in FIELDS},
           "created_by": created_by, "created_at": now, "updated_at": now}
    columns = list(row)
    await tx.execute(f"INSERT INTO agents ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                     [_value(k, row[k]) for k in columns])
    return row


async def get(db: Database | aiosqlite.Connection, project_id: str, agent_id: str) -> dict[str, Any] | None:
    async with connection(db).execute("SELECT * FROM agents WHERE id = ? AND project_id = ?",
                                      (agent_id, project_id)) as cur:
        row = await cur.fetchone()
    return _row(row) if row else None


async def list_for(db: Database, project_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM agents WHERE project_id = ? ORDER BY created_at, id", (project_id,))
    return [_row(r) for r in rows]


async def update(tx: aiosqlite.Connection, project_id: str, agent_id: str, fields: dict[str, Any]) -> bool:
    changes = {k: v for k, v in fields.items() if k in FIELDS}
    changes["updated_at"] = utcnow()
    cur = await tx.execute(
        f"UPDATE agents SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ? AND project_id = ?",
        [*(_value(k, v) for k, v in changes.items()), agent_id, project_id])
    return cur.rowcount > 0


async def delete(tx: aiosqlite.Connection, project_id: str, agent_id: str) -> bool:
    cur = await tx.execute("DELETE FROM agents WHERE id = ? AND project_id = ?", (agent_id, project_id))
    return cur.rowcount > 0
