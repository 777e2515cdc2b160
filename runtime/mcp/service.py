"""`McpService`: a project's MCP servers (seed 001 `/api/v1/mcp`), their discovery and their tools.

RBAC (seed 001): reading is any member's; connecting and disconnecting are an editor's; registering or discovering
a stdio `command` is the project's admin's or owner's alone, since it runs a program on this machine. Env and
header values are secrets: sealed with the runtime's secret box, shown only as names.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from runtime.agents import addresses
from runtime.agents.addresses import AddressRefused
from runtime.auth.access import ADMIN, READ, WRITE, ProjectContext, require
from runtime.auth.secretbox import SecretBox
from runtime.errors import Conflict, InvalidRequest, NotFound, TarxError
from runtime.mcp import client
from runtime.mcp.client import McpTool, McpUnreachable, ToolOutcome, Transport
from runtime.store import Database, audit
from runtime.store import mcp as store

HIDDEN = "****"


class McpServer(BaseModel):
    """A connected MCP server as the API shows it: secrets as names only, tools from the last discovery."""

    id: str
    project_id: str
    name: str
    description: str
    transport: str
    command: str | None
    args: list[str]
    url: str | None
    env: dict[str, str]
    headers: dict[str, str]
    status: str  # unknown (never discovered), connected (the last discovery worked) or error
    last_error: str | None
    discovered_at: str | None
    tools: list[McpTool]
    created_by: str
    created_at: str


def _server(row: dict[str, Any]) -> McpServer:
    return McpServer(
        id=row["id"], project_id=row["project_id"], name=row["name"], description=row["description"],
        transport=row["transport"], command=row["command"], args=row["args"], url=row["url"],
        env=dict.fromkeys(row["env_names"], HIDDEN), headers=dict.fromkeys(row["header_names"], HIDDEN),
        status=row["status"], last_error=row["last_error"], discovered_at=row["discovered_at"],
        tools=[McpTool(**t) for t in row["tools"]], created_by=row["created_by"], created_at=row["created_at"])


def _check(transport: Transport) -> None:
    if transport.kind == "stdio" and not transport.command:
        raise InvalidRequest("A stdio MCP server needs a command.", extra={"error_code": "VALIDATION_ERROR"})
    if transport.kind == "streamable_http" and not (transport.url or "").startswith(("http://", "https://")):
        raise InvalidRequest("A streamable HTTP MCP server needs an http(s) url.",
                             extra={"error_code": "VALIDATION_ERROR"})


class McpService:
    def __init__(self, db: Database, box: SecretBox, *, discover_timeout: float = 20.0,
                 call_timeout: float = 30.0, allow_private: bool = False) -> None:
        self.db = db
        self.allow_private = allow_private  # settings.agent_http_allow_private: any editor may use private URLs
        self.box = box
        self.discover_timeout = discover_timeout
        self.call_timeout = call_timeout

    async def _may_use(self, ctx: ProjectContext, transport: Transport, action: str) -> Transport:
        """`transport` if the caller may use it, pinned to public addresses unless its URL is a private one."""
        await require(self.db, ctx, WRITE, action)
        if transport.kind == "stdio":  # it runs a program on this machine
            await require(self.db, ctx, ADMIN, f"{action}.command")
        elif transport.url and not self.allow_private:
            # A URL at a private, loopback or link-local address reaches this machine or its network, as a command
            # does: admins and owners only (http_request's address policy, runtime/agents/addresses.py).
            try:
                await addresses.check_url(transport.url, allow_private=False)
            except AddressRefused:
                await require(self.db, ctx, ADMIN, f"{action}.private_url")
                return transport
            return replace(transport, public_only=True)
        return transport

    async def _row(self, ctx: ProjectContext, server_id: str) -> dict[str, Any]:
        row = await store.get(self.db, ctx.project.id, server_id)
        if row is None:
            raise NotFound(f"MCP server '{server_id}' was not found in this project.",
                           extra={"error_code": "NOT_FOUND"})
        return row

    def _transport(self, row: dict[str, Any]) -> Transport:
        sealed = json.loads(self.box.open(row["secrets"])) if row["secrets"] else {}
        return Transport(kind=row["transport"], command=row["command"], args=tuple(row["args"]),
                         env=sealed.get("env", {}), url=row["url"], headers=sealed.get("headers", {}),
                         public_only=bool(row["url"]) and not row["private_url"] and not self.allow_private)

    async def _refresh(self, row: dict[str, Any]) -> dict[str, Any]:
        """Discover the server's tools now and record the outcome; the row as it then stands."""
        try:
            tools, error = await client.list_tools(self._transport(row), self.discover_timeout), None
        except McpUnreachable as exc:
            tools, error = None, str(exc)
        async with self.db.transaction() as tx:
            await store.record_discovery(tx, row["id"], tools=[t.model_dump() for t in tools] if tools is not None
                                         else None, error=error)
            return await store.get(tx, row["project_id"], row["id"]) or row

    # ---- the API's operations --------------------------------------------------------------------------------

    async def list(self, ctx: ProjectContext) -> list[McpServer]:
        """The project's servers with the tools each last discovery found (nothing is contacted)."""
        await require(self.db, ctx, READ, "mcp.list")
        return [_server(r) for r in await store.list_for(self.db, ctx.project.id)]

    async def create(self, ctx: ProjectContext, name: str, transport: Transport, description: str = "") -> McpServer:
        """Register a server and discover its tools at once; a server that cannot be reached yet is kept, with
        status `error` and the reason."""
        _check(transport)
        transport = await self._may_use(ctx, transport, "mcp.create")
        secrets = {"env": dict(transport.env), "headers": dict(transport.headers)}
        async with self.db.transaction() as tx:
            if await store.name_taken(tx, ctx.project.id, name):
                raise Conflict(f"An MCP server named '{name}' already exists.", extra={"error_code": "CONFLICT"})
            row = await store.insert(
                tx, project_id=ctx.project.id, name=name, description=description, transport=transport.kind,
                command=transport.command, args=list(transport.args), url=transport.url,
                env_names=sorted(transport.env), header_names=sorted(transport.headers),
                secrets=self.box.seal(json.dumps(secrets)) if transport.env or transport.headers else None,
                created_by=ctx.principal.user.id, private_url=bool(transport.url) and not transport.public_only)
            await audit.write(tx, ctx.principal.actor, "mcp.create", target=row["id"], project_id=ctx.project.id,
                              detail={"name": name, "transport": transport.kind, "command": transport.command,
                                      "url": transport.url})
        return _server(await self._refresh(row))

    async def get(self, ctx: ProjectContext, server_id: str, *, live: bool = True) -> McpServer:
        """Details and tools: discovered now when `live` (falling back to the cached tools, status `error`, when
        the server cannot be reached), else as the last discovery left them."""
        await require(self.db, ctx, READ, "mcp.read")
        row = await self._row(ctx, server_id)
        return _server(await self._refresh(row) if live else row)

    async def delete(self, ctx: ProjectContext, server_id: str) -> None:
        await require(self.db, ctx, WRITE, "mcp.delete")
        async with self.db.transaction() as tx:
            if not await store.delete(tx, ctx.project.id, server_id):
                raise NotFound(f"MCP server '{server_id}' was not found in this project.",
                               extra={"error_code": "NOT_FOUND"})
            await audit.write(tx, ctx.principal.actor, "mcp.delete", target=server_id, project_id=ctx.project.id)

    async def discover(self, ctx: ProjectContext, transport: Transport) -> list[McpTool]:
        """The tools of a server that need not be registered; 400 (MCP_UNREACHABLE) when it cannot be reached."""
        _check(transport)
        transport = await self._may_use(ctx, transport, "mcp.discover")
        try:
            return await client.list_tools(transport, self.discover_timeout)
        except McpUnreachable as exc:
            raise McpDiscoveryFailed(f"Could not discover the MCP server's tools: {exc}") from exc

    # ---- for agents ------------------------------------------------------------------------------------------

    async def project_tools(self, ctx: ProjectContext) -> list[tuple[McpServer, McpTool]]:
        """Every (server, tool) pair of the project's servers, from their last discoveries (nothing contacted)."""
        return [(server, tool) for server in await self.list(ctx) for tool in server.tools]

    async def call_tool(self, ctx: ProjectContext, server_id: str, name: str, args: dict[str, Any],
                        *, deadline_s: float | None = None) -> ToolOutcome:
        """Call tool `name` of the project's server `server_id` with `args` (a JSON object), within `deadline_s`
        seconds (default `call_timeout`). Any member may call. Never raises for the tool's own failure, a timeout
        or an unreachable server: those come back as `ToolOutcome(success=False, result_text=<why>)`. Raises
        NotFound (404) only for a server that is not the project's."""
        await require(self.db, ctx, READ, "mcp.call")
        row = await self._row(ctx, server_id)
        return await client.call_tool(self._transport(row), name, args, deadline_s or self.call_timeout)


class McpDiscoveryFailed(TarxError):
    status, type, code = 400, "invalid_request_error", "mcp_unreachable"

    def __init__(self, message: str) -> None:
        super().__init__(message, extra={"error_code": "MCP_UNREACHABLE"})


__all__ = ["McpDiscoveryFailed", "McpServer", "McpService", "McpTool", "ToolOutcome", "Transport"]
