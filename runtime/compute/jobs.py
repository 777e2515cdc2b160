"""The leased job queue: submission with quotas and caps, cancel and retry, node-side assignment, results, logs,
and the reaper that takes leases back from silent nodes.

Every state change is a guarded update recorded as a transition, with its webhook events, in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from runtime.auth.access import READ, WRITE, PermissionDenied, ProjectContext, require
from runtime.compute.access import project_job
from runtime.compute.artifacts import list_for_job
from runtime.compute.billing import Billing
from runtime.compute.signals import Signals
from runtime.compute.webhooks import WebhookService
from runtime.errors import Conflict, InvalidRequest, NotFound, TarxError
from runtime.store import Database, audit
from runtime.store import jobs as job_store
from runtime.store import nodes as node_store
from runtime.store.batch import InsertBatcher, Rows, write_rows
from runtime.store.db import iso_in, utcnow
from runtime.store.jobs import ACTIVE, Job, JobState
from runtime.store.nodes import Node

log = logging.getLogger("tarx.compute")

JOB_TYPES = ("COMMAND",)
RETRYABLE = (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED)  # what a user may send back to the queue
# A job assigned this recently that its node's heartbeat does not list may be in the poll answer still on its way
# to the node: it is left to its lease rather than taken back.
ASSIGNMENT_IN_FLIGHT_SECONDS = 5.0


class QuotaExceeded(TarxError):
    status, type, code = 429, "rate_limit_error", "quota_exceeded"


MASKED = "********"


def job_view(job: Job, *, reveal_env: bool = False) -> dict[str, Any]:
    """One shape for both API families (seed 004's fields, camelCase; its `agentId` is the node's id).

    Env values are secrets: only the submit answer shows them (`reveal_env`); every later read, list and webhook
    event shows the names with masked values. The node that runs the job gets them in `node_job_view`."""
    env = dict(job.env) if reveal_env else dict.fromkeys(job.env, MASKED)
    return {
        "id": job.id, "type": job.type, "command": job.command, "state": job.state, "attempt": job.attempt,
        "maxAttempts": job.max_attempts, "labels": job.labels, "env": env, "priority": job.priority,
        "timeoutSeconds": job.timeout_seconds, "exitCode": job.exit_code, "runtimeMs": job.runtime_ms,
        "agentId": job.node_id, "reason": job.reason, "cancelRequested": job.cancel_requested,
        "workspaceId": job.project_id, "createdAt": job.created_at, "updatedAt": job.updated_at,
        "startedAt": job.started_at, "finishedAt": job.finished_at,
        "usage": {"cpuSeconds": job.cpu_seconds, "gpuSeconds": job.gpu_seconds, "gbSeconds": job.gb_seconds},
    }


def node_job_view(job: Job) -> dict[str, Any]:
    """What a node needs to run a job."""
    return {"id": job.id, "attempt": job.attempt, "type": job.type, "command": job.command, "env": job.env,
            "labels": job.labels, "timeoutSeconds": job.timeout_seconds}


@dataclass
class JobSpec:
    type: str
    command: str
    timeout_seconds: int
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int | None = None


@dataclass
class Submitted:
    detail: dict[str, Any]  # the job with its transitions and artifacts
    created: bool  # False: an earlier submission with the same Idempotency-Key
    warnings: list[str]  # soft caps reached


class JobService:
    def __init__(self, db: Database, signals: Signals, webhooks: WebhookService, *, lease_grace_seconds: float,
                 max_attempts: int) -> None:
        self.db = db
        self.batcher = InsertBatcher(db)
        self.billing = Billing(db)
        self.signals = signals
        self.webhooks = webhooks
        self.lease_grace = lease_grace_seconds
        self.max_attempts = max_attempts

    # ---- transitions ------------------------------------------------------------------------------------------

    async def _transition(self, tx: aiosqlite.Connection, job: Job, state: JobState, *, expect: tuple[JobState, ...],
                          reason: str | None = None, fields: dict[str, Any] | None = None,
                          expect_node: str | None = None) -> Job | None:
        after = await job_store.set_state(tx, job, state, expect_states=expect, reason=reason, fields=fields,
                                          expect_node=expect_node)
        if after is None:
            return None
        data = {**job_view(after), "previousState": job.state}
        await self.webhooks.enqueue(tx, job.project_id, "job.transitioned", data)
        if after.terminal:
            await self.webhooks.enqueue(tx, job.project_id, "job.terminal", data)
        return after

    def _changed(self, project_id: str) -> None:
        self.signals.notify(f"queue:{project_id}")
        self.webhooks.wake()

    # ---- user side --------------------------------------------------------------------------------------------

    async def submit(self, ctx: ProjectContext, spec: JobSpec, idempotency_key: str | None) -> Submitted:
        await require(self.db, ctx, WRITE, "job.submit")
        if spec.type not in JOB_TYPES:
            raise InvalidRequest(f"type must be one of {list(JOB_TYPES)}", code="invalid_job_type")
        key = ctx.principal.key
        if idempotency_key:
            existing = await job_store.by_idempotency_key(self.db, ctx.project.id, idempotency_key)
            if existing is not None:
                return Submitted(await self.detail_of(existing), False, [])
        if key is not None and key.kind == "compute" and key.quotas:
            await self._check_quotas(key.id, key.quotas, spec.type)
        warnings = await self.billing.check(ctx.project.id)
        fields = dict(project_id=ctx.project.id, type=spec.type, command=spec.command, env=spec.env,
                      labels=spec.labels, priority=spec.priority, timeout_seconds=spec.timeout_seconds,
                      max_attempts=spec.max_attempts or self.max_attempts, created_by=ctx.principal.user.id,
                      key_id=ctx.principal.key_id, idempotency_key=idempotency_key)
        actor, conn = ctx.principal.actor, self.db.conn
        if idempotency_key:  # the unique key must be checked inside the same transaction as the insert
            async with self.db.transaction() as tx:
                if await job_store.by_idempotency_key(tx, ctx.project.id, idempotency_key):
                    raise Conflict("A job with this Idempotency-Key is being created; retry to read it.")
                job = await job_store.insert(tx, **fields)
                await write_rows(tx, await self._created_rows(tx, job, actor, warnings))
        else:  # the common case rides a group commit with other submissions
            job, rows = job_store.new_job(**fields)
            await self.batcher.write(rows + await self._created_rows(conn, job, actor, warnings))
        self._changed(job.project_id)
        return Submitted(await self.detail_of(job, reveal_env=True), True, warnings)

    async def _created_rows(self, conn: aiosqlite.Connection, job: Job, actor: Any, warnings: list[str]) -> Rows:
        """The audit record and webhook deliveries that go with a new job, in the job's transaction."""
        rows = await self.webhooks.delivery_rows(conn, job.project_id, "job.created", job_view(job))
        rows.append(audit.row(actor, "job.submit", target=job.id, project_id=job.project_id,
                              detail={"type": job.type, "labels": job.labels}))
        for w in warnings:
            rows.append(audit.row(actor, "billing.soft_cap_reached", target=job.id, project_id=job.project_id,
                                  detail={"warning": w}))
            rows += await self.webhooks.delivery_rows(conn, job.project_id, "billing.soft_cap_reached",
                                                      {"workspaceId": job.project_id, "warning": w})
        return rows

    async def _check_quotas(self, key_id: str, quotas: dict[str, Any], job_type: str) -> None:
        allowed = quotas.get("allowedJobTypes")
        if allowed and job_type not in allowed:
            raise PermissionDenied(f"This key may submit only {allowed} jobs.")
        per_hour = quotas.get("maxJobsPerHour")
        if per_hour is not None and await job_store.count_by_key(self.db, key_id, since=iso_in(-3600)) >= per_hour:
            raise QuotaExceeded(f"This key's quota of {per_hour} jobs per hour is used up.",
                                headers={"Retry-After": "60"})
        concurrent = quotas.get("maxConcurrentJobs")
        if concurrent is not None and await job_store.count_by_key(self.db, key_id, active_only=True) >= concurrent:
            raise QuotaExceeded(f"This key already has {concurrent} unfinished jobs, its limit.",
                                headers={"Retry-After": "5"})

    async def detail(self, ctx: ProjectContext, job_id: str) -> dict[str, Any]:
        return await self.detail_of(await project_job(self.db, ctx, job_id))

    async def detail_of(self, job: Job, *, reveal_env: bool = False) -> dict[str, Any]:
        """The job with its transitions and artifacts (env values masked unless `reveal_env`)."""
        view = job_view(job, reveal_env=reveal_env)
        if job.state == JobState.QUEUED and job.attempt == 1 and job.created_at == job.updated_at:
            # Just submitted: its history is known without reading it back.
            return {**view, "transitions": [{"attempt": 1, "state": JobState.QUEUED, "reason": None,
                                             "node_id": None, "time": job.created_at}], "artifacts": []}
        return {**view, "transitions": await job_store.transitions(self.db, job.id),
                "artifacts": await list_for_job(self.db, job.id)}

    async def list(self, ctx: ProjectContext, **filters: Any) -> tuple[list[Job], int]:
        await require(self.db, ctx, READ, "job.list")
        return await job_store.list_jobs(self.db, ctx.project.id, **filters)

    async def cancel(self, ctx: ProjectContext, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once; ask the node of a running one to stop it. Idempotent. Returns the detail."""
        return await self.detail_of(await self._cancel(ctx, job_id))

    async def _cancel(self, ctx: ProjectContext, job_id: str) -> Job:
        job = await project_job(self.db, ctx, job_id)
        await require(self.db, ctx, WRITE, "job.cancel")
        if job.terminal or job.cancel_requested:
            return job  # idempotent
        async with self.db.transaction() as tx:
            if job.state == JobState.QUEUED:
                done = await self._transition(tx, job, JobState.CANCELLED, expect=(JobState.QUEUED,),
                                              reason="cancelled", fields={"finished_at": utcnow()})
            else:
                await job_store.request_cancel(tx, job.id)
                done = await job_store.get(tx, job.id)
            await audit.write(tx, ctx.principal.actor, "job.cancel", target=job.id, project_id=job.project_id)
        self._changed(job.project_id)
        if done is None:  # it left QUEUED meanwhile: ask its node instead
            return await self._cancel(ctx, job_id)
        return done

    async def retry(self, ctx: ProjectContext, job_id: str) -> dict[str, Any]:
        """Queue a failed, timed-out or cancelled job again as its next attempt. Returns the detail."""
        job = await project_job(self.db, ctx, job_id)
        await require(self.db, ctx, WRITE, "job.retry")
        if job.state not in RETRYABLE:
            raise Conflict(f"Only failed, timed-out or cancelled jobs can be retried; this one is {job.state}.")
        async with self.db.transaction() as tx:
            after = await self._transition(
                tx, job, JobState.QUEUED, expect=RETRYABLE, reason="retry",
                fields={"attempt": job.attempt + 1, "max_attempts": max(job.max_attempts, job.attempt + 1),
                        "node_id": None, "lease_expires_at": None, "cancel_requested": 0, "exit_code": None,
                        "runtime_ms": None, "started_at": None, "finished_at": None})
            if after is None:
                raise Conflict("The job changed meanwhile; read it and retry.")
            await audit.write(tx, ctx.principal.actor, "job.retry", target=job.id, project_id=job.project_id,
                              detail={"attempt": after.attempt})
        self._changed(job.project_id)
        return await self.detail_of(after)

    async def logs(self, ctx: ProjectContext, job_id: str, after_seq: int, follow: bool,
                   stop: asyncio.Event | None = None) -> AsyncIterator[dict[str, Any]]:
        """The job's log records (see `_follow`), once the caller may read the job: a refusal comes before any."""
        await project_job(self.db, ctx, job_id)
        return self._follow(job_id, after_seq, follow, stop)

    async def _follow(self, job_id: str, after_seq: int, follow: bool, stop: asyncio.Event | None
                      ) -> AsyncIterator[dict[str, Any]]:
        """Log lines after `after_seq`; when following, wait for more until the job ends (or `stop` is set, at
        shutdown), then an end record."""
        while True:
            lines = await job_store.log_lines(self.db, job_id, after_seq)
            for line in lines:
                after_seq = line["seq"]
                yield {"kind": "line", **line}
            if lines:
                continue
            job = await job_store.get(self.db, job_id)
            if stop is not None and stop.is_set() and not (job is None or job.terminal):
                yield {"kind": "end", "state": job.state, "exitCode": None, "reason": "runtime_shutting_down"}
                return
            if not follow or job is None or job.terminal:
                # Lines pushed just before the terminal result are already stored: nodes flush logs first.
                yield {"kind": "end", "state": job.state if job else None, "exitCode": job.exit_code if job else None}
                return
            await self.signals.wait(f"logs:{job_id}", 1.0)

    # ---- node side --------------------------------------------------------------------------------------------

    async def poll(self, node: Node, max_jobs: int, wait_seconds: float) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + max(wait_seconds, 0)
        while True:
            assigned = await self._assign(node, max_jobs)
            cancel = await self._cancels(node.id)
            current = await node_store.get(self.db, node.id)
            draining = current is not None and current.state == "draining"
            remaining = deadline - asyncio.get_running_loop().time()
            if assigned or cancel or draining or remaining <= 0:
                return {"jobs": [node_job_view(j) for j in assigned], "cancel": cancel, "drain": draining}
            await self.signals.wait(f"queue:{node.project_id}", min(remaining, 5.0))

    async def _assign(self, node: Node, max_jobs: int) -> list[Job]:
        async with self.db.transaction() as tx:
            current = await node_store.get(tx, node.id)
            if current is None or current.state != "online":
                return []
            free = min(current.capacity - len(await job_store.active_on_node(tx, node.id)), max_jobs)
            if free <= 0:
                return []
            assigned = []
            for job in await job_store.queued_for(tx, node.project_id, current.labels, free):
                after = await self._transition(tx, job, JobState.ASSIGNED, expect=(JobState.QUEUED,), fields={
                    "node_id": node.id, "lease_expires_at": iso_in(self.lease_grace)})
                if after is not None:
                    assigned.append(after)
        if assigned:
            self.webhooks.wake()
        return assigned

    async def _cancels(self, node_id: str) -> list[str]:
        return [j.id for j in await job_store.active_on_node(self.db, node_id) if j.cancel_requested]

    async def _lease(self, node: Node, job_id: str, attempt: int) -> Job:
        job = await job_store.get(self.db, job_id)
        if job is None or job.project_id != node.project_id:
            raise NotFound(f"Job '{job_id}' was not found.")
        if job.node_id != node.id or job.attempt != attempt:
            raise Conflict(f"Node {node.id} no longer holds the lease on job {job_id} attempt {attempt} "
                           "(it was requeued or given to another node).", code="lease_lost")
        return job

    async def heartbeat(self, node: Node, running: list[dict[str, Any]], labels: dict[str, str] | None
                        ) -> dict[str, Any]:
        """The node says which jobs it runs. Renew the leases of exactly those (a job's first report moves it to
        RUNNING); take back at once the jobs it holds but did not list (a restarted node runs none of its old
        ones); and tell it to stop any listed job that is no longer its own (requeued, or another attempt)."""
        reported = {str(item.get("jobId", "")): item.get("attempt") for item in running}
        taken: list[tuple[Job, Job]] = []
        async with self.db.transaction() as tx:
            await node_store.heartbeat(tx, node.id, labels)
            held = {job.id: job for job in await job_store.active_on_node(tx, node.id)}
            renew = [job_id for job_id, attempt in reported.items()
                     if job_id in held and held[job_id].attempt == attempt]
            await job_store.renew_leases(tx, node.id, renew, iso_in(self.lease_grace))
            for job_id in renew:
                if held[job_id].state == JobState.ASSIGNED:
                    await self._started(tx, held[job_id], node)
            recent = iso_in(-ASSIGNMENT_IN_FLIGHT_SECONDS)
            for job in held.values():
                if job.id in renew or (job.state == JobState.ASSIGNED and job.updated_at > recent):
                    continue  # (just assigned: the poll answer that carries it may still be on its way)
                after = await self._take_back(tx, job)
                if after is not None:
                    taken.append((job, after))
        stop = [job_id for job_id in reported if job_id not in renew]
        for job, after in taken:
            log.warning("job %s: node %s no longer runs it: now %s (attempt %d)", job.id, node.id, after.state,
                        after.attempt)
        if taken:
            self._changed(node.project_id)
        current = await node_store.get(self.db, node.id)
        self.webhooks.wake()
        return {"cancel": [*await self._cancels(node.id), *stop],
                "drain": current is not None and current.state == "draining", "leaseGraceSeconds": self.lease_grace}

    async def push_logs(self, node: Node, job_id: str, attempt: int, lines: list[dict[str, Any]]) -> int:
        # Lines do not move a job to RUNNING: only heartbeats do, which a node sends one at a time, so that a job
        # left out of a heartbeat is surely one the node no longer runs (see heartbeat).
        job = await self._lease(node, job_id, attempt)
        async with self.db.transaction() as tx:
            added = await job_store.add_log_lines(tx, job.id, attempt, lines)
        self.signals.notify(f"logs:{job_id}")
        return added

    async def _started(self, tx: aiosqlite.Connection, job: Job, node: Node) -> Job | None:
        return await self._transition(tx, job, JobState.RUNNING, expect=(JobState.ASSIGNED,),
                                      fields={"started_at": utcnow()}, expect_node=node.id)

    async def result(self, node: Node, job_id: str, attempt: int, outcome: dict[str, Any]) -> Job:
        job = await self._lease(node, job_id, attempt)
        state = outcome["state"]
        if job.terminal:
            if job.state == state and job.exit_code == outcome.get("exitCode"):
                return job  # the same result sent again (a retried request): already recorded
            raise Conflict(f"Job {job_id} attempt {attempt} already ended {job.state}; one result per attempt.")
        async with self.db.transaction() as tx:
            if job.state == JobState.ASSIGNED and outcome.get("exitCode") is not None:
                # It ran, though its result outran the heartbeat that reports the start: its history says so.
                job = await self._started(tx, job, node) or job
            after = await self._transition(
                tx, job, state, expect=ACTIVE, expect_node=node.id, reason=outcome.get("reason"),
                fields={"exit_code": outcome.get("exitCode"), "runtime_ms": outcome.get("runtimeMs"),
                        "cpu_seconds": outcome.get("cpuSeconds", 0.0), "gpu_seconds": outcome.get("gpuSeconds", 0.0),
                        "gb_seconds": outcome.get("gbSeconds", 0.0), "finished_at": utcnow(),
                        "started_at": job.started_at or utcnow(), "lease_expires_at": None})
        if after is None:
            raise Conflict(f"Node {node.id} lost the lease on job {job_id} before its result arrived.",
                           code="lease_lost")
        self.signals.notify(f"logs:{job_id}")
        self._changed(job.project_id)
        return after

    # ---- leases -------------------------------------------------------------------------------------------------

    async def reap(self) -> int:
        """Take back leases of silent nodes: requeue with attempt + 1, or fail with `node_lost` past the maximum."""
        moved = 0
        for job in await job_store.expired_leases(self.db, utcnow()):
            async with self.db.transaction() as tx:
                after = await self._take_back(tx, job)
            if after is not None:
                moved += 1
                log.warning("job %s lost its node %s: now %s (attempt %d)", job.id, job.node_id, after.state,
                            after.attempt)
                self._changed(job.project_id)
        cutoff = iso_in(-self.lease_grace)
        for node in await node_store.silent_since(self.db, cutoff):
            async with self.db.transaction() as tx:
                await node_store.set_state(tx, node.id, "offline")
        return moved

    async def _take_back(self, tx: aiosqlite.Connection, job: Job) -> Job | None:
        """A job its node no longer runs: cancelled if that was asked, else queued again as its next attempt, or
        failed `node_lost` past its maximum."""
        if job.cancel_requested:
            return await self._transition(tx, job, JobState.CANCELLED, expect=ACTIVE, reason="cancelled",
                                          fields={"finished_at": utcnow(), "lease_expires_at": None})
        if job.attempt < job.max_attempts:
            return await self._transition(tx, job, JobState.QUEUED, expect=ACTIVE, reason="node_lost", fields={
                "attempt": job.attempt + 1, "node_id": None, "lease_expires_at": None, "started_at": None})
        return await self._transition(tx, job, JobState.FAILED, expect=ACTIVE, reason="node_lost",
                                      fields={"finished_at": utcnow(), "lease_expires_at": None})

    async def run_reaper(self, interval: float) -> None:
        while True:
            try:
                await self.reap()
            except Exception:
                log.exception("lease reaper failed; retrying")
            await asyncio.sleep(interval)
