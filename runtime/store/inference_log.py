"""The inference request log: one row per chat completion or embedding call."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import aiosqlite

from runtime.store.db import Database, utcnow


@dataclass(slots=True)
class InferenceRecord:
    id: str
    kind: str
    model: str
    queue_class: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    queue_ms: float | None
    ttft_ms: float | None
    total_ms: float | None
    cpu_seconds: float | None
    created_at: str = ""


async def insert_record(tx: aiosqlite.Connection, rec: InferenceRecord) -> None:
    row = asdict(rec)
    row["created_at"] = rec.created_at or utcnow()
    row["stream"] = int(rec.stream)
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    await tx.execute(f"INSERT INTO inference_requests ({cols}) VALUES ({marks})", tuple(row.values()))


async def record(db: Database, rec: InferenceRecord) -> None:
    async with db.transaction() as tx:
        await insert_record(tx, rec)
