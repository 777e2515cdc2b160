"""Owner-configured execution-plane upstreams (today: the hosted `supercomputer` plane)."""

from __future__ import annotations

import sqlite3

from runtime.store.db import Database, utcnow


async def get(db: Database, name: str) -> sqlite3.Row | None:
    return await db.fetchone("SELECT * FROM upstreams WHERE name = ?", (name,))


async def put(db: Database, name: str, url: str, key_cipher: bytes | str | None) -> None:
    await db.execute(
        "INSERT INTO upstreams (name, url, key_cipher, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET url = excluded.url, key_cipher = excluded.key_cipher, "
        "updated_at = excluded.updated_at", (name, url, key_cipher, utcnow()))
