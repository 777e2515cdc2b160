"""Job artifacts: a row per file a job's node announced, filled in once the file is uploaded."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.store.db import Database, utcnow


@dataclass
class Artifact:
    id: str
    job_id: str
    name: str
    size: int | None
    sha256: str | None
    created_at: str
    uploaded_at: str | None


async def insert(db: Database, artifact_id: str, job_id: str, name: str) -> None:
    await db.execute("INSERT INTO artifacts (id, job_id, name, created_at) VALUES (?, ?, ?, ?)",
                     (artifact_id, job_id, name, utcnow()))


async def get(db: Database, job_id: str, artifact_id: str) -> Artifact | None:
    row = await db.fetchone("SELECT * FROM artifacts WHERE id = ? AND job_id = ?", (artifact_id, job_id))
    return Artifact(**dict(row)) if row else None


async def list_for_job(db: Database, job_id: str) -> list[Artifact]:
    rows = await db.fetchall("SELECT * FROM artifacts WHERE job_id = ? ORDER BY created_at", (job_id,))
    return [Artifact(**dict(r)) for r in rows]


async def mark_uploaded(db: Database, artifact_id: str, size: int, sha256: str) -> None:
    await db.execute("UPDATE artifacts SET size = ?, sha256 = ?, uploaded_at = ? WHERE id = ?",
                     (size, sha256, utcnow(), artifact_id))
