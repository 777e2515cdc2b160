"""Workflows: one row per workflow in a project; nodes and edges are JSON arrays, `version` counts the updates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id


@dataclass(frozen=True)
class Workflow:
    id: str
    project_id: str
    name: str
    description: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    version: int
    created_by: str | None
    created_at: str
    updated_at: str


def _workflow(row: Any) -> Workflow:
    return Workflow(row["id"], row["project_id"], row["name"], row["description"], json.loads(row["nodes"]),
                    json.loads(row["edges"]), row["version"], row["created_by"], row["created_at"], row["updated_at"])


async def insert(tx: aiosqlite.Connection, project_id: str, created_by: str | None, name: str, description: str,
                 nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Workflow:
    now = utcnow()
    wf = Workflow(new_id("wf"), project_id, name, description, nodes, edges, 1, created_by, now, now)
    await tx.execute(
        "INSERT INTO workflows (id, project_id, name, description, nodes, edges, version, created_by, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        (wf.id, project_id, name, description, json.dumps(nodes), json.dumps(edges), created_by, now, now))
    return wf


async def get(db: Database | aiosqlite.Connection, project_id: str, workflow_id: str) -> Workflow | None:
    async with connection(db).execute("SELECT * FROM workflows WHERE id = ? AND project_id = ?",
                                      (workflow_id, project_id)) as cur:
        row = await cur.fetchone()
    return _workflow(row) if row else None


async def list_for(db: Database, project_id: str) -> list[Workflow]:
    rows = await db.fetchall("SELECT * FROM workflows WHERE project_id = ? ORDER BY created_at, id", (project_id,))
    return [_workflow(r) for r in rows]


async def update(tx: aiosqlite.Connection, project_id: str, workflow_id: str, fields: dict[str, Any]) -> bool:
    """Set the given fields (name, description, nodes, edges) and bump the version."""
    changes = {k: json.dumps(v) if k in ("nodes", "edges") else v for k, v in fields.items()
               if k in ("name", "description", "nodes", "edges")}
    changes["updated_at"] = utcnow()
    cur = await tx.execute(
        f"UPDATE workflows SET {', '.join(f'{k} = ?' for k in changes)}, version = version + 1 "
        "WHERE id = ? AND project_id = ?", [*changes.values(), workflow_id, project_id])
    return cur.rowcount > 0


async def delete(tx: aiosqlite.Connection, project_id: str, workflow_id: str) -> bool:
    cur = await tx.execute("DELETE FROM workflows WHERE id = ? AND project_id = ?", (workflow_id, project_id))
    return cur.rowcount > 0
