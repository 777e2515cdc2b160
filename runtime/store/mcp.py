"""MCP servers (`mcp_servers`): transport parameters, sealed env and headers, and the last discovery's tools.

JSON columns (args, env and header names, tools) are decoded here; `secrets` stays ciphertext, opened by the
domain (runtime/mcp/service.py) with the runtime's secret box.
"""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

_JSON = ("args", "env_names", "header_names", "tools")


def _decode(row: Any) -> dict[str, Any]:
    out = dict(row)
    for column in _JSON:
        out[column] = json.loads(out[column])
    return out


async def insert(tx: aiosqlite.Connection, *, project_id: str, name: str, description: str, transport: str,
                 command: str | None, args: list[str], url: str | None, env_names: list[str],
                 header_names: list[str], secrets: bytes | None, created_by: str, private_url: bool
                 ) -> dict[str, Any]:
    row = {"id": new_id("mcp"), "project_id": project_id, "name": name, "description": description,
           "transport": transport, "command": command, "args": json.dumps(args), "url": url,
           "private_url": int(private_url),
           "env_names": json.dumps(env_names), "header_names": json.dumps(header_names), "secrets": secrets,
           "tools": "[]", "status": "unknown", "last_error": None, "discovered_at": None,
           "created_by": created_by, "created_at": utcnow()}
    columns = ", ".join(row)
    await tx.execute(f"INSERT INTO mcp_servers ({columns}) VALUES ({', '.join('?' * len(row))})",
                     tuple(row.values()))
    return _decode(row)


async def name_taken(tx: aiosqlite.Connection, project_id: str, name: str) -> bool:
    async with tx.execute("SELECT 1 FROM mcp_servers WHERE project_id = ? AND name = ?", (project_id, name)) as cur:
        return await cur.fetchone() is not None


async def get(db: Database | aiosqlite.Connection, project_id: str, server_id: str) -> dict[str, Any] | None:
    """The server, only within its own project (another project's id reads as absent)."""
    async with connection(db).execute("SELECT * FROM mcp_servers WHERE id = ? AND project_id = ?",
                                      (server_id, project_id)) as cur:
        row = await cur.fetchone()
    return _decode(row) if row else None


async def list_for(db: Database, project_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM mcp_servers WHERE project_id = ? ORDER BY created_at, id", (project_id,))
    return [_decode(r) for r in rows]


async def record_discovery(tx: aiosqlite.Connection, server_id: str, *, tools: list[dict[str, Any]] | None,
                           error: str | None) -> None:
    """A discovery's outcome: its tools and `connected`, or `error` with the message (the cached tools stay)."""
    if tools is not None:
        await tx.execute("UPDATE mcp_servers SET tools = ?, status = 'connected', last_error = NULL, "
                         "discovered_at = ? WHERE id = ?", (json.dumps(tools), utcnow(), server_id))
    else:
        await tx.execute("UPDATE mcp_servers SET status = 'error', last_error = ? WHERE id = ?", (error, server_id))


async def delete(tx: aiosqlite.Connection, project_id: str, server_id: str) -> bool:
    cur = await tx.execute("DELETE FROM mcp_servers WHERE id = ? AND project_id = ?", (server_id, project_id))
    return cur.rowcount > 0
