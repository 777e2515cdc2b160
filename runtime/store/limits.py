"""Billing limits: soft and hard caps per workspace, in CPU- and GPU-seconds (None: no cap)."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from runtime.store.db import Database, utcnow


@dataclass
class Limits:
    soft_cpu_seconds: float | None = None
    hard_cpu_seconds: float | None = None
    soft_gpu_seconds: float | None = None
    hard_gpu_seconds: float | None = None
    updated_at: str | None = None  # None: never set


async def get(db: Database, project_id: str) -> Limits | None:
    row = await db.fetchone("SELECT soft_cpu_seconds, hard_cpu_seconds, soft_gpu_seconds, hard_gpu_seconds, "
                            "updated_at FROM billing_limits WHERE project_id = ?", (project_id,))
    return Limits(**dict(row)) if row else None


async def put(tx: aiosqlite.Connection, project_id: str, limits: Limits) -> None:
    await tx.execute(
        "INSERT INTO billing_limits (project_id, soft_cpu_seconds, hard_cpu_seconds, soft_gpu_seconds, "
        "hard_gpu_seconds, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET "
        "soft_cpu_seconds = excluded.soft_cpu_seconds, hard_cpu_seconds = excluded.hard_cpu_seconds, "
        "soft_gpu_seconds = excluded.soft_gpu_seconds, hard_gpu_seconds = excluded.hard_gpu_seconds, "
        "updated_at = excluded.updated_at",
        (project_id, limits.soft_cpu_seconds, limits.hard_cpu_seconds, limits.soft_gpu_seconds,
         limits.hard_gpu_seconds, utcnow()))
