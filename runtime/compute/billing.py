"""Plans, the local subscription, usage from what nodes measured, and soft/hard caps per workspace."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.errors import TarxError
from runtime.store import Database, jobs
from runtime.store.db import iso, utcnow

# Seed 004's plans; a local runtime is always on Hobby.
PLANS = [
    {"id": "hobby", "name": "Hobby (local only)", "priceUsdPerMonth": 0, "rateLimit": None, "burst": None,
     "description": "Local control plane: no hosted compute, no rate limit beyond this runtime's own."},
    {"id": "payg", "name": "PAYG", "priceUsdPerMonth": None, "rateLimit": "100 req/sec", "burst": "200 over 10s",
     "description": "Hosted; not available on a local runtime."},
    {"id": "team", "name": "Team", "priceUsdPerMonth": None, "rateLimit": "1000 req/sec", "burst": "2000 over 10s",
     "description": "Hosted; not available on a local runtime."},
    {"id": "enterprise", "name": "Enterprise", "priceUsdPerMonth": None, "rateLimit": "Custom", "burst": "Custom",
     "description": "Hosted; not available on a local runtime."},
]
LIMIT_FIELDS = {"softCpuSeconds": "soft_cpu_seconds", "hardCpuSeconds": "hard_cpu_seconds",
                "softGpuSeconds": "soft_gpu_seconds", "hardGpuSeconds": "hard_gpu_seconds"}


class HardCapReached(TarxError):
    status, type, code = 403, "permission_error", "hard_cap_reached"


def month_window(now: datetime | None = None) -> tuple[str, str]:
    now = now or datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return iso(start), iso(end)


def subscription() -> dict[str, Any]:
    start, end = month_window()
    return {"plan": PLANS[0], "status": "active", "currentPeriodStart": start, "currentPeriodEnd": end,
            "hosted": False}


async def usage(db: Database, project_id: str, since: str | None, until: str | None) -> dict[str, Any]:
    start, _ = month_window()
    since, until = since or start, until or utcnow()
    figures = await jobs.usage(db, project_id, since, until)
    return {"windowStart": since, "windowEnd": until, **figures, "estimateUsd": 0.0,
            "source": "measured by nodes (CPU time and peak memory of each job's process tree)"}


class Limits:
    """Soft and hard caps per workspace. Read on every submission, so kept in memory; every change comes here."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._rows: dict[str, Any] = {}

    async def get(self, project_id: str) -> dict[str, Any]:
        if project_id not in self._rows:
            self._rows[project_id] = await self.db.fetchone("SELECT * FROM billing_limits WHERE project_id = ?",
                                                            (project_id,))
        row = self._rows[project_id]
        out: dict[str, Any] = {k: (row[col] if row else None) for k, col in LIMIT_FIELDS.items()}
        out["updatedAt"] = row["updated_at"] if row else None
        return out

    async def set(self, project_id: str, changes: dict[str, float | None]) -> None:
        current = await self.get(project_id)
        merged = {k: changes.get(k, current[k]) for k in LIMIT_FIELDS}
        cols = ", ".join(LIMIT_FIELDS.values())
        updates = ", ".join(f"{c} = excluded.{c}" for c in LIMIT_FIELDS.values())
        await self.db.execute(
            f"INSERT INTO billing_limits (project_id, {cols}, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (project_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
            (project_id, *merged.values(), utcnow()))
        self._rows.pop(project_id, None)

    async def check(self, project_id: str) -> list[str]:
        """Raise when a hard cap is reached this month; return warnings for soft caps reached."""
        limits = await self.get(project_id)
        if all(limits[k] is None for k in LIMIT_FIELDS):
            return []
        start, end = month_window()
        used = await jobs.usage(self.db, project_id, start, end)
        warnings = []
        for kind, figure in (("Cpu", used["cpuSeconds"]), ("Gpu", used["gpuSeconds"])):
            hard, soft = limits[f"hard{kind}Seconds"], limits[f"soft{kind}Seconds"]
            if hard is not None and figure >= hard:
                raise HardCapReached(f"The workspace reached its hard cap of {hard:g} {kind.upper()}-seconds this "
                                     f"month ({figure:.1f} used); raise it with PATCH /v0/billing/limits.")
            if soft is not None and figure >= soft:
                warnings.append(f"soft cap of {soft:g} {kind.upper()}-seconds reached ({figure:.1f} used this month)")
        return warnings
