"""Route evidence: one record per routed chat completion, written together with the call's inference-log row,
and the usage figures derived from them."""

from __future__ import annotations

from typing import Any

import aiosqlite

from runtime.store.db import Database, utcnow
from runtime.store.ids import new_id
from runtime.store.inference_log import InferenceRecord, insert_record

FIELDS = ("execution_plane", "policy", "privacy_tier", "model", "provider", "latency_ms", "raw_joules",
          "estimated_joules", "billable_joules", "joules_method", "fallback", "fallback_reason", "limited_by",
          "stream", "prompt_tokens", "completion_tokens", "key_id", "user_id", "project_id", "request_id")


def new_evidence_id() -> str:
    return new_id("ev")


async def _insert(tx: aiosqlite.Connection, evidence_id: str, data: dict[str, Any]) -> dict[str, Any]:
    rec = {"id": evidence_id, "time": utcnow(), **{k: data.get(k) for k in FIELDS}}
    rec["fallback"] = bool(rec["fallback"])
    rec["stream"] = bool(rec["stream"])
    cols = ", ".join(rec)
    await tx.execute(f"INSERT INTO route_evidence ({cols}) VALUES ({', '.join('?' for _ in rec)})",
                     [int(v) if isinstance(v, bool) else v for v in rec.values()])
    return rec


async def record_call(db: Database, log: InferenceRecord, evidence_id: str, data: dict[str, Any]
                      ) -> dict[str, Any]:
    """Write a call's inference-log row and its route evidence (naming that row) in one transaction."""
    async with db.transaction() as tx:
        await insert_record(tx, log)
        return await _insert(tx, evidence_id, {**data, "request_id": log.id})


def _decoded(row: Any) -> dict[str, Any]:
    rec = dict(row)
    rec["fallback"], rec["stream"] = bool(rec["fallback"]), bool(rec["stream"])
    return rec


async def get(db: Database, evidence_id: str) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM route_evidence WHERE id = ?", (evidence_id,))
    return None if row is None else _decoded(row)


async def totals(db: Database, since: str, where: str = "", params: tuple[Any, ...] = ()) -> dict[str, float]:
    row = await db.fetchone(f"SELECT COUNT(*) AS requests, COALESCE(SUM(billable_joules), 0) AS joules "
                            f"FROM route_evidence WHERE time >= ? {where}", (since, *params))
    assert row is not None
    return {"requests": row["requests"], "joules": row["joules"]}


async def daily(db: Database, since: str, user_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT substr(time, 1, 10) AS day, COUNT(*) AS requests, SUM(billable_joules) AS joules "
                             "FROM route_evidence WHERE time >= ? AND user_id = ? GROUP BY day ORDER BY day",
                             (since, user_id))
    return [dict(r) for r in rows]


async def grouped(db: Database, column: str, since: str, user_id: str) -> list[dict[str, Any]]:
    assert column in ("key_id", "project_id")
    rows = await db.fetchall(f"SELECT {column} AS id, COUNT(*) AS requests, SUM(billable_joules) AS joules "
                             f"FROM route_evidence WHERE time >= ? AND user_id = ? AND {column} IS NOT NULL "
                             f"GROUP BY {column} ORDER BY {column}", (since, user_id))
    return [dict(r) for r in rows]
