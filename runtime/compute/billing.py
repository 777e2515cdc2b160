"""Plans, the local subscription, usage from what nodes measured, and soft/hard caps per workspace."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NoReturn

from runtime.auth.access import ADMIN, READ, ProjectContext, require
from runtime.errors import TarxError
from runtime.store import Database, audit, jobs
from runtime.store import limits as limit_store
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
# The API's names for the caps, and the fields that hold them.
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


def checkout() -> NoReturn:
    raise TarxError("Checkout is not available on a local runtime: it runs on the Hobby (local only) plan, with "
                    "nothing to buy. Hosted plans are bought from the hosted service.", status=400,
                    code="checkout_unavailable")


def limits_view(limits: limit_store.Limits) -> dict[str, Any]:
    return {**{name: getattr(limits, col) for name, col in LIMIT_FIELDS.items()}, "updatedAt": limits.updated_at}


class Billing:
    """Usage and the soft and hard caps per workspace. Caps are read on every submission, so kept in memory; every
    change comes through here."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._limits: dict[str, limit_store.Limits] = {}

    async def _get(self, project_id: str) -> limit_store.Limits:
        if project_id not in self._limits:
            self._limits[project_id] = await limit_store.get(self.db, project_id) or limit_store.Limits()
        return self._limits[project_id]

    async def limits(self, ctx: ProjectContext) -> dict[str, Any]:
        await require(self.db, ctx, READ, "billing.read")
        return limits_view(await self._get(ctx.project.id))

    async def set_limits(self, ctx: ProjectContext, changes: dict[str, float | None]) -> dict[str, Any]:
        """Change the caps named in `changes` (API names; None lifts a cap), audited."""
        await require(self.db, ctx, ADMIN, "billing.limits")
        project_id = ctx.project.id
        merged = replace(await self._get(project_id), **{LIMIT_FIELDS[k]: v for k, v in changes.items()})
        try:
            async with self.db.transaction() as tx:
                await limit_store.put(tx, project_id, merged)
                await audit.write(tx, ctx.principal.actor, "billing.limits", target=project_id,
                                  project_id=project_id, detail=changes)
        finally:
            self._limits.pop(project_id, None)
        return limits_view(await self._get(project_id))

    async def usage(self, ctx: ProjectContext, since: str | None, until: str | None) -> dict[str, Any]:
        await require(self.db, ctx, READ, "billing.read")
        start, _ = month_window()
        since, until = since or start, until or utcnow()
        figures = await jobs.usage(self.db, ctx.project.id, since, until)
        return {"windowStart": since, "windowEnd": until, **figures, "estimateUsd": 0.0,
                "source": "measured by nodes (CPU time and peak memory of each job's process tree)"}

    async def check(self, project_id: str) -> list[str]:
        """Raise when a hard cap is reached this month; return warnings for soft caps reached."""
        limits = await self._get(project_id)
        if all(getattr(limits, col) is None for col in LIMIT_FIELDS.values()):
            return []
        start, end = month_window()
        used = await jobs.usage(self.db, project_id, start, end)
        warnings = []
        for kind, figure in (("cpu", used["cpuSeconds"]), ("gpu", used["gpuSeconds"])):
            hard, soft = getattr(limits, f"hard_{kind}_seconds"), getattr(limits, f"soft_{kind}_seconds")
            if hard is not None and figure >= hard:
                raise HardCapReached(f"The workspace reached its hard cap of {hard:g} {kind.upper()}-seconds this "
                                     f"month ({figure:.1f} used); raise it with PATCH /v0/billing/limits.")
            if soft is not None and figure >= soft:
                warnings.append(f"soft cap of {soft:g} {kind.upper()}-seconds reached ({figure:.1f} used this month)")
        return warnings
