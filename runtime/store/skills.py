"""Project skills: one row per skill made in a project (the built-in ones are data files, runtime/skills)."""

from __future__ import annotations

from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

COLUMNS = "id, project_id, name, description, prompt, model, created_by, created_at"


async def insert(tx: aiosqlite.Connection, *, project_id: str, name: str, description: str, prompt: str,
                 model: str | None, created_by: str) -> dict[str, Any]:
    row = {"id": new_id("skill"), "project_id": project_id, "name": name, "description": description,
           "prompt": prompt, "model": model, "created_by": created_by, "created_at": utcnow()}
    await tx.execute(f"INSERT INTO project_skills ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(row.values()))
    return row


async def name_taken(db: Database | aiosqlite.Connection, project_id: str, name: str) -> bool:
    async with connection(db).execute("SELECT 1 FROM project_skills WHERE project_id = ? AND name = ?",
                                      (project_id, name)) as cur:
        return await cur.fetchone() is not None


async def list_for(db: Database, project_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(f"SELECT {COLUMNS} FROM project_skills WHERE project_id = ? ORDER BY created_at, id",
                             (project_id,))
    return [dict(r) for r in rows]


async def get(db: Database | aiosqlite.Connection, project_id: str, skill_id: str) -> dict[str, Any] | None:
    async with connection(db).execute(f"SELECT {COLUMNS} FROM project_skills WHERE project_id = ? AND id = ?",
                                      (project_id, skill_id)) as cur:
        row = await cur.fetchone()
    return dict(row) if row else None


async def delete(tx: aiosqlite.Connection, project_id: str, skill_id: str) -> bool:
    cur = await tx.execute("DELETE FROM project_skills WHERE project_id = ? AND id = ?", (project_id, skill_id))
    return cur.rowcount > 0
