"""Runtime-wide key/value facts (instance id, first start)."""

from __future__ import annotations

import secrets

from runtime.store.db import Database, utcnow


async def get(db: Database, key: str) -> str | None:
    row = await db.fetchone("SELECT value FROM runtime_meta WHERE key = ?", (key,))
    return None if row is None else row["value"]


async def ensure_instance(db: Database) -> str:
    """The runtime's stable identity, created on first start."""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT OR IGNORE INTO runtime_meta (key, value) VALUES ('instance_id', ?), ('created_at', ?)",
            ("rt_" + secrets.token_hex(8), utcnow()),
        )
    value = await get(db, "instance_id")
    assert value is not None
    return value
