"""The dashboard: health, models, queues per class, jobs by state, nodes online, Joules today, and rates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import ProgressBar, Sparkline, Static

from tarx_console.client.api import JOB_STATES, TarxClient
from tarx_console.client.errors import ClientError, Refused
from tarx_console.screens.base import ViewScreen
from tarx_console.screens.executions import STATUS_STYLE as EXECUTION_STYLE
from tarx_console.screens.jobs import STATE_STYLE
from tarx_console.widgets.difftable import DiffTable, Row

MODEL_STYLE = {"loaded": "green", "loading": "bold yellow", "error": "bold red", "unloaded": "dim"}


class DashboardScreen(ViewScreen):
    VIEW_TITLE = "Dashboard"
    DEFAULT_CSS = """
    DashboardScreen Grid { grid-size: 3 3; grid-rows: 1fr 1fr auto; grid-columns: 1fr 1fr 1fr; }
    DashboardScreen #executions-panel { column-span: 3; height: auto; }
    DashboardScreen #executions { padding: 0 1; }
    DashboardScreen .panel { border: round $panel; border-title-color: $accent; height: 1fr; }
    DashboardScreen #overview { padding: 0 1; }
    DashboardScreen Sparkline { height: 3; margin: 0 1; }
    DashboardScreen .rate { padding: 0 1; color: $text-muted; }
    DashboardScreen #loading { display: none; margin: 0 1; }
    DashboardScreen #loading.-on { display: block; }
    """

    def compose_body(self) -> ComposeResult:
        with Grid():
            with Vertical(classes="panel", id="overview-panel"):
                yield Static("waiting for the runtime…", id="overview")
                yield ProgressBar(total=None, show_eta=False, id="loading")
            yield DiffTable([("model", "MODEL"), ("state", "STATE"), ("done", "DONE"), ("tokens", "TOKENS")],
                            id="models", classes="panel")
            yield DiffTable([("class", "QUEUE"), ("depth", "WAITING"), ("running", "RUNNING"),
                             ("pressure", "PRESSURE")], id="queues", classes="panel")
            yield DiffTable([("state", "JOB STATE"), ("count", "COUNT")], id="jobs", classes="panel")
            with Vertical(classes="panel", id="tokens-panel"):
                yield Static(id="tokens-rate", classes="rate")
                yield Sparkline([0.0], id="tokens")
            with Vertical(classes="panel", id="jobs-panel"):
                yield Static(id="jobs-rate", classes="rate")
                yield Sparkline([0.0], id="jobs-s")
            with Vertical(classes="panel", id="executions-panel"):
                yield Static("…", id="executions")

    def on_mount(self) -> None:
        titles = {"#overview-panel": "Runtime", "#models": "Models", "#queues": "Queues", "#jobs": "Jobs",
                  "#tokens-panel": "Tokens/s", "#jobs-panel": "Jobs finished/s", "#executions-panel": "Executions"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title

    async def load(self, client: TarxClient) -> None:
        health = self.tarx.last_health or await client.health()
        counts = self.tarx.last_counts or await client.job_counts()
        nodes = await client.list_nodes()
        try:
            usage: dict[str, Any] | None = await client.usage()
        except Refused:
            usage = None  # a key without a user (a node key) has no usage of its own
        self.show(health, counts, nodes, usage)
        try:
            self.show_executions(*await client.execution_counts())
        except ClientError as exc:  # a runtime without workflows, or a key that does not reach them
            self.query_one("#executions", Static).update(f"[dim]not available: {exc}[/]")

    def show_executions(self, counts: dict[str, int], complete: bool) -> None:
        """Workflow executions by state, coloured as the executions view colours them."""
        parts = [f"[{EXECUTION_STYLE.get(state, 'none')}]{state.split('_')[0]}\u00a0{count}[/]"
                 for state, count in counts.items()]
        if not complete:
            parts.append(f"(the newest {sum(counts.values())})")
        self.query_one("#executions", Static).update(" · ".join(parts))  # wraps between states, not inside one

    def show(self, health: dict[str, Any], counts: dict[str, int], nodes: list[dict[str, Any]],
             usage: dict[str, Any] | None) -> None:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        joules = next((d["joules"] or 0.0 for d in (usage or {}).get("daily", []) if d["day"] == today), 0.0)
        online = sum(1 for n in nodes if n["state"] == "online")
        stable = self.tarx.config.stable
        lines = [
            f"status     [b]{health.get('status', '?')}[/b]",
            f"version    {health.get('version', '?')}",
            f"instance   {'•••' if stable else health.get('instance_id', '?')}",
            f"default    {health.get('default_model', '?')}",
            f"nodes      {online} online of {len(nodes)}",
            f"joules     {joules:,.1f} J today" if usage is not None else "joules     (no usage for this key)",
        ]
        if health.get("error"):
            lines.append(f"[red]{health['error']}[/red]")
        self.query_one("#overview", Static).update("\n".join(lines))
        models = health.get("models", {})
        loading = [name for name, m in models.items() if m["state"] == "loading"]
        bar = self.query_one("#loading", ProgressBar)
        bar.set_class(bool(loading), "-on")
        bar.border_title = f"loading {', '.join(loading)}" if loading else ""
        model_rows = []
        for name, m in sorted(models.items()):
            stats = m.get("stats") or {}
            model_rows.append(Row(name, (name, m["state"] if m["available"] else "missing",
                                         str(stats.get("completed", 0)), str(stats.get("tokens_generated", 0))),
                                  MODEL_STYLE.get(m["state"], "")))
        self.query_one("#models", DiffTable).sync(model_rows)
        self.query_one("#queues", DiffTable).sync([
            Row(cls, (cls, str(q["depth"]), str(q["in_flight"]), q["backpressure_state"]))
            for cls, q in health.get("queues", {}).items()])
        self.query_one("#jobs", DiffTable).sync([
            Row(state, (state, str(counts.get(state, 0))), STATE_STYLE.get(state, "")) for state in JOB_STATES])
        rates = self.tarx.rates
        for selector, series in (("#tokens", rates.tokens_per_s), ("#jobs-s", rates.jobs_per_s)):
            # A flat series draws as full bars; with nothing happening, draw nothing instead.
            self.query_one(selector, Sparkline).data = list(series) if max(series) > 0 else []
        self.query_one("#tokens-rate", Static).update(
            f"now {rates.tokens_per_s[-1]:.1f}/s · peak {max(rates.tokens_per_s):.1f}/s")
        self.query_one("#jobs-rate", Static).update(
            f"now {rates.jobs_per_s[-1]:.2f}/s · peak {max(rates.jobs_per_s):.2f}/s")
