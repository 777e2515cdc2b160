"""Running one execution: nodes start as soon as every predecessor has finished (independent branches run
concurrently), outputs pass along edges, each attempt has a time limit, failures retry with exponential backoff,
and every step is recorded (node rows and numbered events) in the same transaction.

A node runs when at least one incoming edge is *active*: its source completed, its condition (if any) holds, and,
out of a condition node, its label (`true`/`false`, or none) matches the result. A node none of whose incoming
edges is active is skipped, and so on downstream. The first node that fails for good fails the execution and
cancels the rest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import httpx

from runtime.agents import addresses
from runtime.agents.addresses import AddressRefused, BodyTooLarge
from runtime.agents.loop import Done, Error
from runtime.agents.service import AgentService
from runtime.auth.access import ProjectContext
from runtime.compute.jobs import JobService, JobSpec
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.results import Final, TextDelta
from runtime.inference.schemas import ChatCompletionRequest, ChatMessage
from runtime.rag import RagService
from runtime.store import Database, utcnow
from runtime.store import executions as store
from runtime.store.executions import (
    CANCELLED,
    COMPLETED,
    FAILED,
    REJECTED,
    RUNNING,
    UNFINISHED,
    WAITING,
    Execution,
    NodeResult,
)
from runtime.workflows import graph as g
from runtime.workflows import templates
from runtime.workflows.templates import TemplateFailure

log = logging.getLogger("tarx.workflows")

TERMINAL_EVENTS = ("execution_complete", "execution_failed")
INSTANT = frozenset({"trigger", "conditionNode", "transformNode", "outputNode"})
MAX_HTTP_BODY = 1_000_000
RESERVED = frozenset({"input", "trigger", "prev", "nodes", "execution_id", "workflow_id"})


class NodeError(Exception):
    """A node's failure. `retry`: whether another attempt might succeed (a bad template never will)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class NodeCancelled(Exception):
    """A node that stopped because the execution was cancelled."""


@dataclass
class Deps:
    """What nodes reach: the runtime's services, passed in by WorkflowService."""

    settings: Settings
    db: Database
    chat: ChatService
    agents: AgentService
    rag: RagService
    jobs: JobService
    stopping: asyncio.Event


Change = Callable[[aiosqlite.Connection], Awaitable[bool | None]]
Row = tuple[str, Sequence[Any]]  # (sql, parameters) from the store, written with executemany in a batch
MAX_BATCH = 500


@dataclass
class _Entry:
    recorder: Recorder
    change: Change | Row | None
    events: list[tuple[str, dict[str, Any]]]
    future: asyncio.Future[bool]


class Journal:
    """Group commit for every execution's changes and events: entries are applied in the order they were
    submitted, many to one transaction, and each event gets its execution's next sequence number when its change
    is applied (a change that returns False records no event, and leaves no gap). Followers are woken after the
    commit. One bad change does not sink the others in its batch: they are retried one by one."""

    def __init__(self, db: Database, notify: Callable[[str], None]) -> None:
        self.db = db
        self.notify = notify
        self._pending: list[_Entry] = []
        self._flushing: asyncio.Task[None] | None = None

    def submit(self, entry: _Entry) -> None:
        self._pending.append(entry)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="tarx-workflow-journal")

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results: list[bool | BaseException] = list(await self._apply(batch))
            except Exception:
                results = []
                for entry in batch:
                    try:
                        results += await self._apply([entry])
                    except Exception as err:
                        results.append(err)
            woken = set()
            for entry, result in zip(batch, results, strict=True):
                if entry.future.done():  # its waiter went away (cancelled): the write stands all the same
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)
                    if result and entry.events:
                        woken.add(entry.recorder.execution_id)
            for execution_id in woken:
                self.notify(execution_id)

    async def _apply(self, batch: list[_Entry]) -> list[bool]:
        seqs: dict[Recorder, int] = {}
        oks: list[bool] = []
        rows: list[tuple[str, int, str, dict[str, Any]]] = []
        group: list[Sequence[Any]] = []
        group_sql = ""
        async with self.db.transaction() as tx:
            for entry in batch:
                change = entry.change
                if isinstance(change, tuple):  # a plain row: gathered with the rows like it that follow
                    if group and change[0] != group_sql:
                        await tx.executemany(group_sql, group)
                        group = []
                    group_sql = change[0]
                    group.append(change[1])
                    ok = True
                else:
                    if group:  # rows before a change are written before it, as submitted
                        await tx.executemany(group_sql, group)
                        group = []
                    ok = change is None or (await change(tx)) is not False
                oks.append(ok)
                if ok:
                    for name, data in entry.events:
                        seq = seqs.get(entry.recorder, entry.recorder.seq) + 1
                        seqs[entry.recorder] = seq
                        rows.append((entry.recorder.execution_id, seq, name, {"type": name, **data}))
            if group:
                await tx.executemany(group_sql, group)
            if rows:
                await store.add_events(tx, rows)
        for recorder, seq in seqs.items():  # only once committed
            recorder.seq = seq
        return oks


class Recorder:
    """One execution's writes through the journal: `post` returns at once (written behind, in order), `write`
    waits until the change is committed."""

    def __init__(self, journal: Journal, execution_id: str, seq: int) -> None:
        self.journal = journal
        self.execution_id = execution_id
        self.seq = seq  # the last event's sequence number that is committed

    def post(self, events: list[tuple[str, dict[str, Any]]], change: Change | Row | None = None
             ) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._failed)
        self.journal.submit(_Entry(self, change, events, future))
        return future

    async def write(self, event: str | None, data: dict[str, Any] | None = None, change: Change | None = None
                    ) -> bool:
        """Apply `change` and record `event` atomically, once committed; False: the change did not apply."""
        return await self.post([(event, data or {})] if event is not None else [], change)

    def _failed(self, future: asyncio.Future[bool]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("execution %s: a write failed: %s", self.execution_id, future.exception())


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)


class Run:
    """One execution's run in this process (`task` runs it). Built from the execution's stored state, so a run
    resumed after a restart continues from its finished nodes."""

    def __init__(self, deps: Deps, execution: Execution, ctx: ProjectContext, graph: g.Graph,
                 prior: list[NodeResult], recorder: Recorder) -> None:
        self.deps = deps
        self.execution = execution
        self.ctx = ctx
        self.graph = graph
        self.recorder = recorder
        self.id = execution.id
        self.outputs: dict[str, Any] = {}
        self.status: dict[str, str] = {}  # node id -> completed | skipped | failed | ...
        self.finished_order: list[str] = []
        self.decided: dict[str, NodeResult] = {}  # approval nodes already decided (before a restart)
        for r in prior:
            if r.status in (COMPLETED, "skipped"):
                self.status[r.node_id] = r.status
                self.outputs[r.node_id] = r.output
                if r.status == COMPLETED:
                    self.finished_order.append(r.node_id)
            elif r.status == REJECTED:
                self.decided[r.node_id] = r
        self.tasks: dict[asyncio.Task[Any], str] = {}
        self.cancel_event = asyncio.Event()
        self.cancelled = False
        self.approvals: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
        self.waiting: set[str] = set()
        # Decisions (approved, comment, by) that came before the wait (after a restart).
        self.early: dict[str, tuple[bool, str | None, str | None]] = {}
        self.interrupted: list[str] = []  # nodes whose tasks were cancelled
        self.instant_errors: dict[str, Exception] = {}  # template nodes that failed inline, for the task path
        self.started_at = execution.started_at
        # Trigger nodes of the execution's kind start it; when none is of that kind (a manual run of a scheduled
        # workflow), every trigger does. The others are skipped, and what only they lead to.
        kinds = {n.id: getattr(n.config, "trigger_type", "manual") for n in graph.triggers}
        matching = {i for i, k in kinds.items() if k == execution.trigger}
        self.idle_triggers = set(kinds) - matching if matching else set()
        self.task: asyncio.Task[None] | None = None

    # ---- control from outside -----------------------------------------------------------------------------------

    def approve(self, node_id: str, approved: bool, comment: str | None, by: str | None = None) -> None:
        future = self.approvals.get(node_id)
        if future is None:
            self.early[node_id] = (approved, comment, by)
        elif not future.done():
            future.set_result((approved, comment, by))

    def cancel(self, grace: float) -> None:
        """Cooperative first (the cancel event), at once for generations (closing their stream stops them), and
        forcibly for the rest after `grace` seconds."""
        if self.cancelled:
            return
        self.cancelled = True
        self.cancel_event.set()
        for task, node_id in list(self.tasks.items()):
            if self.graph.nodes[node_id].type in ("llmNode", "agentNode", "humanInLoopNode"):
                task.cancel()
        loop = asyncio.get_running_loop()
        loop.call_later(grace, self._force)

    def _force(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    def stop(self) -> None:
        """The runtime is stopping: end the run without recording an outcome (it resumes at the next start)."""
        self._force()
        if self.task is not None:
            self.task.cancel()

    # ---- the run ------------------------------------------------------------------------------------------------

    async def run(self, limiter: asyncio.Semaphore) -> None:
        try:
            async with limiter:
                await self._run()
        except asyncio.CancelledError:
            self._force()
            raise
        except Exception as err:  # a bug of ours: the execution fails visibly instead of hanging
            log.exception("execution %s crashed", self.id)
            if not self.deps.stopping.is_set():
                await self._finish(FAILED, error=f"internal error: {type(err).__name__}: {err}")

    async def _run(self) -> None:
        if self.cancelled:
            await self._finish_cancelled()
            return
        ex = self.execution
        if ex.status == "pending":
            self.started_at = utcnow()
            self.recorder.post([("execution_start", {"execution_id": self.id, "status": RUNNING,
                                                     "timestamp": self.started_at})],
                               lambda tx: store.set_status(tx, self.id, RUNNING, expect=("pending",)))
        for node_id, rejected in self.decided.items():  # rejected before a restart: finish as rejected
            await self._finish(REJECTED, error=f"node '{node_id}' was rejected"
                               + (f": {rejected.output.get('comment')}" if isinstance(rejected.output, dict)
                                  and rejected.output.get("comment") else ""))
            return
        resolved = set(self.status)
        pending = {n for n in self.graph.nodes if n not in resolved}
        failure: tuple[str, str] | None = None
        rejection: str | None = None
        while pending or self.tasks:
            progressed = True
            while progressed:  # start or skip every node whose predecessors are all resolved
                progressed = False
                for node_id in sorted(pending):
                    incoming = self.graph.incoming[node_id]
                    if any(e.source not in resolved for e in incoming):
                        continue
                    pending.discard(node_id)
                    if (incoming and not any(self._active(e) for e in incoming)) or node_id in self.idle_triggers:
                        await self._skip(node_id)
                        resolved.add(node_id)
                        progressed = True
                        continue
                    node = self.graph.nodes[node_id]
                    if node.type in INSTANT and self._instant(node):
                        resolved.add(node_id)
                        progressed = True
                        continue
                    task = asyncio.create_task(self._node(node), name=f"wf-{self.id}-{node_id}")
                    self.tasks[task] = node_id
            if not self.tasks:
                break
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node_id = self.tasks.pop(task)
                if task.cancelled():
                    self.interrupted.append(node_id)
                    continue
                err = task.exception()
                if isinstance(err, _Rejected):
                    rejection = str(err)
                elif err is not None:
                    failure = (node_id, str(err))
                else:
                    resolved.add(node_id)
            if failure or rejection or self.cancelled:
                break
        if self.deps.stopping.is_set() and not self.cancelled:
            await self._drain()
            return  # the runtime is stopping: the execution resumes at the next start
        if self.cancelled:
            await self._drain()
            await self._finish_cancelled()
        elif rejection is not None:
            await self._drain()
            await self._finish(REJECTED, error=rejection)
        elif failure is not None:
            await self._drain()
            await self._finish(FAILED, error=f"node '{failure[0]}' failed: {failure[1]}")
        else:
            await self._finish(COMPLETED, output=self._output())

    async def _drain(self) -> None:
        """Stop what still runs (the first failure decides the outcome)."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        stopped = [*self.interrupted, *self.tasks.values()]
        self.tasks.clear()
        if stopped and not self.deps.stopping.is_set():
            now = utcnow()

            async def mark(tx: aiosqlite.Connection) -> None:
                for node_id in stopped:
                    await store.node_finished(tx, self.id, node_id, self.graph.nodes[node_id].type, CANCELLED,
                                              error="cancelled", completed_at=now, duration_ms=None)
            await self.recorder.write(None, change=mark)

    def _output(self) -> Any:
        outs = [n for n in self.finished_order if self.graph.nodes[n].type == "outputNode"]
        if len(outs) == 1:
            return self.outputs[outs[0]]
        if outs:
            return {n: self.outputs[n] for n in outs}
        return self.outputs[self.finished_order[-1]] if self.finished_order else None

    async def _finish(self, status: str, *, output: Any = None, error: str | None = None) -> None:
        started = self.started_at or self.execution.created_at
        data: dict[str, Any] = {"execution_id": self.id, "status": status, "duration_ms": _duration_since(started)}
        if status == COMPLETED:
            data["output"] = output
        else:
            data["error"] = error
        await self.recorder.write(
            "execution_complete" if status == COMPLETED else "execution_failed", data,
            lambda tx: store.set_status(tx, self.id, status, expect=UNFINISHED, output=output, error=error))

    async def _finish_cancelled(self) -> None:
        await self._finish(CANCELLED, error="cancelled")

    # ---- edges and context --------------------------------------------------------------------------------------

    def _active(self, edge: g.Edge) -> bool:
        if self.status.get(edge.source) != COMPLETED:
            return False
        source = self.graph.nodes[edge.source]
        if source.type == "conditionNode" and edge.label is not None:
            if edge.label != ("true" if self.outputs.get(edge.source) else "false"):
                return False
        if edge.condition:
            try:
                return templates.truthy(edge.condition, self._context(edge.target))
            except TemplateFailure as err:
                log.info("execution %s: condition on %s -> %s: %s", self.id, edge.source, edge.target, err)
                return False
        return True

    def _context(self, node_id: str) -> dict[str, Any]:
        done = {n: {"output": self.outputs[n], "status": s} for n, s in self.status.items() if s == COMPLETED}
        preds = [e.source for e in self.graph.incoming[node_id] if e.source in done]
        if not preds:
            prev = self.execution.input
        elif len(preds) == 1:
            prev = done[preds[0]]["output"]
        else:
            prev = {p: done[p]["output"] for p in preds}
        ctx: dict[str, Any] = {n: v for n, v in done.items() if n.isidentifier() and n not in RESERVED}
        ctx.update(input=self.execution.input, trigger=self.execution.trigger, prev=prev, nodes=done,
                   execution_id=self.id, workflow_id=self.execution.workflow_id)
        return ctx

    # ---- one node -----------------------------------------------------------------------------------------------

    async def _skip(self, node_id: str) -> None:
        self.status[node_id] = "skipped"
        self.outputs[node_id] = None
        node_type, now = self.graph.nodes[node_id].type, utcnow()
        self.recorder.post(
            [("node_skipped", {"node_id": node_id, "node_type": node_type, "timestamp": now})],
            lambda tx: store.node_finished(tx, self.id, node_id, node_type, "skipped", completed_at=now,
                                           duration_ms=0))

    def _instant(self, node: g.Node) -> bool:
        """Run a template node inline (no task, no wait: its writes join the run's next batch). False when it
        fails: the task path then runs it again with its retries, and records the failure."""
        started, t0 = utcnow(), time.monotonic()
        context = self._context(node.id)
        try:
            output = self._template_node(node, context)
        except Exception as err:
            self.instant_errors[node.id] = err  # the task path reports it (rendering again would fail again)
            return False
        self.status[node.id] = COMPLETED
        self.outputs[node.id] = output
        self.finished_order.append(node.id)
        duration = _ms(t0)
        self.recorder.post(
            [("node_start", {"node_id": node.id, "node_type": node.type, "timestamp": started}),
             ("node_complete", {"node_id": node.id, "node_type": node.type, "output": output,
                                "duration_ms": duration})],
            store.node_ran(self.id, node.id, node.type, input=context["prev"], output=output, attempts=1,
                           started_at=started, completed_at=utcnow(), duration_ms=duration))
        return True

    def _template_node(self, node: g.Node, context: dict[str, Any]) -> Any:
        c: Any = node.config
        if node.type == "trigger":
            return self.execution.input
        if node.type == "conditionNode":
            return templates.truthy(c.condition, context)
        if node.type == "transformNode":
            if c.mapping is not None:
                return {k: templates.render_value(v, context) for k, v in c.mapping.items()}
            return templates.render_value(c.template or "{{ prev }}", context)
        return templates.render_value(c.template, context)  # outputNode

    async def _node(self, node: g.Node) -> None:
        started, t0 = utcnow(), time.monotonic()
        context = self._context(node.id)
        node_input = context["prev"]
        start_event = ("node_start", {"node_id": node.id, "node_type": node.type, "timestamp": started})

        async def start(tx: aiosqlite.Connection) -> None:
            await store.node_started(tx, self.id, node.id, node.type, node_input, started)

        # A node that runs in a moment (a template) is recorded once it is done, start and outcome in one write;
        # one that waits on the world is recorded as started first.
        deferred = node.type in INSTANT
        if not deferred:
            self.recorder.post([start_event], start)
        config = node.config
        timeout = float(config.timeout_seconds or self.deps.settings.workflow_node_timeout_seconds)
        attempt = 0
        while True:
            try:
                if node.type == "humanInLoopNode":  # waiting for a person has no time limit
                    output = await self._approval(node, context, t0)
                else:
                    async with asyncio.timeout(timeout):
                        output = await self._execute(node, context, attempt)
                break
            except _Rejected:
                raise
            except NodeCancelled as err:
                await self._node_failed(node, "cancelled", t0, CANCELLED)
                raise NodeError("cancelled", retry=False) from err
            except TimeoutError:
                error, retry = f"timed out after {timeout:g} s", True
            except TemplateFailure as err:
                error, retry = f"template error: {err}", False
            except NodeError as err:
                error, retry = str(err), err.retry
            except asyncio.CancelledError:
                raise
            except Exception as err:
                error, retry = f"{type(err).__name__}: {err}", True
            if retry and attempt < config.retries and not self.cancelled and not self.deps.stopping.is_set():
                attempt += 1
                if deferred:
                    self.recorder.post([start_event], start)
                    deferred = False
                self.recorder.post([("node_retry", {"node_id": node.id, "attempt": attempt + 1, "error": error})],
                                   lambda tx, e=error: store.node_attempt(tx, self.id, node.id, e))  # type: ignore[misc]
                await asyncio.sleep(float(config.retry_backoff_seconds) * 2 ** (attempt - 1))
                continue
            if deferred:
                self.recorder.post([start_event], start)
            await self._node_failed(node, error, t0, FAILED)
            raise NodeError(error)
        self.status[node.id] = COMPLETED
        self.outputs[node.id] = output
        self.finished_order.append(node.id)
        duration, now = _ms(t0), utcnow()
        done = ("node_complete", {"node_id": node.id, "node_type": node.type, "output": output,
                                  "duration_ms": duration})
        if deferred:
            self.recorder.post([start_event, done], store.node_ran(
                self.id, node.id, node.type, input=node_input, output=output, attempts=attempt + 1,
                started_at=started, completed_at=now, duration_ms=duration))
        else:
            self.recorder.post([done], lambda tx: store.node_finished(
                tx, self.id, node.id, node.type, COMPLETED, output=output, completed_at=now, duration_ms=duration))

    async def _node_failed(self, node: g.Node, error: str, t0: float, status: str) -> None:
        self.status[node.id] = status
        duration = _ms(t0)
        if self.deps.stopping.is_set():
            return  # left as it is: the node runs again when the execution resumes
        await self.recorder.write(
            "node_failed", {"node_id": node.id, "node_type": node.type, "error": error, "duration_ms": duration},
            lambda tx: store.node_finished(tx, self.id, node.id, node.type, status, error=error,
                                           completed_at=utcnow(), duration_ms=duration))

    async def _execute(self, node: g.Node, context: dict[str, Any], attempt: int) -> Any:
        c: Any = node.config
        if node.type in INSTANT:
            failed = self.instant_errors.pop(node.id, None)
            if failed is not None:
                raise failed
            return self._template_node(node, context)
        if node.type == "llmNode":
            return await self._llm(c, context)
        if node.type == "agentNode":
            return await self._agent(c, context)
        if node.type == "ragNode":
            return await self._rag(c, context)
        if node.type == "httpNode":
            return await self._http(c, context)
        if node.type == "jobNode":
            return await self._job(node, c, context, attempt)
        raise NodeError(f"node type '{node.type}' cannot run", retry=False)

    async def _llm(self, c: g.LlmConfig, context: dict[str, Any]) -> str:
        messages = []
        if c.system:
            messages.append(ChatMessage(role="system", content=templates.render(c.system, context)))
        messages.append(ChatMessage(role="user", content=templates.render(c.prompt, context)))
        request = ChatCompletionRequest(model=c.model or self.deps.settings.default_model, messages=messages,
                                        temperature=float(c.temperature), max_tokens=c.max_tokens, seed=0)
        headers = {"x-tarx-project-id": self.ctx.project.id}
        if c.execution_policy:
            headers["x-tarx-execution-policy"] = c.execution_policy
        plan = await self.deps.chat.plan(self.ctx.principal, headers)
        text: list[str] = []
        events = await self.deps.chat.stream(request, plan)
        async with aclosing(events):  # cancelling this node closes the stream, which stops the generation at once
            async for event in events:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, Final):
                    return event.result.text
        return "".join(text)

    async def _agent(self, c: g.AgentConfig, context: dict[str, Any]) -> str:
        message = templates.render(c.message, context)
        events = await self.deps.agents.start(self.ctx, c.agent_id, message, [])
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Done):
                    return event.response
                if isinstance(event, Error):
                    raise NodeError(event.detail)
        raise NodeError("the agent produced no answer")

    async def _rag(self, c: g.RagConfig, context: dict[str, Any]) -> list[dict[str, Any]]:
        query = templates.render(c.query, context)
        hits = await self.deps.rag.search(self.ctx.project.id, c.rag_source_ids, query, c.k)
        return [{"source_id": h.source_id, "document": h.document, "text": h.text, "score": h.score} for h in hits]

    async def _http(self, c: g.HttpConfig, context: dict[str, Any]) -> dict[str, Any]:
        url = templates.render(c.url, context)
        body = templates.render(c.body, context) if c.body is not None else None
        headers = {k: templates.render(v, context) for k, v in c.headers.items()}
        # The agents' fetch: every hop checked against the address policy and sent to the checked address.
        async with httpx.AsyncClient(follow_redirects=False, timeout=None) as client:
            try:
                response = await addresses.fetch(client, c.method, url, content=body, headers=headers,
                                                 allow_private=self.deps.settings.agent_http_allow_private)
            except (AddressRefused, BodyTooLarge) as err:
                raise NodeError(str(err), retry=False) from err
            except httpx.HTTPError as err:
                raise NodeError(f"request failed: {type(err).__name__}: {err}") from err
        text = response.text[:MAX_HTTP_BODY]
        if response.status >= 400:
            raise NodeError(f"HTTP {response.status} from {response.url}: {text[:200]}")
        value: Any = text
        if "json" in response.headers.get("content-type", ""):
            with contextlib.suppress(ValueError):
                value = json.loads(text)
        return {"status": response.status, "url": response.url, "body": value}

    async def _job(self, node: g.Node, c: g.JobConfig, context: dict[str, Any], attempt: int) -> dict[str, Any]:
        command = templates.render(c.command, context)
        spec = JobSpec(type="COMMAND", command=command, timeout_seconds=c.job_timeout_seconds, labels=c.labels,
                       env=c.env, max_attempts=1)
        # Keyed by execution, node and attempt: the same node resumed after a restart waits for the same job.
        submitted = await self.deps.jobs.submit(self.ctx, spec, f"wf:{self.id}:{node.id}:{attempt}")
        job_id = submitted.detail["id"]
        lines: list[str] = []
        end: dict[str, Any] = {}
        records = await self.deps.jobs.logs(self.ctx, job_id, 0, True, stop=self.cancel_event)
        async with aclosing(records):  # type: ignore[type-var]
            async for record in records:
                if record["kind"] == "line":
                    lines.append(record["text"])
                else:
                    end = record
        if self.cancel_event.is_set():
            await self.deps.jobs.cancel(self.ctx, job_id)
            raise NodeCancelled()
        state, code = str(end.get("state")), end.get("exitCode")
        output = {"job_id": job_id, "state": state, "exit_code": code, "logs": "\n".join(lines)}
        if state != "SUCCEEDED":
            raise NodeError(f"job {job_id} ended {state} (exit code {code})")
        return output

    async def _approval(self, node: g.Node, context: dict[str, Any], t0: float) -> Any:
        message = templates.render(node.config.message, context)  # type: ignore[attr-defined]
        future: asyncio.Future[tuple[bool, str | None, str | None]] = asyncio.get_running_loop().create_future()
        if node.id in self.early:
            future.set_result(self.early.pop(node.id))
        self.approvals[node.id] = future
        self.waiting.add(node.id)

        async def wait(tx: aiosqlite.Connection) -> None:
            await store.node_status(tx, self.id, node.id, WAITING)
            await store.set_status(tx, self.id, WAITING, expect=(RUNNING, WAITING))
        await self.recorder.write("approval_required", {"node_id": node.id, "execution_id": self.id,
                                                       "message": message, "status": WAITING}, wait)
        try:
            approved, comment, by = await future
        finally:
            self.waiting.discard(node.id)
            self.approvals.pop(node.id, None)
        if not approved:
            reason = f"node '{node.id}' was rejected" + (f": {comment}" if comment else "")
            await self._node_failed(node, reason, t0, REJECTED)
            raise _Rejected(reason)
        if not self.waiting:
            await self.recorder.write(None, change=lambda tx: store.resume_running(tx, self.id))
        return {"approved": True, "comment": comment, "by": by}  # as the approve answer showed it: who stays


class _Rejected(Exception):
    """An approval node that a person rejected: the execution ends as `rejected`."""


def _duration_since(started: str) -> int:
    began = datetime.fromisoformat(started.replace("Z", "+00:00"))
    return int((datetime.now(UTC) - began).total_seconds() * 1000)
