"""The built-in tools an agent may use: `current_time`, `http_request` and `rag_search` (the agent's own RAG sources).

`http_request` refuses private, loopback, link-local, multicast, reserved and unspecified addresses (unless the
`agent_http_allow_private` setting allows them): a literal address in the URL, every address a host name resolves
to (the connection then goes to the checked address, pinned), and every redirect hop (runtime/agents/addresses.py).
A tool that cannot do its work raises `ToolError`; the tool loop turns that into a failed tool result.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from runtime.agents import addresses
from runtime.agents.addresses import MAX_REDIRECTS, AddressRefused, BodyTooLarge, address_allowed

__all__ = ["RAG_SEARCH_SPEC", "Tool", "ToolError", "ToolSpec", "address_allowed", "builtin_tools", "check_url",
           "http_request_tool", "rag_search_tool"]

if TYPE_CHECKING:
    from runtime.rag import RagService

MAX_BODY_CHARS = 8000
MAX_RESPONSE_BYTES = 2 * 1024 * 1024  # read at most this much of a response (the model sees MAX_BODY_CHARS)
RAG_SEARCH = "rag_search"
MAX_SNIPPET_CHARS = 600


class ToolError(Exception):
    """A tool could not do its work; the message is what the model (and the client) sees."""


@dataclass(frozen=True)
class ToolSpec:
    """What a tool is, without how it runs: what `GET /api/v1/tools` lists."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of the arguments


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[str]] = field(repr=False)

    def definition(self) -> dict[str, Any]:
        """The OpenAI function definition (`tools[].function`)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


# ---- the address policy (runtime/agents/addresses.py) ---------------------------------------------------------------

async def check_url(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), or whose host is (or resolves to any) non-public address."""
    try:
        await addresses.check_url(url, allow_private)
    except AddressRefused as err:
        raise ToolError(str(err)) from err


# ---- the tools -----------------------------------------------------------------------------------------------------

async def current_time(args: dict[str, Any]) -> str:
    name = args.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolError("timezone must be a string such as 'Europe/Madrid'")
    try:
        zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ToolError(f"unknown timezone '{name}'") from err
    return json.dumps({"time": datetime.now(zone).isoformat(timespec="seconds"), "timezone": name})


def http_request_tool(allow_private: bool, timeout: float,
                      transport: httpx.AsyncBaseTransport | None = None) -> Tool:
    """`transport` replaces the network (tests use httpx.MockTransport); the address policy applies either way."""

    async def run(args: dict[str, Any]) -> str:
        url, method = args.get("url"), str(args.get("method") or "GET").upper()
        if not isinstance(url, str):
            raise ToolError("url must be a string")
        if method not in ("GET", "POST"):
            raise ToolError("method must be GET or POST")
        body = args.get("body")
        content = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        async with httpx.AsyncClient(follow_redirects=False, timeout=timeout, transport=transport) as client:
            try:
                response = await addresses.fetch(client, method, url, allow_private=allow_private,
                                                        content=content, max_redirects=MAX_REDIRECTS,
                                                        max_bytes=MAX_RESPONSE_BYTES)
            except (AddressRefused, BodyTooLarge) as err:
                raise ToolError(str(err)) from err
            except httpx.HTTPError as err:
                raise ToolError(f"request failed: {type(err).__name__}: {err}") from err
        return json.dumps({"status": response.status, "url": response.url,
                           "content_type": response.headers.get("content-type"),
                           "body": response.text[:MAX_BODY_CHARS]})

    return Tool(
        "http_request", "Fetch a public web URL with GET or POST and return its status and body.",
        {"type": "object", "properties": {
            "url": {"type": "string", "description": "an absolute http(s) URL"},
            "method": {"type": "string", "enum": ["GET", "POST"]},
            "body": {"type": "string", "description": "the request body for POST"}},
         "required": ["url"]},
        run)


def rag_search_tool(rag: RagService, project_id: str, source_ids: list[str]) -> Tool:
    """`rag_search` over the agent's own sources (`source_ids`, in its project): the best passages as text."""

    async def run(args: dict[str, Any]) -> str:
        query, k = args.get("query"), args.get("k", 3)
        if not source_ids:
            raise ToolError("this agent has no RAG sources to search")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("query must be a non-empty string")
        if not isinstance(k, int) or isinstance(k, bool):
            k = 3
        hits = await rag.search(project_id, source_ids, query, max(1, min(k, 10)))
        if not hits:
            return "no passages matched the query"
        names = {s["id"]: s["name"] for s in await rag.list(project_id)}
        return "\n\n".join(f"[{n}] {names.get(h.source_id, h.source_id)} ({h.document}): "
                            f"{h.text.strip()[:MAX_SNIPPET_CHARS]}" for n, h in enumerate(hits, start=1))

    return Tool(RAG_SEARCH_SPEC.name, RAG_SEARCH_SPEC.description, RAG_SEARCH_SPEC.parameters, run)


# Defined apart from its run: the tool list describes rag_search without an agent's sources to search.
RAG_SEARCH_SPEC = ToolSpec(
    RAG_SEARCH, "Search this agent's knowledge sources and return the most relevant passages.",
    {"type": "object", "properties": {
        "query": {"type": "string", "maxLength": 200, "description": "what to look for"},
        "k": {"type": "integer", "description": "how many passages (1 to 10, default 3)"}},
     "required": ["query"]})


def builtin_tools(allow_private: bool = False, http_timeout: float = 20.0) -> dict[str, Tool]:
    tools = [
        Tool("current_time", "The current date and time, in UTC or an IANA timezone.",
             {"type": "object", "properties": {"timezone": {"type": "string", "description": "e.g. Europe/Madrid"}}},
             current_time),
        http_request_tool(allow_private, http_timeout),
    ]
    return {t.name: t for t in tools}
