"""Executions: a live table (filtered by workflow and state), and a live view of one execution: the diagram of the
workflow version that ran, with each node coloured by its state as the stream's events arrive, the selected node's
output and log, an approve/reject prompt while a human-in-loop node waits, and cancel.

The live view follows the execution's SSE stream through `TarxClient.follow_execution`, which reconnects with
`Last-Event-ID` after a dropped connection, so the view misses no event.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Log, Static

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.client.workflow_events import EXECUTION_STATES, FINISHED_STATES, ExecutionEvent
from tarx_console.screens.base import TableView, ViewScreen
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.screens.workflows import graph_of
from tarx_console.widgets.difftable import Row
from tarx_console.widgets.graph import WorkflowGraph

STATUS_STYLE = {"pending": "dim", "running": "bold yellow", "waiting_approval": "bold magenta",
                "completed": "green", "failed": "bold red", "cancelled": "dim", "rejected": "red"}


def duration(ex: dict[str, Any], stable: bool = False) -> str:
    start = fmt.parse(ex.get("started_at") or ex.get("created_at"))
    end = fmt.parse(ex.get("completed_at"))
    if start is None or end is None:
        return ""
    if stable:
        return fmt.HIDDEN
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def short(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class ExecutionsScreen(TableView):
    VIEW_TITLE = "Executions"
    COLUMNS = [("id", "ID"), ("workflow", "WORKFLOW"), ("status", "STATUS"), ("trigger", "TRIGGER"),
               ("created", "CREATED"), ("duration", "DURATION")]
    BINDINGS = [
        Binding("enter", "open", "Watch", id="executions.open"),
        Binding("f", "state_filter", "State", id="executions.state"),
        Binding("w", "workflow_filter", "Workflow", id="executions.workflow"),
        Binding("a", "approve", "Approve", id="executions.approve"),
        Binding("c", "cancel", "Cancel", id="executions.cancel"),
    ]

    def __init__(self, workflow: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.workflow = workflow  # (id, name) shown only
        self.status: str | None = None
        self.names: dict[str, str] = {}
        if workflow is not None:
            self.VIEW_TITLE = f"Executions > {workflow[1]}"

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        items = await client.list_executions(self.workflow[0] if self.workflow else None, self.status)
        if not self.names or any(ex["workflow_id"] not in self.names for ex in items):
            # workflow names change rarely: fetched again only for a workflow not seen yet (/api/v1 allows 200
            # requests a minute per key, and this view refreshes every few seconds)
            self.names = {wf["id"]: wf["name"] for wf in await client.list_workflows()}
        shown = [f"workflow {self.workflow[1]}" if self.workflow else "all workflows", self.status or "any state"]
        self.table.border_subtitle = f"{len(items)} · {' · '.join(shown)} · f state · w workflow"
        return items

    def row(self, ex: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        name = self.names.get(ex["workflow_id"], ex["workflow_id"])
        return Row(ex["id"], (fmt.ident(ex["id"], stable), name, ex["status"], str(ex.get("trigger") or ""),
                              fmt.when(ex.get("created_at"), stable), duration(ex, stable)),
                   STATUS_STYLE.get(ex["status"], ""))

    def version(self, ex: dict[str, Any]) -> Any:
        return ex["status"], ex.get("completed_at"), self.names.get(ex["workflow_id"])

    def action_open(self) -> None:
        if (ex := self.require_selection()) is not None:
            self.app.push_screen(ExecutionLiveScreen(ex["id"], self.names.get(ex["workflow_id"], "")))

    def action_state_filter(self) -> None:
        order: list[str | None] = [None, *EXECUTION_STATES]
        self.status = order[(order.index(self.status) + 1) % len(order)]
        self.notify(f"Showing executions in state: {self.status or 'any'}.")
        self.schedule_refresh(0)

    @work(group="executions-filter")
    async def action_workflow_filter(self) -> None:
        names = sorted({name: wid for wid, name in self.names.items()}.items())
        form = await self.app.push_screen_wait(FormDialog("Executions of which workflow?", [
            Field("workflow", "Workflow", self.workflow[1] if self.workflow else "(all)",
                  options=["(all)", *[name for name, _ in names]])], submit="Show"))
        if not form:
            return
        chosen = dict(names).get(form["workflow"])
        self.workflow = (chosen, form["workflow"]) if chosen else None
        self.schedule_refresh(0)

    @work(group="executions-approve")
    async def action_approve(self) -> None:
        if (ex := self.require_selection()) is None:
            return
        if ex["status"] != "waiting_approval":
            self.notify(f"The execution is {ex['status']}, not waiting for approval.", severity="warning")
            return
        self.app.push_screen(ExecutionLiveScreen(ex["id"], self.names.get(ex["workflow_id"], "")))

    @work(group="executions-cancel")
    async def action_cancel(self) -> None:
        if (ex := self.require_selection()) is not None:
            await cancel_execution(self, ex["id"], ex["status"])


async def cancel_execution(screen: ViewScreen, execution_id: str, status: str) -> bool:
    if status in FINISHED_STATES:
        screen.notify(f"The execution is already {status}.", severity="warning")
        return False
    if not await screen.app.push_screen_wait(ConfirmDialog(f"Cancel execution {execution_id} ({status})?",
                                                           "Cancel execution", no="Keep running")):
        return False
    if await screen.attempt(lambda c: c.cancel_execution(execution_id)) is None:
        return False
    screen.notify("Cancel requested.")
    screen.schedule_refresh(0)
    return True


class ExecutionLiveScreen(ViewScreen):
    """One execution as it runs."""

    AUTO_FOCUS = "WorkflowGraph"  # at mount, not after: a focus change recomposes the footer

    BINDINGS = [
        Binding("y", "approve(True)", "Approve", id="execution.approve"),
        Binding("n", "approve(False)", "Reject", id="execution.reject"),
        Binding("c", "cancel", "Cancel", id="execution.cancel"),
    ]
    DEFAULT_CSS = """
    ExecutionLiveScreen #ex-summary { height: 1; padding: 0 1; }
    ExecutionLiveScreen #approval { height: 3; display: none; background: $boost; padding: 0 1; }
    ExecutionLiveScreen #approval.-on { display: block; }
    ExecutionLiveScreen #approval Static { width: 1fr; padding: 1 0; color: $warning; text-style: bold; }
    ExecutionLiveScreen #approval Button { margin-left: 1; min-width: 14; }
    ExecutionLiveScreen #detail { height: 30%; min-height: 5; max-height: 10; }
    ExecutionLiveScreen #output-box { width: 1fr; border: round $panel; border-title-color: $accent; }
    ExecutionLiveScreen #output { padding: 0 1; }
    ExecutionLiveScreen #node-log { width: 1fr; border: round $panel; border-title-color: $accent; }
    """

    def __init__(self, execution_id: str, workflow_name: str = "") -> None:
        super().__init__()
        self.execution_id = execution_id
        self.VIEW_TITLE = "Executions > …"
        self.execution: dict[str, Any] | None = None
        self.workflow_name = workflow_name  # when the opener knows it: one request fewer
        self.status = "pending"
        self.seq = 0  # the last event applied
        self.applied = 0  # events applied (the benchmark reads it)
        self.results: dict[str, dict[str, Any]] = {}  # node id -> status, output, error, duration_ms
        self.logs: dict[str, list[str]] = {}  # node id -> its events, as lines
        self.waiting: dict[str, str] = {}  # nodes waiting for approval -> their message
        self.final: ExecutionEvent | None = None
        self._graph: WorkflowGraph | None = None

    @property
    def stable(self) -> bool:
        return self.tarx.config.stable

    def compose_body(self) -> ComposeResult:
        yield Static("loading…", id="ex-summary")
        yield WorkflowGraph(id="graph", empty="loading the workflow…")
        with Horizontal(id="approval"):
            yield Static("", id="approval-text")
            yield Button("Approve (y)", variant="success", id="approve")
            yield Button("Reject (n)", variant="error", id="reject")
        with Horizontal(id="detail"):
            with VerticalScroll(id="output-box"):
                yield Static("", id="output")
            yield Log(id="node-log", max_lines=2000)

    def on_mount(self) -> None:
        self.query_one("#output-box").border_title = "Output"
        self.query_one("#node-log").border_title = "Log"
        self.follow()

    @property
    def graph(self) -> WorkflowGraph:
        if self._graph is None:
            self._graph = self.query_one(WorkflowGraph)  # looked up once: apply() runs per event
        return self._graph

    def focus_main(self) -> None:
        self.graph.focus()

    async def load(self, client: TarxClient) -> None:
        """The stream keeps the view current; the periodic refresh only catches a stream that stalls."""
        if self.execution is None:
            return
        if self.status not in FINISHED_STATES:
            ex = await client.execution(self.execution_id)
            self.execution = ex
            if ex["status"] in FINISHED_STATES and self.final is None:
                self.set_status(ex["status"])

    @work(group="execution-follow", exclusive=True)
    async def follow(self) -> None:
        while self.tarx.client is None:
            await self.tarx.connected.wait()
        client = self.tarx.client
        try:
            await self.open(client)
            async for event in client.follow_execution(self.execution_id, after=self.seq):
                self.apply(event)
        except ClientError as exc:
            self.query_one("#ex-summary", Static).update(f"[b red]The execution is not available: "
                                                         f"{escape(str(exc))}[/]")

    async def open(self, client: TarxClient) -> None:
        ex = self.execution = await client.execution(self.execution_id)
        # The graph of the version that ran: the workflow may have changed since. A runtime that does not send it
        # (another version) gets the workflow as it is now.
        graph = ex.get("graph")
        if not isinstance(graph, dict):
            wf = await client.workflow(ex["workflow_id"])
            graph, self.workflow_name = wf, self.workflow_name or wf["name"]
        if not self.workflow_name:
            try:
                self.workflow_name = (await client.workflow(ex["workflow_id"]))["name"]
            except ClientError:  # e.g. deleted since: the run still shows
                self.workflow_name = ex["workflow_id"]
        self.VIEW_TITLE = f"Executions > {self.workflow_name} > {fmt.ident(self.execution_id, self.tarx.config.stable)}"
        for header in self.query("ConsoleHeader"):
            header.view_title = self.VIEW_TITLE  # type: ignore[attr-defined]
            header.show(self.tarx.connection)  # type: ignore[attr-defined]
        nodes, edges = graph_of(graph.get("nodes") or [], graph.get("edges") or [])
        self.graph.show(nodes, edges)
        for nid in (n.id for n in nodes):
            self.graph.set_state(nid, "pending")
        self.set_status(ex["status"])
        self.inspect(self.graph.selected)

    # ---- events ----------------------------------------------------------------------------------------------

    def apply(self, event: ExecutionEvent) -> None:
        """One event from the stream: the node's colour, its output and log, the execution's state."""
        self.seq = max(self.seq, event.seq)
        self.applied += 1
        nid = event.node_id
        if nid is not None:
            result = self.results.setdefault(nid, {})
            state = event.node_state
            if state:
                result["status"] = state
                self.graph.set_state(nid, state)
            for key in ("output", "error", "duration_ms"):
                if key in event.data:
                    result[key] = event.data[key]
            line = f"#{event.seq} {event.name}"
            if "duration_ms" in event.data and not self.stable:
                line += f" {event.data['duration_ms']} ms"
            if event.data.get("error"):
                line += f": {event.data['error']}"
            self.logs.setdefault(nid, []).append(line)
            if state == "waiting_approval":
                self.waiting[nid] = str(event.data.get("message") or "Approval required")
            elif nid in self.waiting:
                self.waiting.pop(nid)
            if nid == self.graph.selected:
                self.query_one("#node-log", Log).write_line(line)
                self.show_output(nid)
        status = event.execution_state
        if status is None and self.status == "waiting_approval" and not self.waiting and nid is not None:
            status = "running"  # the approval was given: the run goes on
        if event.final:
            self.final = event
        if status and status != self.status:
            self.set_status(status)
        elif status == "waiting_approval":
            self.show_approval()

    def set_status(self, status: str) -> None:
        self.status = status
        if status in FINISHED_STATES:
            self.waiting.clear()
            for nid, state in list(self.graph.states.items()):  # nodes stopped without an event of their own
                if state in ("running", "waiting_approval"):
                    self.graph.set_state(nid, "cancelled" if status == "cancelled" else state)
        self.summary()
        self.show_approval()

    def summary(self) -> None:
        ex = self.execution or {}
        style = STATUS_STYLE.get(self.status, "")
        parts = [f"[{style}]{self.status}[/]" if style else self.status, f"trigger {ex.get('trigger') or '-'}"]
        final = self.final
        if final is not None and final.data.get("duration_ms") is not None:
            parts.append(fmt.HIDDEN if self.tarx.config.stable else f"{final.data['duration_ms']} ms")
        if final is not None and final.data.get("error"):
            parts.append(f"[red]{escape(str(final.data['error']))}[/]")
        keys = "y approve · n reject · " if self.waiting else ""
        if self.status not in FINISHED_STATES:
            parts.append(f"{keys}c cancel")
        self.query_one("#ex-summary", Static).update(" · ".join(parts))

    def show_approval(self) -> None:
        bar = self.query_one("#approval")
        on = bool(self.waiting) and self.status not in FINISHED_STATES
        bar.set_class(on, "-on")
        if on:
            nid, message = next(iter(self.waiting.items()))
            self.query_one("#approval-text", Static).update(f"⏸ {escape(nid)} waits: {escape(message)}")

    def on_workflow_graph_node_selected(self, event: WorkflowGraph.NodeSelected) -> None:
        self.inspect(event.node_id)

    def inspect(self, nid: str | None) -> None:
        log = self.query_one("#node-log", Log)
        log.clear()
        if nid is None:
            return
        log.write_lines(self.logs.get(nid, []))
        self.query_one("#node-log").border_title = f"Log · {nid}"
        self.show_output(nid)

    def show_output(self, nid: str) -> None:
        result = self.results.get(nid) or (self.execution or {}).get("node_results", {}).get(nid) or {}
        status = result.get("status") or self.graph.states.get(nid, "pending")
        lines = [f"[b]{escape(nid)}[/b] {status}"]
        if result.get("duration_ms") is not None and not self.tarx.config.stable:
            lines[0] += f" · {result['duration_ms']} ms"
        if result.get("error"):
            lines.append(f"[red]{escape(str(result['error']))}[/]")
        if result.get("output") is not None:
            lines.append(escape(short(result["output"])))
        if nid in self.waiting:
            lines.append(f"[b magenta]{escape(self.waiting[nid])}[/]")
        self.query_one("#output", Static).update("\n".join(lines))
        self.query_one("#output-box").border_title = f"Output · {nid}"

    # ---- actions ---------------------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("approve", "reject"):
            event.stop()
            self.run_worker(self.decide(event.button.id == "approve"), group="execution-approve")

    def action_approve(self, approved: bool) -> None:
        self.run_worker(self.decide(approved), group="execution-approve")

    async def decide(self, approved: bool) -> None:
        if not self.waiting or self.status in FINISHED_STATES:
            self.notify("Nothing here waits for approval.", severity="warning")
            return
        comment = ""
        if not approved:
            form = await self.app.push_screen_wait(FormDialog("Reject: the execution ends as rejected", [
                Field("comment", "Why (optional)")], submit="Reject"))
            if form is None:
                return
            comment = form["comment"]
        node_id = next(iter(self.waiting))
        done = await self.attempt(lambda c: c.approve_execution(self.execution_id, approved, comment, node_id))
        if done is not None:
            self.notify("Approved: the run goes on." if approved else "Rejected.")

    @work(group="execution-cancel")
    async def action_cancel(self) -> None:
        await cancel_execution(self, self.execution_id, self.status)
