"""Worker nodes registered to a workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id


@dataclass
class Node:
    id: str
    project_id: str
    name: str
    labels: dict[str, str]
    capacity: int
    state: str
    version: str | None
    registered_at: str
    last_heartbeat_at: str


def _node(row: Any) -> Node:
    data = dict(row)
    data["labels"] = json.loads(data["labels"])
    return Node(**data)


async def insert(tx: aiosqlite.Connection, project_id: str, name: str, labels: dict[str, str], capacity: int,
                 version: str | None) -> Node:
    now = utcnow()
    node = Node(new_id("node"), project_id, name, labels, capacity, "online", version, now, now)
    await tx.execute("INSERT INTO nodes (id, project_id, name, labels, capacity, state, version, registered_at, "
                     "last_heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (node.id, project_id, name, json.dumps(labels), capacity, node.state, version, now, now))
    return node


async def get(db: Database | aiosqlite.Connection, node_id: str) -> Node | None:
    async with connection(db).execute("SELECT * FROM nodes WHERE id = ?", (node_id,)) as cur:
        row = await cur.fetchone()
    return _node(row) if row else None


async def list_nodes(db: Database, project_id: str) -> list[Node]:
    rows = await db.fetchall("SELECT * FROM nodes WHERE project_id = ? AND state != 'deleted' ORDER BY registered_at",
                             (project_id,))
    return [_node(r) for r in rows]


async def heartbeat(tx: aiosqlite.Connection, node_id: str, labels: dict[str, str] | None) -> None:
    # A heartbeat brings an offline node back online; a draining node stays draining.
    sql = "UPDATE nodes SET last_heartbeat_at = ?, state = CASE WHEN state = 'offline' THEN 'online' ELSE state END"
    params: list[Any] = [utcnow()]
    if labels is not None:
        sql += ", labels = ?"
        params.append(json.dumps(labels))
    await tx.execute(sql + " WHERE id = ?", (*params, node_id))


async def set_state(tx: aiosqlite.Connection, node_id: str, state: str) -> None:
    await tx.execute("UPDATE nodes SET state = ? WHERE id = ?", (state, node_id))


async def silent_since(db: Database, cutoff: str) -> list[Node]:
    rows = await db.fetchall("SELECT * FROM nodes WHERE state IN ('online', 'draining') AND last_heartbeat_at < ?",
                             (cutoff,))
    return [_node(r) for r in rows]


async def count_by_state(db: Database) -> dict[str, int]:
    """How many registered nodes are in each state (online, draining, offline), across every workspace."""
    rows = await db.fetchall("SELECT state, COUNT(*) AS n FROM nodes WHERE state != 'deleted' GROUP BY state")
    return {r["state"]: r["n"] for r in rows}
