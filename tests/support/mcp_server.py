"""A real MCP server for the tests, written with the official SDK's FastMCP.

`python tests/support/mcp_server.py` serves over stdio; `... --http PORT` serves streamable HTTP on
127.0.0.1:PORT at /mcp.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("tarx-test-tools", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def boom() -> str:
    """Always fails."""
    raise RuntimeError("kaboom")


@server.tool()
def env_value(name: str) -> str:
    """The value of one environment variable of this server process ('' when unset)."""
    return os.environ.get(name, "")


@server.tool()
def header_value(name: str, ctx: Context) -> str:
    """The value of one header of the HTTP request that carried this call ('' over stdio or when absent)."""
    request = ctx.request_context.request
    return request.headers.get(name, "") if request is not None else ""


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "awake"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT")
    ns = parser.parse_args()
    if ns.http:
        server.settings.host, server.settings.port = "127.0.0.1", ns.http
        server.run(transport="streamable-http")
    else:
        server.run()


if __name__ == "__main__":
    main()
