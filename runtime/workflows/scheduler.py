"""Cron schedules for workflows on APScheduler 3's asyncio scheduler.

The database (`workflow_schedules`) is the truth: APScheduler holds only in-memory jobs, rebuilt from the table at
every start and changed only through `ScheduleService.put`; each firing reads the row again, so a schedule deleted
with its workflow (or disabled elsewhere) stops at its next firing. A firing starts an execution with trigger
`schedule`, the input `""` (seed 001's example) and the user who set the schedule as its actor.

Cron expressions: the five crontab fields (minute hour day-of-month month day-of-week), with crontab's weekday
numbers (0 or 7 = Sunday; APScheduler 3 alone would read 0 as Monday, so numbers are translated to names), or six
fields with a leading seconds field (`*/2 * * * * *`: every two seconds). Unlike crontab, a schedule restricting
both day-of-month and day-of-week fires when both match (APScheduler's rule), not when either does.

Misfire policy: `coalesce=True` and `misfire_grace_time` = the `workflow_schedule_misfire_grace_seconds` setting
(60 s by default). Runs that could not start on time collapse into one, for the most recent of the missed times,
and that one runs if it is late by no more than the grace time; otherwise it is skipped (logged as missed) and the
schedule carries on at its next time. The same rule covers runs missed while the runtime was down: at start, a
schedule's first due time after its last firing is handed to APScheduler, which applies it (a nightly run missed by
a restart seconds later still runs once; after a restart hours later it waits for the next night).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from runtime.auth.access import READ, WRITE, ProjectContext, require
from runtime.errors import NotFound, TarxError
from runtime.store import Database, audit
from runtime.store import workflow_triggers as store
from runtime.store.db import iso, utcnow
from runtime.store.workflow_triggers import Schedule

log = logging.getLogger("tarx.workflows.scheduler")

NEXT_RUNS = 5
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_PART = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


class StartsExecutions(Protocol):
    """What the scheduler and the webhook receiver need of the workflow service (runtime/workflows/service.py)."""

    async def get_workflow(self, project_id: str, workflow_id: str) -> Any: ...

    async def start_execution(self, project_id: str, workflow_id: str, input: Any, *, trigger: str,
                              actor_user_id: str | None = None) -> str: ...


class InvalidSchedule(TarxError):
    status, type, code = 422, "invalid_request_error", "invalid_schedule"

    def __init__(self, message: str) -> None:
        super().__init__(message, extra={"error_code": "VALIDATION_ERROR"})


@dataclass(frozen=True)
class ScheduleView:
    workflow_id: str
    enabled: bool
    cron: str | None
    timezone: str
    next_run_times: list[str]  # RFC 3339 UTC; empty while disabled
    last_fired_at: str | None
    updated_at: str | None


async def workflow_in(workflows: StartsExecutions, project_id: str, workflow_id: str) -> Any:
    """The workflow if it is in the project, else 404 (whether the service answers None or raises)."""
    found = await workflows.get_workflow(project_id, workflow_id)
    if found is None:
        raise NotFound(f"Workflow '{workflow_id}' was not found.", extra={"error_code": "NOT_FOUND"})
    return found


def _day_number(token: str) -> int:
    if token.isdigit():
        n = int(token)
        if n > 7:
            raise ValueError(f"day of week {n} is out of range 0-7")
        return n % 7
    if token[:3] in _DAYS and len(token) == 3:
        return _DAYS.index(token)
    raise ValueError(f"'{token}' is not a day of the week")


def crontab_days(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3 names: `1-5` -> `mon,tue,wed,thu,fri`."""
    days: set[int] = set()
    for part in field.lower().split(","):
        m = _DAY_PART.match(part)
        if not m:
            raise ValueError(f"'{part}' is not a day-of-week expression")
        base, step = m.group(1), int(m.group(2) or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if base == "*":
            span = list(range(7))
        elif "-" in base:
            lo, hi = base.split("-")
            first, last = _day_number(lo), int(hi) if hi.isdigit() else _day_number(hi)
            if hi.isdigit() and last > 7:
                raise ValueError(f"day of week {last} is out of range 0-7")
            if last < first:
                raise ValueError(f"the range '{base}' runs backwards")
            span = list(range(first, last + 1))
        else:
            span = [_day_number(base)]
            if m.group(2):  # `n/step`: from n to the end of the week
                span = list(range(span[0], 7))
        days.update(d % 7 for d in span[::step])
    return ",".join(_DAYS[d] for d in sorted(days))


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def trigger_for(cron: str, timezone: str) -> CronTrigger:
    """The APScheduler trigger for a cron expression in a time zone; InvalidSchedule (422) when either is wrong."""
    try:
        if timezone not in _zone_names():  # also keeps names such as `America` (a directory) from the file system
            raise ZoneInfoNotFoundError(timezone)
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(f"Unknown time zone '{timezone}'; use an IANA name such as 'Europe/Paris' "
                              "or 'UTC'.") from None
    fields = cron.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"The cron expression '{cron}' has {len(fields)} fields; it needs 5 (minute hour "
                              "day month day-of-week) or 6 (a leading seconds field).")
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields
    try:
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                           day_of_week=crontab_days(dow), timezone=tz)
    except ValueError as exc:
        raise InvalidSchedule(f"The cron expression '{cron}' is not valid: {exc}") from None


def next_runs(trigger: CronTrigger, after: datetime, count: int = NEXT_RUNS) -> list[datetime]:
    """The trigger's next `count` fire times after `after` (fewer when it stops firing)."""
    out: list[datetime] = []
    previous: datetime | None = None
    while len(out) < count:
        found = trigger.get_next_fire_time(previous, previous or after)
        if found is None:
            break
        out.append(found)
        previous = found
    return out


async def upcoming(trigger: CronTrigger, count: int = NEXT_RUNS) -> list[datetime]:
    """`next_runs` from now, off the event loop: a date that never comes (`0 0 30 2 *`) takes APScheduler a
    search up to the year 9999, a few hundred milliseconds."""
    return await asyncio.to_thread(next_runs, trigger, datetime.now(UTC), count)


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


class ScheduleService:
    def __init__(self, db: Database, workflows: StartsExecutions, *, misfire_grace_seconds: int = 60) -> None:
        self.db = db
        self.workflows = workflows
        self.misfire_grace_seconds = misfire_grace_seconds
        self._scheduler: AsyncIOScheduler | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start APScheduler and give it one job per enabled schedule in the database."""
        # APScheduler logs every run at INFO; `_fire` logs the execution each one starts. Misfires stay (WARNING).
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "misfire_grace_time": self.misfire_grace_seconds, "max_instances": 1})
        self._scheduler.start()
        now = datetime.now(UTC)
        for schedule in await store.enabled_schedules(self.db):
            try:
                trigger = trigger_for(schedule.cron, schedule.timezone)
            except InvalidSchedule as exc:  # e.g. a time zone this machine's tzdata no longer knows
                log.warning("schedule of workflow %s not started: %s", schedule.workflow_id, exc.message)
                continue
            # The first run due after the last firing (or the schedule's last change): when the runtime was down
            # at that time it is in the past, and APScheduler's misfire policy decides whether it still runs.
            since = _parse(schedule.last_fired_at or schedule.updated_at) + timedelta(milliseconds=1)
            due = trigger.get_next_fire_time(None, since)
            self._add(schedule.workflow_id, trigger, due if due is not None and due < now else None)
        log.info("scheduler started with %d schedule(s)", len(self._scheduler.get_jobs()))

    async def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    def _add(self, workflow_id: str, trigger: CronTrigger, next_run_time: datetime | None = None) -> None:
        if self._scheduler is None:
            return
        extra: dict[str, Any] = {"next_run_time": next_run_time} if next_run_time is not None else {}
        self._scheduler.add_job(self._fire, trigger, args=[workflow_id], id=workflow_id,
                                name=f"workflow {workflow_id}", replace_existing=True, **extra)

    def _remove(self, workflow_id: str) -> None:
        if self._scheduler is None:
            return
        try:
            self._scheduler.remove_job(workflow_id)
        except JobLookupError:
            pass

    async def _fire(self, workflow_id: str) -> None:
        schedule = await store.get_schedule(self.db, workflow_id)
        if schedule is None or not schedule.enabled:  # the row is the truth: gone or disabled, the job goes
            self._remove(workflow_id)
            return
        try:
            async with self.db.transaction() as tx:
                await store.mark_fired(tx, workflow_id, utcnow())
            execution_id = await self.workflows.start_execution(
                schedule.project_id, workflow_id, "", trigger="schedule", actor_user_id=schedule.actor_user_id)
        except TarxError as exc:  # e.g. the project's executions-per-hour limit
            log.warning("scheduled run of workflow %s not started: %s", workflow_id, exc.message)
        except Exception:
            log.exception("scheduled run of workflow %s failed to start", workflow_id)
        else:
            log.info("scheduled run of workflow %s started execution %s", workflow_id, execution_id)

    # ---- the API's operations ---------------------------------------------------------------------------------

    async def _view(self, workflow_id: str, schedule: Schedule | None) -> ScheduleView:
        if schedule is None:
            return ScheduleView(workflow_id, False, None, "UTC", [], None, None)
        runs: list[str] = []
        if schedule.enabled:
            runs = [iso(t) for t in await upcoming(trigger_for(schedule.cron, schedule.timezone))]
        return ScheduleView(workflow_id, schedule.enabled, schedule.cron, schedule.timezone, runs,
                            schedule.last_fired_at, schedule.updated_at)

    async def preview(self, cron: str, timezone: str | None) -> list[str]:
        """The next run times of a cron expression that is not saved (the console's schedule editor previews them as
        they are typed); InvalidSchedule when it does not parse or never fires. Nothing is stored."""
        cron = " ".join(cron.split())
        if not cron:
            raise InvalidSchedule("A schedule needs a cron expression, e.g. '0 9 * * 1-5'.")
        runs = await upcoming(trigger_for(cron, timezone or "UTC"))
        if not runs:
            raise InvalidSchedule(f"The cron expression '{cron}' never fires.")
        return [iso(t) for t in runs]

    async def get(self, ctx: ProjectContext, workflow_id: str) -> ScheduleView:
        await require(self.db, ctx, READ, "workflow.schedule.read")
        await workflow_in(self.workflows, ctx.project.id, workflow_id)
        return await self._view(workflow_id, await store.get_schedule(self.db, workflow_id))

    async def put(self, ctx: ProjectContext, workflow_id: str, *, enabled: bool, cron: str | None,
                  timezone: str | None) -> ScheduleView:
        """Set the workflow's schedule (a missing cron or time zone keeps the current one) and apply it now."""
        await require(self.db, ctx, WRITE, "workflow.schedule.update")
        await workflow_in(self.workflows, ctx.project.id, workflow_id)
        current = await store.get_schedule(self.db, workflow_id)
        cron = " ".join((cron if cron is not None else current.cron if current else "").split())
        timezone = timezone or (current.timezone if current else "UTC")
        if not cron:
            raise InvalidSchedule("A schedule needs a cron expression, e.g. '0 9 * * 1-5'.")
        trigger = trigger_for(cron, timezone)  # validated even when disabling: what is stored always parses
        if not await upcoming(trigger, 1):
            raise InvalidSchedule(f"The cron expression '{cron}' never fires.")
        async with self.db.transaction() as tx:
            schedule = await store.put_schedule(tx, workflow_id, ctx.project.id, enabled=enabled, cron=cron,
                                                timezone=timezone, actor_user_id=ctx.principal.user.id)
            await audit.write(tx, ctx.principal.actor, "workflow.schedule.update", target=workflow_id,
                              project_id=ctx.project.id,
                              detail={"enabled": enabled, "cron": cron, "timezone": timezone})
        if enabled:
            self._add(workflow_id, trigger)
        else:
            self._remove(workflow_id)
        return await self._view(workflow_id, schedule)

    async def info(self, workflow_id: str) -> dict[str, Any] | None:
        """The schedule as the workflow's GET shows it (WorkflowService.schedule_info), or None when never set."""
        schedule = await store.get_schedule(self.db, workflow_id)
        if schedule is None:
            return None
        view = await self._view(workflow_id, schedule)
        return {"enabled": view.enabled, "cron": view.cron, "timezone": view.timezone,
                "next_run_times": view.next_run_times}

