"""Workflows: a table of them, and an editor that draws one as a diagram (WorkflowGraph) with a node inspector.

Editing is by keyboard on a local copy of the graph: add a node, connect two (or disconnect them), configure one,
delete one; `s` saves it, and whatever the runtime rejects is shown on the nodes it names. `t` edits the
schedule (with its next run times), `w` sets up the inbound webhook (its URL and secret, shown once), `x` runs it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Input, Select, Static

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.client.workflow_events import GraphRejected
from tarx_console.screens.base import TableView, ViewScreen
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog, SecretDialog
from tarx_console.widgets.difftable import Row
from tarx_console.widgets.graph import GraphEdge, GraphNode, WorkflowGraph

NODE_TYPES = ("trigger", "agentNode", "llmNode", "ragNode", "httpNode", "conditionNode", "transformNode",
              "humanInLoopNode", "jobNode", "outputNode")
# A starting configuration per type, so a new node is one Enter away from valid (issue 14's node configs).
TEMPLATES: dict[str, dict[str, Any]] = {
    "trigger": {"trigger_type": "manual"},
    "agentNode": {"agent_id": "", "message": "{{ prev }}"},
    "llmNode": {"prompt": "{{ prev }}", "max_tokens": 64},
    "ragNode": {"query": "{{ prev }}", "k": 3},
    "httpNode": {"url": "https://example.com", "method": "GET"},
    "conditionNode": {"condition": "prev | length > 0"},
    "transformNode": {"template": "{{ prev }}"},
    "humanInLoopNode": {"message": "Approve?"},
    "jobNode": {"command": "echo hello"},
    "outputNode": {"template": "{{ prev }}"},
}
SHORT = {"trigger": "trigger", "agentNode": "agent", "llmNode": "llm", "ragNode": "rag", "httpNode": "http",
         "conditionNode": "condition", "transformNode": "transform", "humanInLoopNode": "approval",
         "jobNode": "job", "outputNode": "output"}


def graph_of(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> tuple[list[GraphNode], list[GraphEdge]]:
    """A workflow's wire nodes and edges as the diagram draws them."""
    drawn = []
    for n in nodes:
        config = n.get("config") or {}
        title = str(config.get("name") or config.get("title") or n["id"])
        drawn.append(GraphNode(str(n["id"]), SHORT.get(n.get("type", ""), n.get("type", "")), title))
    lines = [GraphEdge(str(e["source"]), str(e["target"]), str(e.get("label") or e.get("condition") or ""))
             for e in edges]
    return drawn, lines


def node_ids_in(message: str, ids: list[str]) -> list[str]:
    """The node ids a refusal's message names, as whole words (when the answer does not list them itself); the
    list of valid node types some messages end with is not a list of nodes."""
    message = message.split("; the types are")[0]
    return [nid for nid in ids if re.search(rf"(?<![\w.:-]){re.escape(nid)}(?![\w:-])", message)]


class WorkflowsScreen(TableView):
    VIEW_TITLE = "Workflows"
    COLUMNS = [("name", "NAME"), ("id", "ID"), ("nodes", "NODES"), ("edges", "EDGES"), ("version", "VER"),
               ("updated", "UPDATED")]
    BINDINGS = [
        Binding("enter", "open", "Open", id="workflows.open"),
        Binding("n", "new", "New", id="workflows.new"),
        Binding("x", "run", "Run", id="workflows.run"),
        Binding("e", "executions", "Executions", id="workflows.executions"),
        Binding("d", "delete", "Delete", id="workflows.delete"),
    ]

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.list_workflows()

    def row(self, wf: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        return Row(wf["id"], (wf["name"], fmt.ident(wf["id"], stable), str(len(wf.get("nodes") or [])),
                              str(len(wf.get("edges") or [])), str(wf.get("version", "")),
                              fmt.when(wf.get("updated_at"), stable)))

    def action_open(self) -> None:
        if (wf := self.require_selection()) is not None:
            self.app.push_screen(WorkflowEditScreen(wf["id"], wf))

    @work(group="workflows-new")
    async def action_new(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("New workflow", [
            Field("name", "Name", placeholder="e.g. triage incoming tickets"),
            Field("description", "Description (optional)"),
        ]))
        if not form:
            return
        if not form["name"]:
            self.notify("A workflow needs a name.", severity="error")
            return
        trigger = {"id": "trigger", "type": "trigger", "config": dict(TEMPLATES["trigger"]), "position": None}
        wf = await self.attempt(lambda c: c.create_workflow(form["name"], [trigger], [], form["description"]))
        if wf is not None:
            self.schedule_refresh(0)
            self.app.push_screen(WorkflowEditScreen(wf["id"]))

    @work(group="workflows-run")
    async def action_run(self) -> None:
        if (wf := self.require_selection()) is not None:
            await run_workflow(self, wf["id"])

    def action_executions(self) -> None:
        if (wf := self.require_selection()) is not None:
            from tarx_console.screens.executions import ExecutionsScreen

            self.app.push_screen(ExecutionsScreen(workflow=(wf["id"], wf["name"])))

    @work(group="workflows-delete")
    async def action_delete(self) -> None:
        if (wf := self.require_selection()) is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Delete workflow {wf['name']!r}?", "Delete",
                                                         detail="Its executions, schedule and webhook go too.")):
            if await self.attempt(lambda c: c.delete_workflow(wf["id"])) is not None:
                self.notify(f"Deleted {wf['name']}.")
                self.schedule_refresh(0)


async def run_workflow(screen: ViewScreen, workflow_id: str) -> str | None:
    """Ask for the input, start an execution and open its live view; the execution's id, or None."""
    form = await screen.app.push_screen_wait(FormDialog("Run the workflow", [
        Field("input", "Input (text, or JSON)", placeholder="what the trigger passes on")], submit="Run"))
    if form is None:
        return None
    raw = form["input"]
    try:
        value: Any = json.loads(raw) if raw[:1] in "{[" and raw else raw
    except ValueError:
        value = raw
    started = await screen.attempt(lambda c: c.execute_workflow(workflow_id, value))
    if started is None:
        return None
    from tarx_console.screens.executions import ExecutionLiveScreen

    screen.app.push_screen(ExecutionLiveScreen(started["execution_id"]))
    return str(started["execution_id"])


class WorkflowEditScreen(ViewScreen):
    """One workflow as a diagram, edited by keyboard; nothing reaches the runtime until `s` saves it."""

    # Focus lands on the diagram as the screen mounts: a later focus change recomposes the footer (its keys
    # follow the focus), which costs more than drawing a 50-node diagram.
    AUTO_FOCUS = "WorkflowGraph"

    BINDINGS = [
        Binding("a", "add", "Add node", id="workflow.add"),
        Binding("c", "connect", "Connect", id="workflow.connect"),
        Binding("e,enter", "configure", "Configure", id="workflow.configure", key_display="e"),
        Binding("d,delete", "delete", "Delete", id="workflow.delete", key_display="d"),
        Binding("s", "save", "Save", id="workflow.save"),
        Binding("x", "run", "Run", id="workflow.run"),
        Binding("t", "schedule", "Schedule", id="workflow.schedule"),
        Binding("w", "webhook", "Webhook", id="workflow.webhook"),
    ]
    DEFAULT_CSS = """
    WorkflowEditScreen #wf-summary { height: 1; padding: 0 1; color: $text-muted; }
    WorkflowEditScreen #inspector-box { height: 30%; min-height: 5; max-height: 9; border: round $panel;
                                        border-title-color: $accent; }
    WorkflowEditScreen #inspector { padding: 0 1; }
    """

    def __init__(self, workflow_id: str, initial: dict[str, Any] | None = None) -> None:
        """`initial`: the workflow as a list already fetched it, drawn at once; the runtime's copy follows."""
        super().__init__()
        self.workflow_id = workflow_id
        self.initial = initial
        self.fetched = False
        self.VIEW_TITLE = "Workflows > …"
        self.wf: dict[str, Any] | None = None
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.errors: dict[str, str] = {}
        self.dirty = False
        self.connect_from: str | None = None
        self.schedule_info: dict[str, Any] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("loading…", id="wf-summary")
        yield WorkflowGraph(id="graph", empty="No nodes: press a to add one.")
        with VerticalScroll(id="inspector-box"):
            yield Static("", id="inspector")

    def on_mount(self) -> None:
        self.query_one("#inspector-box").border_title = "Node"
        if self.initial is not None and self.initial.get("nodes") is not None:
            self.take(self.initial)

    @property
    def graph(self) -> WorkflowGraph:
        return self.query_one(WorkflowGraph)

    def focus_main(self) -> None:
        self.graph.focus()

    async def load(self, client: TarxClient) -> None:
        if self.fetched:
            return  # the local copy is being edited; it is fetched once
        wf = await client.workflow(self.workflow_id)
        self.fetched = True
        self.schedule_info = wf.get("schedule")  # the runtime includes it (with the next run times)
        if "schedule" not in wf:
            try:
                self.schedule_info = await client.schedule(self.workflow_id)
            except ClientError:
                self.schedule_info = None
        if self.dirty:
            self.summary()  # edits began on the list's copy: keep them
        elif self.wf is None or wf.get("version") != self.wf.get("version") or wf != self.wf:
            self.take(wf)
        else:
            self.summary()

    def take(self, wf: dict[str, Any]) -> None:
        self.wf = wf
        self.nodes = [dict(n) for n in wf.get("nodes") or []]
        self.edges = [dict(e) for e in wf.get("edges") or []]
        self.VIEW_TITLE = f"Workflows > {wf['name']}"
        for header in self.query("ConsoleHeader"):
            header.view_title = self.VIEW_TITLE  # type: ignore[attr-defined]
            header.show(self.tarx.connection)  # type: ignore[attr-defined]
        self.dirty = False
        self.redraw()

    # ---- drawing ---------------------------------------------------------------------------------------------

    def redraw(self, keep: str | None = None) -> None:
        nodes, edges = graph_of(self.nodes, self.edges)
        self.graph.show(nodes, edges, keep=keep)
        self.graph.set_states({nid: "invalid" for nid in self.errors})
        self.summary()
        self.inspect(self.graph.selected)

    def summary(self) -> None:
        if self.wf is None:
            return
        parts = [f"v{self.wf.get('version', '?')}", f"{len(self.nodes)} nodes, {len(self.edges)} edges"]
        if self.dirty:
            parts.append("[b yellow]unsaved: s saves[/]")
        if self.errors:
            parts.append(f"[b red]{len(self.errors)} node(s) rejected[/]")
        if self.connect_from:
            parts.append(f"[b reverse] connecting from {escape(self.connect_from)}: select a node, c [/]")
        info = self.schedule_info
        if info and info.get("enabled"):
            runs = [fmt.when(t, self.tarx.config.stable) for t in info.get("next_run_times", [])[:3]]
            parts.append(f"schedule {escape(str(info.get('cron')))} {info.get('timezone')}: next {', '.join(runs)}")
        self.query_one("#wf-summary", Static).update(" · ".join(parts))

    def on_workflow_graph_node_selected(self, event: WorkflowGraph.NodeSelected) -> None:
        self.inspect(event.node_id)

    def node(self, node_id: str | None) -> dict[str, Any] | None:
        return next((n for n in self.nodes if n["id"] == node_id), None)

    def inspect(self, node_id: str | None) -> None:
        box = self.query_one("#inspector", Static)
        node = self.node(node_id)
        if node is None:
            box.update("Nothing selected." if self.nodes else "An empty workflow: a adds a node.")
            return
        outs = [f"{e['target']}" + (f" ({e['label']})" if e.get("label") else "") for e in self.edges
                if e["source"] == node["id"]]
        srcs = [e["source"] for e in self.edges if e["target"] == node["id"]]
        lines = [f"[b]{escape(node['id'])}[/b]  {node.get('type')}",
                 f"config  {escape(json.dumps(node.get('config') or {}, sort_keys=True))}",
                 f"from    {escape(', '.join(srcs)) or '-'}    to  {escape(', '.join(outs)) or '-'}"]
        if node["id"] in self.errors:
            lines.append(f"[b red]✖ {escape(self.errors[node['id']])}[/]")
        box.update("\n".join(lines))

    def changed(self, keep: str | None = None) -> None:
        self.dirty = True
        self.redraw(keep)

    # ---- editing ---------------------------------------------------------------------------------------------

    @work(group="wf-add")
    async def action_add(self) -> None:
        if self.wf is None:
            return
        picked = await self.app.push_screen_wait(FormDialog("Add a node", [
            Field("type", "Type", "transformNode", options=list(NODE_TYPES))], submit="Next"))
        if not picked:
            return
        kind = picked["type"]
        taken = {n["id"] for n in self.nodes}
        base = SHORT.get(kind, "node")
        suggestion = next(f"{base}_{i}" for i in range(1, 1000) if f"{base}_{i}" not in taken)
        form = await self.configure_form(f"New {kind}", suggestion, TEMPLATES.get(kind, {}), new=True)
        if form is None:
            return
        node_id, config = form
        if node_id in taken:
            self.notify(f"There is already a node {node_id!r}.", severity="error")
            return
        self.nodes.append({"id": node_id, "type": kind, "config": config, "position": None})
        self.changed(node_id)

    async def configure_form(self, title: str, node_id: str, config: dict[str, Any],
                             new: bool = False) -> tuple[str, dict[str, Any]] | None:
        """Ask for a node's id (new nodes) and its configuration as JSON, until it parses or is cancelled."""
        text = json.dumps(config)
        while True:
            fields = [Field("id", "Node id", node_id)] if new else []
            fields.append(Field("config", "Configuration (JSON)", text))
            form = await self.app.push_screen_wait(FormDialog(title, fields, submit="Apply"))
            if not form:
                return None
            text = form["config"] or "{}"
            node_id = form.get("id", node_id) or node_id
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                self.notify(f"The configuration is not JSON: {exc}", severity="error")
                continue
            if not isinstance(parsed, dict):
                self.notify("The configuration is a JSON object: {…}.", severity="error")
                continue
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", node_id):
                self.notify("A node id is 1-64 letters, digits, '_', '-' or '.'.", severity="error")
                continue
            return node_id, parsed

    @work(group="wf-configure")
    async def action_configure(self) -> None:
        node = self.node(self.graph.selected)
        if node is None:
            self.notify("Select a node first.", severity="warning")
            return
        form = await self.configure_form(f"Configure {node['id']} ({node.get('type')})", node["id"],
                                         node.get("config") or {})
        if form is not None:
            node["config"] = form[1]
            self.errors.pop(node["id"], None)
            self.changed(node["id"])

    @work(group="wf-connect")
    async def action_connect(self) -> None:
        selected = self.graph.selected
        if selected is None:
            self.notify("Select a node first.", severity="warning")
            return
        if self.connect_from is None:
            self.connect_from = selected
            self.summary()
            self.notify(f"Connecting from {selected}: select the target node and press c (esc cancels).")
            return
        source, self.connect_from = self.connect_from, None
        if source == selected:
            self.summary()
            self.notify("A node cannot connect to itself.", severity="warning")
            return
        existing = next((e for e in self.edges if e["source"] == source and e["target"] == selected), None)
        if existing is not None:
            self.edges.remove(existing)
            self.notify(f"Disconnected {source} → {selected}.")
            self.changed(selected)
            return
        is_condition = (self.node(source) or {}).get("type") == "conditionNode"
        hint = "Label: 'true' or 'false' (the branch it takes)" if is_condition else "Label (optional)"
        form = await self.app.push_screen_wait(FormDialog(f"Connect {source} → {selected}", [
            Field("label", hint, "true" if is_condition else "")], submit="Connect"))
        if form is None:
            self.summary()
            return
        self.edges.append({"source": source, "target": selected, "label": form["label"] or None})
        self.changed(selected)

    def action_back(self) -> None:
        if self.connect_from is not None and not self.prompt.is_open:
            self.connect_from = None
            self.summary()
            return
        if self.dirty and not self.prompt.is_open and not self.filter_text:
            def leave(discard: bool | None) -> None:
                if discard:
                    self.dirty = False
                    super(WorkflowEditScreen, self).action_back()

            self.app.push_screen(ConfirmDialog("Leave without saving?", "Discard changes", no="Keep editing",
                                               detail="The runtime has the last saved version; s saves this one."),
                                 leave)
            return
        super().action_back()

    @work(group="wf-delete")
    async def action_delete(self) -> None:
        node = self.node(self.graph.selected)
        if node is None:
            return
        edges = [e for e in self.edges if node["id"] in (e["source"], e["target"])]
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Delete node {node['id']!r} and its {len(edges)} edge(s)?", "Delete",
                detail="Nothing changes in the runtime until you save (s).")):
            return
        self.nodes.remove(node)
        self.edges = [e for e in self.edges if e not in edges]
        self.errors.pop(node["id"], None)
        self.changed()

    # ---- the runtime -----------------------------------------------------------------------------------------

    async def save(self) -> bool:
        """PUT the local graph; the nodes a refusal names are marked. True when the runtime took it."""
        client = self.tarx.client
        if client is None or self.wf is None:
            return False
        try:
            saved = await client.update_workflow(self.workflow_id, {"nodes": self.nodes, "edges": self.edges})
        except GraphRejected as exc:
            named = exc.node_ids or node_ids_in(exc.message, [n["id"] for n in self.nodes])
            self.errors = {nid: exc.message for nid in named}
            self.redraw(named[0] if named else None)
            self.notify(exc.message, title="The runtime rejected the workflow", severity="error")
            return False
        except ClientError as exc:
            self.tarx.report(exc, always=True)
            return False
        self.errors = {}
        self.take(saved)
        self.notify(f"Saved: version {saved.get('version')}.")
        return True

    @work(group="wf-save", exclusive=True)
    async def action_save(self) -> None:
        await self.save()

    @work(group="wf-run")
    async def action_run(self) -> None:
        if self.dirty and not await self.save():
            return
        await run_workflow(self, self.workflow_id)

    @work(group="wf-schedule")
    async def action_schedule(self) -> None:
        saved = await self.app.push_screen_wait(ScheduleDialog(self.schedule_info or {}, self.save_schedule,
                                                               self.tarx.config.stable, self.preview_schedule))
        if saved is not None:
            self.schedule_info = saved
            self.summary()

    async def save_schedule(self, form: dict[str, str]) -> dict[str, Any] | str:
        """Save the schedule the dialog holds: the runtime's answer (with the next run times), or why it refused."""
        client = self.tarx.client
        if client is None:
            return "Not connected to a runtime yet."
        try:
            return await client.set_schedule(self.workflow_id, form["enabled"] == "yes", form["cron"],
                                             form["timezone"] or "UTC")
        except ClientError as exc:
            return exc.message

    async def preview_schedule(self, cron: str, timezone: str) -> list[str] | str:
        """The next run times of a cron not saved yet, or why the runtime refuses it."""
        client = self.tarx.client
        if client is None:
            return "Not connected to a runtime yet."
        try:
            return await client.preview_schedule(cron, timezone or "UTC")
        except ClientError as exc:
            return exc.message

    @work(group="wf-webhook")
    async def action_webhook(self) -> None:
        if not await self.app.push_screen_wait(ConfirmDialog(
                "Set up the inbound webhook?", "Set up", destructive=True,
                detail="A new secret replaces any earlier one: senders using the old one stop working.")):
            return
        made = await self.attempt(lambda c: c.setup_webhook(self.workflow_id))
        if made is not None:
            await self.app.push_screen_wait(WebhookDialog(made["url"], made["secret"]))


CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#-]+$")


def cron_problem(cron: str) -> str | None:
    """What is plainly wrong with a cron expression as it is typed (the runtime checks the rest on save)."""
    fields = cron.split()
    if len(fields) not in (5, 6):
        return f"{len(fields)} field{'s' * (len(fields) != 1)}: a cron has 5 (minute hour day month weekday), " \
               "or 6 with seconds first."
    bad = next((f for f in fields if not CRON_FIELD.match(f)), None)
    return f"'{bad}' is not a cron field (digits, names, * , - / only)." if bad else None


@functools.cache
def zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_problem(name: str) -> str | None:
    zones = zone_names()
    if not zones or name in zones:  # no tz database here: the runtime's answer says it
        return None
    return f"'{name}' is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)."


def runs_text(info: dict[str, Any], stable: bool) -> str:
    runs = info.get("next_run_times") or []
    if not info.get("enabled"):
        return "Next runs: none (the schedule is off)."
    return "Next runs: " + (", ".join(fmt.when(t, stable) for t in runs) if runs else "none (it never fires)")


class ScheduleDialog(FormDialog):
    """The schedule: on or off, cron and time zone, checked as they are typed, and the next run times: the runtime
    previews those of the expression being typed (a moment after the last key) and says beside the field what it
    refuses; ctrl+s saves and the dialog stays open with the saved schedule's; Esc closes it."""

    DEFAULT_CSS = "ScheduleDialog #runs { margin-top: 1; color: $accent; }"

    def __init__(self, info: dict[str, Any], save: Callable[[dict[str, str]], Awaitable[dict[str, Any] | str]],
                 stable: bool, preview: Callable[[str, str], Awaitable[list[str] | str]] | None = None) -> None:
        super().__init__("Schedule", [
            Field("enabled", "Runs on a schedule", "yes" if info.get("enabled") else "no", options=["yes", "no"]),
            Field("cron", "Cron (minute hour day month weekday)", info.get("cron") or "0 9 * * 1-5", required=True,
                  check=cron_problem),
            Field("timezone", "Time zone (IANA)", info.get("timezone") or "UTC", required=True,
                  check=timezone_problem),
        ], submit="Save")
        self.info, self.save, self.stable, self.preview = info, save, stable, preview
        self.saved: dict[str, Any] | None = None
        self.shown_for: dict[str, str] = {}  # the form's values that the next runs shown belong to

    def on_mount(self) -> None:  # FormDialog's runs too (Textual calls each class's handler)
        box = self.query_one(Vertical)
        box.mount(Static(runs_text(self.info, self.stable), id="runs"), before=box.query_one(".buttons"))
        self.shown_for = self.values()

    def show_runs(self, text: str) -> None:
        self.query_one("#runs", Static).update(text)

    def show_problem(self, name: str, text: str) -> None:
        error = self.query_one(f"#e-{name}", Static)
        error.update(text)
        error.set_class(bool(text), "-shown")

    # FormDialog's handlers of the same messages run too (Textual calls each class's): these only add the hint.
    def on_input_changed(self, event: Input.Changed) -> None:
        self.edited()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.edited()

    def edited(self) -> None:
        if not self.query("#runs") or self.values() == self.shown_for:
            return
        form = self.values()
        if self.preview is None or cron_problem(form["cron"]) or timezone_problem(form["timezone"] or "UTC"):
            self.show_runs("Next runs: shown once the schedule is valid and saved (ctrl+s).")
            return
        self.show_runs("Next runs: …")
        self.run_preview()

    @work(group="schedule-preview", exclusive=True)
    async def run_preview(self) -> None:
        await asyncio.sleep(0.25)  # a moment after the last key: a newer edit cancels this one (exclusive)
        form = self.values()
        assert self.preview is not None
        answer = await self.preview(form["cron"], form["timezone"] or "UTC")
        if self.values() != form:
            return
        if isinstance(answer, str):
            self.show_problem("timezone" if "time zone" in answer.lower() else "cron", answer)
            self.show_runs("Next runs: none (not valid).")
            return
        when = ", ".join(fmt.when(t, self.stable) for t in answer)
        self.show_runs(f"Next runs once saved: {when}" if form["enabled"] == "yes"
                       else f"Next runs if turned on and saved: {when}")

    def action_cancel(self) -> None:
        self.dismiss(self.saved)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            event.prevent_default()  # FormDialog's handler would dismiss with None: the saved schedule goes back
            self.dismiss(self.saved)

    @work(group="schedule-save", exclusive=True)
    async def action_submit(self) -> None:
        bad = self.validate()
        if bad:
            self.query_one(f"#f-{bad[0]}").focus()
            return
        self.show_runs("Saving…")
        answer = await self.save(self.values())
        if isinstance(answer, str):  # the runtime refused: say so beside the field it is about
            self.show_problem("timezone" if "time zone" in answer.lower() else "cron", answer)
            self.show_runs("Not saved.")
            return
        self.saved = self.info = answer
        self.shown_for = self.values()
        self.show_runs(f"Saved ({'on' if answer.get('enabled') else 'off'}). {runs_text(answer, self.stable)}"
                       "  esc closes")


class WebhookDialog(SecretDialog):
    """The webhook's URL and signing secret; the secret is shown this once."""

    def __init__(self, url: str, secret: str) -> None:
        super().__init__(f"Inbound webhook: POST {url}\nSigned with Standard Webhooks headers "
                         "(webhook-id, webhook-timestamp, webhook-signature).", secret)
        self.url = url
