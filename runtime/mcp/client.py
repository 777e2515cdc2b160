"""The MCP client: the official `mcp` SDK over stdio or streamable HTTP, one short session per operation.

Each discovery or tool call opens its own session (spawn or connect, initialize, one request, close) inside a
deadline, so a hung or crashed server costs one bounded failure and never a leaked process or a stuck request.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
from pydantic import BaseModel

from runtime.agents import addresses

if TYPE_CHECKING:
    from mcp import ClientSession

TransportKind = Literal["stdio", "streamable_http"]
MAX_TOOL_PAGES = 50  # a paginating server that never ends cannot hang a discovery


@dataclass(frozen=True)
class Transport:
    """How to reach one MCP server: a program to spawn (stdio) or an endpoint (streamable HTTP)."""

    kind: TransportKind
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Every request to `url` is checked against the outbound address policy and sent to the checked address
    # (runtime/agents/addresses.py), as `http_request` does: set for a URL registered at a public address.
    public_only: bool = False


class McpTool(BaseModel):
    """One tool a server offers, as its discovery described it."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = {}


@dataclass(frozen=True)
class ToolOutcome:
    """A tool call's outcome. `success` is False when the tool reported an error, raised, timed out or its server
    could not be reached; `result_text` then says why. On success it is the tool's content as text (text blocks
    joined by newlines; structured or non-text content as JSON)."""

    success: bool
    result_text: str


class McpUnreachable(Exception):
    """The server could not be started, reached or spoken to within the deadline."""


def describe(exc: BaseException) -> str:
    """A one-line reason, unwrapping the exception groups anyio's task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError | anyio.EndOfStream):
        return "the server closed the connection (did the program exit?)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@asynccontextmanager
async def session(transport: Transport, deadline_s: float) -> AsyncIterator[ClientSession]:
    """An initialized SDK session with the server; closed (and a spawned program stopped) on exit."""
    # Imported on first use: the SDK's package pulls in its server half too (~35 MB resident), which a runtime with
    # no MCP server configured never needs.
    from mcp import ClientSession, StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client

    if transport.kind == "stdio":
        if not transport.command:
            raise ValueError("a stdio transport needs a command")
        params = StdioServerParameters(command=transport.command, args=list(transport.args),
                                       env=dict(transport.env) or None)
        async with stdio_client(params, errlog=sys.stderr) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s
    else:
        if not transport.url:
            raise ValueError("a streamable HTTP transport needs a url")
        http = httpx.AsyncClient(headers=dict(transport.headers), timeout=httpx.Timeout(deadline_s),
                                 transport=addresses.PinnedTransport() if transport.public_only else None)
        async with http, streamable_http_client(transport.url, http_client=http) as (read, write, _), \
                ClientSession(read, write) as s:
            await s.initialize()
            yield s


async def list_tools(transport: Transport, deadline_s: float) -> list[McpTool]:
    """Every tool the server offers (all pages). Raises McpUnreachable."""
    try:
        with anyio.fail_after(deadline_s):
            async with session(transport, deadline_s) as s:
                tools: list[McpTool] = []
                cursor: str | None = None
                for _ in range(MAX_TOOL_PAGES):
                    listed = await s.list_tools(cursor) if cursor else await s.list_tools()
                    tools += [McpTool(name=t.name, description=t.description or "", input_schema=t.inputSchema)
                              for t in listed.tools]
                    cursor = listed.nextCursor
                    if not cursor:
                        break
                return tools
    except Exception as exc:
        raise McpUnreachable(describe(exc)) from exc


def _content_text(result: Any) -> str:
    parts = []
    for block in result.content:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
        else:
            parts.append(block.model_dump_json(exclude_none=True))
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent))
    return "\n".join(parts)


async def call_tool(transport: Transport, name: str, args: dict[str, Any], deadline_s: float) -> ToolOutcome:
    """Call one tool; every failure (the tool's own error, a timeout, an unreachable server) is an outcome."""
    try:
        with anyio.fail_after(deadline_s):
            async with session(transport, deadline_s) as s:
                result = await s.call_tool(name, args)
    except Exception as exc:
        return ToolOutcome(False, f"MCP tool '{name}' failed: {describe(exc)}")
    return ToolOutcome(not result.isError, _content_text(result))
