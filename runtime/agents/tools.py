"""The built-in tools an agent may use: `current_time`, `http_request` and `rag_search` (the agent's own RAG sources).

`http_request` refuses private, loopback, link-local, multicast, reserved and unspecified addresses (unless the
`agent_http_allow_private` setting allows them): a literal address in the URL, every address a host name resolves
to, and every redirect hop (redirects are followed here, one at a time, never by the HTTP client). A tool that
cannot do its work raises `ToolError`; the tool loop turns that into a failed tool result.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

if TYPE_CHECKING:
    from runtime.rag import RagService

MAX_REDIRECTS = 5
MAX_BODY_CHARS = 8000
RAG_SEARCH = "rag_search"
MAX_SNIPPET_CHARS = 600


class ToolError(Exception):
    """A tool could not do its work; the message is what the model (and the client) sees."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[str]] = field(repr=False)

    def definition(self) -> dict[str, Any]:
        """The OpenAI function definition (`tools[].function`)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


# ---- the address policy --------------------------------------------------------------------------------------------

def address_allowed(address: str) -> bool:
    """Whether `address` (a literal IPv4 or IPv6 address) is a public one a tool may reach."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


async def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (a literal address resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as err:
        raise ToolError(f"cannot resolve '{host}': {err}") from err
    return sorted({str(a[4][0]) for a in answers})


async def check_url(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), or whose host is (or resolves to any) non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"only absolute http and https URLs are allowed, not '{url}'")
    if allow_private:
        return
    for address in await resolve(parts.hostname):
        if not address_allowed(address):
            raise ToolError(f"refused: '{parts.hostname}' is {address}, a private, loopback, link-local, multicast "
                            "or reserved address")


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
            for _hop in range(MAX_REDIRECTS + 1):
                await check_url(url, allow_private)
                try:
                    response = await client.request(method, url, content=content)
                except httpx.HTTPError as err:
                    raise ToolError(f"request failed: {type(err).__name__}: {err}") from err
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if response.status_code in (301, 302, 303):
                        method, content = "GET", None
                    continue
                return json.dumps({"status": response.status_code, "url": url,
                                   "content_type": response.headers.get("content-type"),
                                   "body": response.text[:MAX_BODY_CHARS]})
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")

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

    return Tool(
        RAG_SEARCH, "Search this agent's knowledge sources and return the most relevant passages.",
        {"type": "object", "properties": {
            "query": {"type": "string", "maxLength": 200, "description": "what to look for"},
            "k": {"type": "integer", "description": "how many passages (1 to 10, default 3)"}},
         "required": ["query"]},
        run)


def builtin_tools(allow_private: bool = False, http_timeout: float = 20.0) -> dict[str, Tool]:
    tools = [
        Tool("current_time", "The current date and time, in UTC or an IANA timezone.",
             {"type": "object", "properties": {"timezone": {"type": "string", "description": "e.g. Europe/Madrid"}}},
             current_time),
        http_request_tool(allow_private, http_timeout),
    ]
    return {t.name: t for t in tools}
