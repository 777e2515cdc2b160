"""Route evidence: one record per routed chat completion, and the usage figures derived from them."""

from __future__ import annotations

from typing import Any

from runtime.store.db import Database, utcnow
from runtime.store.ids import new_id

FIELDS = ("execution_plane", "policy", "privacy_tier", "model", "provider", "latency_ms", "raw_joules",
          "estimated_joules", "billable_joules", "joules_method", "fallback", "fallback_reason", "limited_by",
          "stream", "prompt_tokens", "completion_tokens", "key_id", "user_id", "project_id")


async def record(db: Database, data: dict[str, Any]) -> dict[str, Any]:
    rec = {"id": new_id("ev"), "time": utcnow(), **{k: data.get(k) for k in FIELDS}}
    rec["fallback"] = bool(rec["fallback"])
    rec["stream"] = bool(rec["stream"])
    cols = ", ".join(rec)
    await db.execute(f"INSERT INTO route_evidence ({cols}) VALUES ({', '.join('?' for _ in rec)})",
                     [int(v) if isinstance(v, bool) else v for v in rec.values()])
    return rec


async def get(db: Database, evidence_id: str) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT * FROM route_evidence WHERE id = ?", (evidence_id,))
    if row is None:
        return None
    rec = dict(row)
    rec["fallback"], rec["stream"] = bool(rec["fallback"]), bool(rec["stream"])
    return rec


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
