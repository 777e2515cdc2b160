"""MCP servers: list the project's, connect one (a stdio command, for the runtime's owner and project admins, or a
streamable HTTP URL), discover a server's tools before connecting it, show a connected server's tools."""

from __future__ import annotations

import shlex
from typing import Any

from rich.markup import escape
from textual import work
from textual.binding import Binding

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.screens.rag import TextDialog
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
    if not target.startswith(("http://", "https://")):
        return "A streamable HTTP server needs an http:// or https:// URL."
    return {"transport": "streamable_http", "url": target}


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

    async def _ask(self, title: str, submit: str, named: bool) -> tuple[dict[str, str], dict[str, Any]] | None:
        """The form until its values make a transport; None when cancelled."""
        values: dict[str, str] = {}
        while True:
            fields = [Field("name", "Name", values.get("name", ""), placeholder="e.g. files")] if named else []
            fields += [Field("transport", "Transport", values.get("transport", "stdio"), TRANSPORTS),
                       Field("target", "Command with its arguments (stdio), or the server's URL (streamable_http)",
                             values.get("target", ""), placeholder="e.g. npx -y @mcp/files /srv or https://…/mcp")]
            form = await self.app.push_screen_wait(FormDialog(title, fields, submit=submit))
            if not form:
                return None
            values = form
            spec = transport(form)
            if named and not form["name"]:
                spec = "A server needs a name."
            if isinstance(spec, str):
                self.notify(spec, severity="error")
                continue
            return form, spec

    @work(group="mcp-create")
    async def action_create(self) -> None:
        asked = await self._ask("Connect an MCP server", "Connect", named=True)
        if asked is None:
            return
        form, spec = asked
        server = await self.attempt(lambda c: c.create_mcp(form["name"], spec))
        if server is not None:
            self.notify(f"Connected '{server['name']}': {server['status']}, {len(server['tools'])} tools.")
            self.schedule_refresh(0)

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
