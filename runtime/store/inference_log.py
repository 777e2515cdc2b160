"""The inference request log: one row per chat completion or embedding call."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


async def record(db: Database, rec: InferenceRecord) -> None:
    row = asdict(rec)
    row["created_at"] = rec.created_at or utcnow()
    row["stream"] = int(rec.stream)
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    await db.execute(f"INSERT INTO inference_requests ({cols}) VALUES ({marks})", row.values())


async def get(db: Database, request_id: str) -> InferenceRecord | None:
    row = await db.fetchone("SELECT * FROM inference_requests WHERE id = ?", (request_id,))
    if row is None:
        return None
    data = dict(row)
    data["stream"] = bool(data["stream"])
    return InferenceRecord(**data)


async def totals(db: Database) -> dict[str, int]:
    row = await db.fetchone(
        "SELECT COUNT(*) AS requests, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
        "COALESCE(SUM(completion_tokens), 0) AS completion_tokens FROM inference_requests"
    )
    assert row is not None
    return dict(row)
