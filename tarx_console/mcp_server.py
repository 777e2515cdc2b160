"""`tarx mcp`: an MCP server over stdio (the official SDK) whose tools run against the local runtime through
TarxClient, so a desktop MCP client (Claude Desktop, an IDE) uses local models, RAG sources and jobs without
sending anything elsewhere. The tools (chat, RAG search, agent chat, job submission) and their schemas are
runtime/mcp/local_tools.py's, shared with `GET /openai-tools`.

stdout is the protocol channel: nothing else may print there (logs go to stderr).
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from runtime.mcp.local_tools import DEFAULT_CHAT_MAX_TOKENS, DEFAULT_CHAT_MODEL, LOCAL_TOOLS
from tarx_console.client.api import TarxClient


def build_server(client: TarxClient) -> Server:
    # The low-level server, not FastMCP: it advertises LOCAL_TOOLS' schemas exactly (and validates arguments
    # against them), so the MCP tools and the OpenAI export cannot drift apart.
    server: Server = Server("tarx")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, inputSchema=t.parameters) for t in LOCAL_TOOLS]

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
        # An exception here becomes the call's error result (isError), with its message.
        if name == "chat":
            answer = await client.chat_completion(
                [{"role": "user", "content": arguments["message"]}], arguments.get("model", DEFAULT_CHAT_MODEL),
                max_tokens=arguments.get("max_tokens", DEFAULT_CHAT_MAX_TOKENS))
            text = answer["choices"][0]["message"].get("content") or ""
        elif name == "rag_search":
            text = json.dumps(await _rag_search(client, arguments["query"], arguments.get("k", 5),
                                                arguments.get("source_id")))
        elif name == "agent_chat":
            reply = await client.agent_reply(await _agent_id(client, arguments["agent"]), arguments["message"])
            text = json.dumps({key: reply[key] for key in ("response", "model", "tool_calls") if key in reply})
        elif name == "submit_job":
            job = await client.submit_job(arguments["command"],
                                          timeout_seconds=arguments.get("timeout_seconds", 3600))
            text = json.dumps(job)
        else:
            raise ValueError(f"unknown tool '{name}'")
        return [types.TextContent(type="text", text=text)]

    return server


async def _rag_search(client: TarxClient, query: str, k: int, source_id: str | None) -> list[dict[str, Any]]:
    """The best `k` hits of one source, or of every source of the project merged by score."""
    ids = [source_id] if source_id else [s["id"] for s in await client.rag_sources()]
    hits = [hit for rag_id in ids for hit in await client.rag_search(rag_id, query, k)]
    hits.sort(key=lambda h: h["score"], reverse=True)
    return [{key: h[key] for key in ("source_id", "document", "text", "score")} for h in hits[:k]]


async def _agent_id(client: TarxClient, agent: str) -> str:
    """An agent's id from its id or its name (names are unique within a project)."""
    agents = await client.list_agents()
    for found in agents:
        if agent in (found["id"], found["name"]):
            return found["id"]
    raise ValueError(f"no agent '{agent}' in this project; agents: {', '.join(a['name'] for a in agents) or 'none'}")


async def serve_stdio(client: TarxClient) -> None:
    server = build_server(client)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
