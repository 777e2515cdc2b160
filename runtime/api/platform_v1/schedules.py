"""`/api/v1/workflows/{id}/schedule`: a workflow's cron schedule (seed 001: "Enable or disable the schedule
trigger"). Reading needs any project role, changing it editor. Both answer with the next five run times.
`/api/v1/schedules/preview` (not in the seeds) gives those times for a cron not saved yet, for an editor that shows
them as the expression is typed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, StrictBool, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Caller, Project, Svc, requires
from runtime.auth.access import WRITE, ProjectContext

router = APIRouter()


class ScheduleBody(Body):
    enabled: StrictBool
    # 5 crontab fields, or 6 with a leading seconds field; omitted: the current one
    cron: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    timezone: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None  # IANA name; default UTC


@router.get("/workflows/{workflow_id}/schedule")
async def get_schedule(workflow_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return asdict(await svc.schedules.get(ctx, workflow_id))


@router.put("/workflows/{workflow_id}/schedule")
async def put_schedule(workflow_id: str, body: ScheduleBody, svc: Svc,
                       ctx: Annotated[ProjectContext, requires(WRITE, "workflow.schedule.update")]
                       ) -> dict[str, Any]:
    return asdict(await svc.schedules.put(ctx, workflow_id, enabled=body.enabled, cron=body.cron,
                                          timezone=body.timezone))


@router.get("/schedules/preview")
async def preview_schedule(svc: Svc, caller: Caller, cron: Annotated[str, Query(min_length=1, max_length=200)],
                           timezone: Annotated[str, Query(min_length=1, max_length=64)] = "UTC") -> dict[str, Any]:
    return {"cron": " ".join(cron.split()), "timezone": timezone,
            "next_run_times": await svc.schedules.preview(cron, timezone)}
