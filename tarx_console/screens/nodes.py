"""Worker nodes: labels, last heartbeat, current jobs; drain one."""

from __future__ import annotations

from typing import Any

from textual import events, work
from textual.binding import Binding

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, DescribeDialog
from tarx_console.widgets.difftable import Row

STATE_STYLE = {"online": "", "draining": "yellow", "offline": "dim", "deleted": "dim strike"}


class NodesScreen(TableView):
    VIEW_TITLE = "Nodes"
    COLUMNS = [("id", "ID"), ("name", "NAME"), ("state", "STATE"), ("labels", "LABELS"), ("capacity", "CAP"),
               ("heartbeat", "LAST HEARTBEAT"), ("jobs", "CURRENT JOBS")]
    BINDINGS = [
        Binding("d", "drain", "Drain", id="nodes.drain"),
        Binding("enter", "describe", "Describe", id="nodes.describe"),
    ]

    def on_mount(self) -> None:
        self.fit_columns(self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_columns(event.size.width)

    def fit_columns(self, width: int) -> None:
        """Long ids, names and job lists are clipped, so every column stays on screen; 80 columns keep the key ones."""
        keys = [k for k, _ in self.COLUMNS] if width >= 100 else ["id", "name", "state", "heartbeat", "jobs"]
        self.table.set_layout(keys, {"id": 12, "name": 24, "labels": 28, "jobs": 30 if width >= 100 else 18},
                              tails={"id"})

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.list_nodes()

    def row(self, n: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        state = "drained" if n.get("drained") else n["state"]
        return Row(n["id"], (fmt.ident(n["id"], stable), n["name"], state, fmt.labels(n.get("labels")),
                             str(n.get("capacity", "")), fmt.ago(n.get("lastHeartbeatAt"), stable),
                             ",".join(fmt.ident(j, stable) for j in n.get("currentJobs", [])) or "-"),
                   STATE_STYLE.get(n["state"], ""))

    @work(group="nodes-drain")
    async def action_drain(self) -> None:
        node = self.require_selection()
        if node is None:
            return
        if node["state"] == "draining":
            self.notify(f"'{node['name']}' is already draining.", severity="warning")
            return
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Drain node '{node['name']}'? It finishes its current jobs and takes no new ones.", "Drain")):
            return
        if await self.attempt(lambda c: c.drain_node(node["id"])) is not None:
            self.notify(f"Draining '{node['name']}'.")
            self.schedule_refresh(0)

    def action_describe(self) -> None:
        if (node := self.require_selection()) is not None:
            self.app.push_screen(DescribeDialog(f"Node {node['name']}", node))
