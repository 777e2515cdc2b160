"""Stored Responses API responses (`/v1/responses`): one row per response, scoped to the caller who made it."""

from __future__ import annotations

import json
from typing import Any

from runtime.store.db import Database

JSON_FIELDS = ("request", "output", "conversation", "usage")
FIELDS = ("id", "user_id", "created_at", "model", "status", "incomplete_reason", "previous_response_id",
          "evidence_id", *JSON_FIELDS)


async def insert(db: Database, row: dict[str, Any]) -> None:
    values = [json.dumps(row[k], ensure_ascii=False) if k in JSON_FIELDS else row[k] for k in FIELDS]
    await db.execute(f"INSERT INTO responses ({', '.join(FIELDS)}) VALUES ({', '.join('?' for _ in FIELDS)})",
                     values)


def _owner(user_id: str | None) -> tuple[str, tuple[Any, ...]]:
    # Anonymous responses are readable anonymously only; a user's only by that user.
    return ("user_id IS NULL", ()) if user_id is None else ("user_id = ?", (user_id,))


async def get(db: Database, response_id: str, user_id: str | None) -> dict[str, Any] | None:
    where, args = _owner(user_id)
    row = await db.fetchone(f"SELECT * FROM responses WHERE id = ? AND {where}", (response_id, *args))
    if row is None:
        return None
    out = dict(row)
    for key in JSON_FIELDS:
        out[key] = json.loads(out[key])
    return out


async def delete(db: Database, response_id: str, user_id: str | None) -> bool:
    where, args = _owner(user_id)
    async with db.transaction() as tx:
        cur = await tx.execute(f"DELETE FROM responses WHERE id = ? AND {where}", (response_id, *args))
        return cur.rowcount > 0
