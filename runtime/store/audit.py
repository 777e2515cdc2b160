"""The audit log: one record per mutating call, written in the same transaction as the change it records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, utcnow
from runtime.store.ids import new_id


@dataclass
class Actor:
    user_id: str | None
    key_id: str | None
    client: str | None


INSERT = ("INSERT INTO audit_log (id, time, actor, key_id, action, target, project_id, client, outcome, detail) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def row(actor: Actor, action: str, *, target: str | None = None, project_id: str | None = None,
        outcome: str = "success", detail: dict[str, Any] | None = None) -> tuple[str, tuple[Any, ...]]:
    """The audit record as (sql, parameters), for callers that batch their writes."""
    return INSERT, (new_id("aud"), utcnow(), actor.user_id, actor.key_id, action, target, project_id, actor.client,
                    outcome, json.dumps(detail) if detail else None)


async def write(tx: aiosqlite.Connection, actor: Actor, action: str, *, target: str | None = None,
                project_id: str | None = None, outcome: str = "success",
                detail: dict[str, Any] | None = None) -> None:
    await tx.execute(*row(actor, action, target=target, project_id=project_id, outcome=outcome, detail=detail))


async def query(db: Database, project_id: str, *, since: str | None = None, until: str | None = None,
                actor: str | None = None, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    sql = ("SELECT id, time, actor, key_id, action, target, project_id, client, outcome, detail FROM audit_log "
           "WHERE project_id = ?")
    params: list[Any] = [project_id]
    for clause, value in (("time >= ?", since), ("time < ?", until), ("actor = ?", actor), ("action = ?", action)):
        if value is not None:
            sql += f" AND {clause}"
            params.append(value)
    rows = await db.fetchall(sql + " ORDER BY seq LIMIT ?", (*params, limit))
    out = []
    for r in rows:
        rec = dict(r)
        rec["detail"] = json.loads(rec["detail"]) if rec["detail"] else None
        out.append(rec)
    return out
