"""WorkflowService: workflow records, and the execution lifecycle (start, follow, approve, cancel, reconcile, prune).

Executions run in this process as asyncio tasks (executor.Run), at most `workflow_max_concurrent` at once. Every
change is in the database first, so a restart loses nothing: at open, executions that were pending, running or
waiting for approval are *resumed* from their finished nodes (a node that was mid-run runs again; a job node
reattaches to the same compute job; a waiting approval is announced again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.agents.service import AgentService
from runtime.auth.access import WRITE, ProjectContext, allows
from runtime.auth.principal import Principal
from runtime.compute.jobs import JobService
from runtime.config import Settings
from runtime.errors import Conflict, NotFound, TarxError
from runtime.inference.chat import ChatService
from runtime.rag import RagService
from runtime.store import Database, identity, utcnow
from runtime.store import executions as store
from runtime.store import workflows as wf_store
from runtime.store.db import iso_in
from runtime.store.executions import CANCELLED, COMPLETED, REJECTED, WAITING, Event, Execution, NodeResult
from runtime.store.workflows import Workflow
from runtime.workflows import graph as g
from runtime.workflows.executor import TERMINAL_EVENTS, Deps, Journal, Recorder, Run

log = logging.getLogger("tarx.workflows")

TRIGGERS = ("manual", "schedule", "webhook")
PRUNE_INTERVAL_SECONDS = 3600


class ExecutionLimit(TarxError):
    """Seed 001: 100 workflow executions per hour per project."""

    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


@dataclass(frozen=True)
class WorkflowView:
    workflow: Workflow
    schedule: dict[str, Any] | None


@dataclass(frozen=True)
class ExecutionView:
    execution: Execution
    nodes: list[NodeResult]


@dataclass(frozen=True)
class ExecutionLogs:
    execution: Execution
    nodes: list[NodeResult]
    events: list[Event]


@dataclass(frozen=True)
class ExecutionPage:
    items: list[Execution]
    next_cursor: str | None


class WorkflowService:
    def __init__(self, settings: Settings, db: Database, chat: ChatService, agents: AgentService, rag: RagService,
                 jobs: JobService, stopping: asyncio.Event) -> None:
        self.settings = settings
        self.db = db
        self.deps = Deps(settings, db, chat, agents, rag, jobs, stopping)
        self.stopping = stopping
        # Set by the schedules (runtime/workflows/scheduler.py): a workflow's schedule for its GET, or None.
        self.schedule_info: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
        self._runs: dict[str, Run] = {}
        self._limiter = asyncio.Semaphore(settings.workflow_max_concurrent)
        self._watch: dict[str, asyncio.Event] = {}
        self.journal = Journal(db, self._notify)
        self._graphs: dict[tuple[str, int], g.Graph] = {}  # parsed graphs by (workflow, version): parsed once
        self._pruner: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Reconcile what a crash or stop left unfinished (resume it), and start pruning old executions."""
        for ex in await store.unfinished(self.db):
            recorder = Recorder(self.journal, ex.id, await store.last_seq(self.db, ex.id))
            await recorder.write("execution_resumed", {"execution_id": ex.id, "status": ex.status,
                                                       "reason": "runtime_restarted", "timestamp": utcnow()})
            await self._launch(ex, recorder, await store.nodes(self.db, ex.id))
        if self.settings.workflow_retention_days > 0:
            self._pruner = asyncio.create_task(self._prune_forever(), name="tarx-workflow-prune")

    async def close(self) -> None:
        """Stop the runs without recording an outcome: they resume at the next start."""
        if self._pruner is not None:
            self._pruner.cancel()
        runs = list(self._runs.values())
        for run in runs:
            run.stop()
        tasks = [t for t in (self._pruner, *(r.task for r in runs)) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.journal.drain()
        for event in self._watch.values():
            event.set()

    async def prune(self) -> int:
        """Delete finished executions older than the retention period."""
        cutoff = iso_in(-self.settings.workflow_retention_days * 86400)
        async with self.db.transaction() as tx:
            return await store.prune(tx, cutoff)

    async def _prune_forever(self) -> None:
        while True:
            try:
                removed = await self.prune()
                if removed:
                    log.info("pruned %d finished executions past the retention period", removed)
            except Exception:
                log.exception("pruning executions failed; retrying later")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    # ---- workflow records ---------------------------------------------------------------------------------------

    async def _view(self, wf: Workflow) -> WorkflowView:
        schedule = await self.schedule_info(wf.id) if self.schedule_info is not None else None
        return WorkflowView(wf, schedule)

    async def create(self, ctx: ProjectContext, name: str, description: str, nodes: list[dict[str, Any]],
                     edges: list[dict[str, Any]]) -> WorkflowView:
        graph = g.parse(nodes, edges)
        wire = graph.wire()
        async with self.db.transaction() as tx:
            wf = await wf_store.insert(tx, ctx.project.id, ctx.principal.user.id, name, description, wire["nodes"],
                                       wire["edges"])
        return await self._view(wf)

    async def list(self, ctx: ProjectContext) -> list[WorkflowView]:
        return [await self._view(wf) for wf in await wf_store.list_for(self.db, ctx.project.id)]

    async def get_workflow(self, project_id: str, workflow_id: str) -> Workflow:
        """The project's workflow, else NotFound (another project's is never revealed)."""
        wf = await wf_store.get(self.db, project_id, workflow_id)
        if wf is None:
            raise NotFound(f"No workflow '{workflow_id}' in this project.")
        return wf

    async def get(self, ctx: ProjectContext, workflow_id: str) -> WorkflowView:
        return await self._view(await self.get_workflow(ctx.project.id, workflow_id))

    async def update(self, ctx: ProjectContext, workflow_id: str, fields: dict[str, Any]) -> WorkflowView:
        wf = await self.get_workflow(ctx.project.id, workflow_id)
        if "nodes" in fields or "edges" in fields:
            graph = g.parse(fields.get("nodes", wf.nodes), fields.get("edges", wf.edges))
            fields = {**fields, **graph.wire()}
        async with self.db.transaction() as tx:
            if not await wf_store.update(tx, ctx.project.id, workflow_id, fields):
                raise NotFound(f"No workflow '{workflow_id}' in this project.")
        return await self.get(ctx, workflow_id)

    async def delete(self, ctx: ProjectContext, workflow_id: str) -> None:
        await self.get_workflow(ctx.project.id, workflow_id)
        for run in [r for r in self._runs.values() if r.execution.workflow_id == workflow_id]:
            run.stop()  # its executions go with the workflow
        async with self.db.transaction() as tx:
            await wf_store.delete(tx, ctx.project.id, workflow_id)

    # ---- starting executions ------------------------------------------------------------------------------------

    async def execute(self, ctx: ProjectContext, workflow_id: str, input: Any) -> Execution:
        execution_id = await self.start_execution(ctx.project.id, workflow_id, input, trigger="manual",
                                                  actor_user_id=ctx.principal.user.id)
        ex = await store.get(self.db, execution_id)
        assert ex is not None
        return ex

    async def start_execution(self, project_id: str, workflow_id: str, input: Any, *, trigger: str,
                              actor_user_id: str | None = None) -> str:
        """Start a run of the workflow's current version; returns the execution id at once (it runs in the
        background). Unknown or other-project workflow: NotFound. Over the hourly limit: 429. The run acts as
        `actor_user_id` (default: the workflow's creator)."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        wf = await self.get_workflow(project_id, workflow_id)
        actor = actor_user_id or wf.created_by
        limit = self.settings.workflow_executions_per_hour
        async with self.db.transaction() as tx:
            if limit > 0:
                since = iso_in(-3600)
                if await store.count_since(tx, project_id, since) >= limit:
                    oldest = await store.oldest_since(tx, project_id, since)
                    retry = _seconds_until(oldest, 3600) if oldest else 60
                    raise ExecutionLimit(
                        f"This project has started {limit} workflow executions in the past hour, its limit; "
                        f"retry in {retry} s.", headers={"Retry-After": str(retry)},
                        extra={"error_code": "RATE_LIMIT_EXCEEDED", "retry_after_seconds": retry})
            ex = await store.insert(tx, project_id=project_id, workflow_id=wf.id, workflow_version=wf.version,
                                    graph={"nodes": wf.nodes, "edges": wf.edges}, trigger=trigger, input=input,
                                    actor_user_id=actor)
        await self._launch(ex, Recorder(self.journal, ex.id, 0), [])
        return ex.id

    async def _context(self, ex: Execution) -> ProjectContext | None:
        """The project context the run acts in: its user, as a member of the project."""
        if ex.actor_user_id is None:
            return None
        user = await identity.get_user(self.db, ex.actor_user_id)
        project = await identity.project_for(self.db, ex.actor_user_id, ex.project_id)
        if user is None or project is None:
            return None
        return ProjectContext(Principal(user=user, via="workflow", key=None, client=None), project)

    async def _launch(self, ex: Execution, recorder: Recorder, prior: list[NodeResult]) -> None:
        ctx = await self._context(ex)
        if ctx is None or not allows(ctx.project.role, WRITE):
            await recorder.write("execution_failed", {
                "execution_id": ex.id, "status": "failed",
                "error": "the user this execution runs as is no longer an editor of the project"},
                lambda tx: store.set_status(tx, ex.id, "failed", expect=store.UNFINISHED,
                                            error="the user this execution runs as is no longer an editor "
                                                  "of the project"))
            return
        key = (ex.workflow_id, ex.workflow_version)
        graph = self._graphs.get(key)
        if graph is None:
            if len(self._graphs) >= 256:
                self._graphs.clear()
            graph = self._graphs[key] = g.from_record(ex.graph)
        run = Run(self.deps, ex, ctx, graph, prior, recorder)
        self._runs[ex.id] = run
        run.task = asyncio.create_task(run.run(self._limiter), name=f"tarx-execution-{ex.id}")
        run.task.add_done_callback(lambda _t, i=ex.id: self._runs.pop(i, None))  # type: ignore[misc]

    async def wait(self, execution_id: str) -> Execution | None:
        """The execution once its run in this process has ended (at once if none is running)."""
        run = self._runs.get(execution_id)
        if run is not None and run.task is not None:
            await asyncio.gather(run.task, return_exceptions=True)
        return await store.get(self.db, execution_id)

    # ---- reading executions -------------------------------------------------------------------------------------

    async def _execution(self, ctx: ProjectContext, execution_id: str) -> Execution:
        ex = await store.get(self.db, execution_id, ctx.project.id)
        if ex is None:
            raise NotFound(f"No execution '{execution_id}' in this project.")
        return ex

    async def execution(self, ctx: ProjectContext, execution_id: str) -> ExecutionView:
        ex = await self._execution(ctx, execution_id)
        return ExecutionView(ex, _in_graph_order(ex, await store.nodes(self.db, ex.id)))

    async def list_executions(self, ctx: ProjectContext, *, workflow_id: str | None = None,
                              status: str | None = None, cursor: str | None = None, limit: int = 20
                              ) -> ExecutionPage:
        if workflow_id is not None:
            await self.get_workflow(ctx.project.id, workflow_id)
        rows = await store.list_for(self.db, ctx.project.id, workflow_id=workflow_id, status=status, before=cursor,
                                    limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ExecutionPage(rows, rows[-1].id if more and rows else None)

    async def logs(self, ctx: ProjectContext, execution_id: str) -> ExecutionLogs:
        ex = await self._execution(ctx, execution_id)
        events: list[Event] = []
        while True:
            batch = await store.events_after(self.db, ex.id, events[-1].seq if events else 0, 1000)
            events += batch
            if len(batch) < 1000:
                break
        return ExecutionLogs(ex, _in_graph_order(ex, await store.nodes(self.db, ex.id)), events)

    async def events(self, ctx: ProjectContext, execution_id: str, after: int) -> AsyncIterator[Event]:
        """The execution's events after `after`; live until its terminal event, then the iterator ends. A
        refusal (unknown execution) raises here, before any event."""
        ex = await self._execution(ctx, execution_id)
        return self._follow(ex.id, after)

    async def _follow(self, execution_id: str, after: int) -> AsyncIterator[Event]:
        while not self.stopping.is_set():
            wake = self._watch.setdefault(execution_id, asyncio.Event())  # before reading: no wake-up is lost
            batch = await store.events_after(self.db, execution_id, after)
            for event in batch:
                after = event.seq
                yield event
                if event.event in TERMINAL_EVENTS:
                    return
            if batch:
                continue
            ex = await store.get(self.db, execution_id)
            if ex is None or (ex.finished and execution_id not in self._runs):
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await wake.wait()

    def _notify(self, execution_id: str) -> None:
        wake = self._watch.pop(execution_id, None)
        if wake is not None:
            wake.set()

    # ---- approval and cancel ------------------------------------------------------------------------------------

    async def approve(self, ctx: ProjectContext, execution_id: str, approved: bool, comment: str | None,
                      node_id: str | None = None) -> ExecutionView:
        """Decide a waiting human-in-loop node (the given one, else the first waiting): approved resumes the run,
        rejected ends it as `rejected`. The decision is stored before the run hears of it, so it survives a
        restart."""
        ex = await self._execution(ctx, execution_id)
        if ex.status != WAITING:
            raise Conflict(f"Execution '{execution_id}' is not waiting for approval (it is {ex.status}).")
        waiting = [n for n in await store.nodes(self.db, ex.id) if n.status == WAITING]
        chosen = next((n for n in waiting if node_id is None or n.node_id == node_id), None)
        if chosen is None:
            raise Conflict(f"Node '{node_id}' of execution '{execution_id}' is not waiting for approval."
                           if node_id else f"Execution '{execution_id}' has no node waiting for approval.")
        decision = {"approved": approved, "comment": comment, "by": ctx.principal.user.id}

        async def decide(tx: Any) -> bool:
            nodes = {n.node_id: n for n in await store.nodes(tx, ex.id)}
            if nodes[chosen.node_id].status != WAITING:
                return False
            await store.node_finished(tx, ex.id, chosen.node_id, chosen.node_type,
                                      COMPLETED if approved else REJECTED, output=decision, completed_at=utcnow(),
                                      duration_ms=None)
            return True

        run = self._runs.get(ex.id)
        recorder = run.recorder if run is not None else Recorder(self.journal, ex.id,
                                                                 await store.last_seq(self.db, ex.id))
        if not await recorder.write("approval_received", {"node_id": chosen.node_id, **decision}, decide):
            raise Conflict(f"Node '{chosen.node_id}' was decided already.")
        if run is not None:
            run.approve(chosen.node_id, approved, comment, ctx.principal.user.id)
        await asyncio.sleep(0)  # let the run take the decision before answering
        return await self.execution(ctx, execution_id)

    async def cancel(self, ctx: ProjectContext, execution_id: str) -> ExecutionView:
        """Cancel an unfinished execution: it is `cancelled` at once; a generation in progress stops at once,
        other nodes are asked to stop and are stopped forcibly after the grace period. Idempotent."""
        ex = await self._execution(ctx, execution_id)
        if not ex.finished:
            run = self._runs.get(ex.id)
            recorder = run.recorder if run is not None else Recorder(
                self.journal, ex.id, await store.last_seq(self.db, ex.id))
            await recorder.write(
                "execution_failed", {"execution_id": ex.id, "status": CANCELLED, "error": "cancelled"},
                lambda tx: store.set_status(tx, ex.id, CANCELLED, expect=store.UNFINISHED, error="cancelled",
                                            reason="cancelled_by_user"))
            if run is not None:
                run.cancel(self.settings.workflow_cancel_grace_seconds)
        return await self.execution(ctx, execution_id)


def _in_graph_order(ex: Execution, nodes: list[NodeResult]) -> list[NodeResult]:
    order = {n["id"]: i for i, n in enumerate(ex.graph["nodes"])}
    return sorted(nodes, key=lambda n: order.get(n.node_id, len(order)))


def _seconds_until(stamp: str, plus: float) -> int:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(seconds=plus)
    return max(1, int((moment - datetime.now(UTC)).total_seconds()) + 1)
