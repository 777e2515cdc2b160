"""The outbound address policy shared by the `http_request` tool, RAG `url` sources and MCP server URLs.

Private, loopback, link-local, multicast, reserved and unspecified addresses are refused (unless a setting allows
them): a literal address in the URL, and every address a host name resolves to. A fetch resolves the name once
and connects to the checked address itself (the URL's host goes in the Host header and, for https, as the TLS
server name, so certificates are still verified against the name): a DNS answer that changes between the check
and the connection cannot redirect the request. Redirects are followed here, one hop at a time, each hop checked
and pinned the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

MAX_REDIRECTS = 5
MAX_BYTES = 20 * 1024 * 1024  # a response body read past this is refused (nothing is read whole unbounded)


class AddressRefused(Exception):
    """The URL is not an http(s) URL, cannot be resolved, or points at an address the policy refuses."""


class BodyTooLarge(Exception):
    """The response body is larger than the caller's limit."""


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
        raise AddressRefused(f"cannot resolve '{host}': {err}") from err
    return sorted({str(a[4][0]) for a in answers})


async def check_url(url: str, allow_private: bool) -> list[str]:
    """The addresses `url`'s host resolves to; refuses a URL that is not http(s), or whose host is (or resolves to
    any) non-public address. With `allow_private` nothing is resolved (the list is empty)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"only absolute http and https URLs are allowed, not '{url}'")
    if allow_private:
        return []
    addresses = await resolve(parts.hostname)
    for address in addresses:
        if not address_allowed(address):
            raise AddressRefused(f"refused: '{parts.hostname}' is {address}, a private, loopback, link-local, "
                                 "multicast or reserved address")
    if not addresses:
        raise AddressRefused(f"'{parts.hostname}' resolves to no address")
    return addresses


@dataclass(frozen=True)
class Pinned:
    """A request aimed at one checked address: the URL with the address as host, and what keeps the name."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


def pin(url: str, address: str) -> Pinned:
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    if "@" in parts.netloc:  # keep userinfo, if any, for basic auth
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" and host != address else {}
    return Pinned(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
                  {"Host": host_header}, extensions)


class PinnedTransport(httpx.AsyncBaseTransport):
    """For a client that speaks a protocol of its own (the MCP SDK's): each request, redirects included, goes to
    an address its host resolved to just now, non-public answers refused, the name kept in Host and as the TLS
    server name, as `fetch` does for one request and its redirects."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        target = pin(url, (await check_url(url, allow_private=False))[0])
        request.url = httpx.URL(target.url)
        request.headers.update(target.headers)
        request.extensions = {**request.extensions, **target.extensions}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str  # the final URL, after redirects
    encoding: str

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


async def fetch(client: httpx.AsyncClient, method: str, url: str, *, allow_private: bool,
                content: str | bytes | None = None, headers: Mapping[str, str] | None = None,
                max_redirects: int = MAX_REDIRECTS, max_bytes: int = MAX_BYTES) -> Fetched:
    """The final response, its body read (BodyTooLarge past `max_bytes`), following redirects hop by hop under
    the address policy. `client` must not follow redirects itself. Raises AddressRefused, BodyTooLarge, or
    httpx.HTTPError for transport failures."""
    for _hop in range(max_redirects + 1):
        addresses = await check_url(url, allow_private)
        if addresses:
            target = pin(url, addresses[0])
            request = client.build_request(method, target.url, content=content,
                                           headers={**(headers or {}), **target.headers},
                                           extensions=target.extensions)
        else:
            request = client.build_request(method, url, content=content, headers=headers)
        response = await client.send(request, stream=True)
        try:
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                if response.status_code in (301, 302, 303):
                    method, content = "GET", None
                continue
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > max_bytes:
                    raise BodyTooLarge(f"the response from {url} is larger than {max_bytes} bytes")
            return Fetched(response.status_code, response.headers, bytes(body), url,
                           response.charset_encoding or "utf-8")
        finally:
            await response.aclose()
    raise AddressRefused(f"more than {max_redirects} redirects")
