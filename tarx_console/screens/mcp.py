"""MCP servers: list the project's, connect one (a stdio command, for the runtime's owner and project admins, or a
streamable HTTP URL), discover a server's tools before connecting it, show a connected server's tools."""

from __future__ import annotations

import shlex
from functools import partial
from typing import Any

from rich.markup import escape
from textual import events, work
from textual.binding import Binding

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.screens.rag import TextDialog, url_problem
from tarx_console.widgets.difftable import Row

TRANSPORTS = ["stdio", "streamable_http"]


def transport(form: dict[str, str]) -> dict[str, Any] | str:
    """The transport the form describes, or what is wrong with it."""
    target = form["target"]
    if form["transport"] == "stdio":
        try:
            words = shlex.split(target)
        except ValueError as exc:
            return f"The command does not parse: {exc}."
        if not words:
            return "A stdio server needs the command that starts it."
        return {"transport": "stdio", "command": words[0], "args": words[1:]}
    if problem := url_problem(target):
        return problem
    return {"transport": "streamable_http", "url": target}


def target_problem(target: str, form: dict[str, str]) -> str | None:
    spec = transport({**form, "target": target})
    return spec if isinstance(spec, str) else None


def server_fields(values: dict[str, str], named: bool) -> list[Field]:
    fields = [Field("name", "Name", values.get("name", ""), placeholder="e.g. files", required=True,
                    check=lambda v: "A name is at most 100 characters." if len(v) > 100 else None)] if named else []
    return [
        *fields,
        Field("transport", "Transport", values.get("transport", "stdio"), TRANSPORTS),
        Field("target", "Command and arguments (stdio), or the server's URL (streamable_http)",
              values.get("target", ""), placeholder="e.g. npx -y @mcp/files /srv or https://…/mcp", required=True,
              check_form=target_problem),
    ]


async def create(name: str, spec: dict[str, Any], client: TarxClient) -> dict[str, Any]:
    return await client.create_mcp(name, spec)


def tools_text(tools: list[dict[str, Any]]) -> str:
    if not tools:
        return "This server offers no tools."
    return "\n".join(f"[b]{escape(t['name'])}[/b]  {escape(' '.join(str(t.get('description') or '').split()))}"
                     for t in tools)


class McpScreen(TableView):
    VIEW_TITLE = "MCP servers"
    COLUMNS = [("id", "ID"), ("name", "NAME"), ("transport", "TRANSPORT"), ("target", "COMMAND / URL"),
               ("status", "STATUS"), ("tools", "TOOLS"), ("discovered", "DISCOVERED")]
    BINDINGS = [
        Binding("n", "create", "Connect", id="mcp.create"),
        Binding("x", "discover", "Discover", id="mcp.discover"),
        Binding("enter", "tools", "Tools", id="mcp.tools"),
        Binding("d", "delete", "Disconnect", id="mcp.delete"),
    ]

    def on_mount(self) -> None:
        self.fit_columns(self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_columns(event.size.width)

    def fit_columns(self, width: int) -> None:
        """Under 100 columns (80x24, the SSH default) the transport (a URL or a command tells it) and the time of
        discovery go, so the command or URL keeps room; long values are clipped, never pushed off screen."""
        if width >= 100:
            self.table.set_layout([k for k, _ in self.COLUMNS], {"id": 28, "target": 50}, tails={"id"})
            return
        fixed = {"id": 10, "name": 12, "status": 12, "tools": 5}
        room = width - 4 - sum(fixed.values()) - 2 * (len(fixed) + 1)  # the table's border and cell padding
        self.table.set_layout(["id", "name", "target", "status", "tools"], fixed | {"target": max(12, room)},
                              tails={"id"})

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.list_mcp()

    def row(self, s: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        target = s.get("url") or " ".join([s.get("command") or "", *s.get("args", [])])
        status = s["status"] + (f": {s['last_error'][:40]}" if s.get("last_error") else "")
        return Row(s["id"], (fmt.ident(s["id"], stable), s["name"], s["transport"], target[:50], status,
                             str(len(s.get("tools") or [])),
                             fmt.ago(s.get("discovered_at"), stable) if s.get("discovered_at") else "-"),
                   "red" if s["status"] == "error" else "")

    async def _ask(self, title: str, submit: str, named: bool, values: dict[str, str] | None = None
                   ) -> tuple[dict[str, str], dict[str, Any]] | None:
        """The form (checked as it is typed: it submits only once its values make a transport) and that
        transport; None when cancelled."""
        form = await self.app.push_screen_wait(FormDialog(title, server_fields(values or {}, named), submit=submit))
        if not form:
            return None
        spec = transport(form)
        if isinstance(spec, str):  # the dialog checks this already; kept for a form changed under it
            self.notify(spec, severity="error")
            return None
        return form, spec

    @work(group="mcp-create")
    async def action_create(self) -> None:
        values: dict[str, str] = {}
        while True:  # a refusal by the runtime (a name taken) reopens the form as it was
            asked = await self._ask("Connect an MCP server", "Connect", named=True, values=values)
            if asked is None:
                return
            values, spec = asked
            server = await self.attempt(partial(create, values["name"], spec))
            if server is not None:
                self.notify(f"Connected '{server['name']}': {server['status']}, {len(server['tools'])} tools.")
                self.schedule_refresh(0)
                return

    @work(group="mcp-discover")
    async def action_discover(self) -> None:
        asked = await self._ask("Discover an MCP server's tools (nothing is saved)", "Discover", named=False)
        if asked is None:
            return
        tools = await self.attempt(lambda c: c.discover_mcp(asked[1]))
        if tools is not None:
            await self.app.push_screen_wait(TextDialog(f"{len(tools)} tools offered", tools_text(tools)))

    @work(group="mcp-tools")
    async def action_tools(self) -> None:
        server = self.require_selection()
        if server is None:
            return
        fresh = await self.attempt(lambda c: c.mcp_server(server["id"], refresh=True))
        if fresh is None:
            return
        detail = f"status {fresh['status']}" + (f": {fresh['last_error']}" if fresh.get("last_error") else "")
        await self.app.push_screen_wait(TextDialog(
            f"{escape(fresh['name'])} ({detail}): {len(fresh['tools'])} tools", tools_text(fresh["tools"])))
        self.schedule_refresh(0)

    @work(group="mcp-delete")
    async def action_delete(self) -> None:
        server = self.require_selection()
        if server is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Disconnect MCP server '{server['name']}'? Agents using its tools lose them.", "Disconnect")):
            return
        if await self.attempt(lambda c: c.delete_mcp(server["id"])) is not None:
            self.notify(f"Disconnected '{server['name']}'.")
            self.schedule_refresh(0)
