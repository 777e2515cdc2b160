"""The audit log as a workspace's admins read it."""

from __future__ import annotations

from typing import Any

from runtime.auth.access import ADMIN, ProjectContext, require
from runtime.store import Database, audit


async def records(db: Database, ctx: ProjectContext, *, since: str | None, until: str | None, actor: str | None,
                  action: str | None, limit: int) -> list[dict[str, Any]]:
    await require(db, ctx, ADMIN, "audit.read")
    return await audit.query(db, ctx.project.id, since=since, until=until, actor=actor, action=action, limit=limit)
