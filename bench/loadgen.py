"""A small keep-alive HTTP/1.1 load generator on raw asyncio streams.

httpx spends about a millisecond of CPU per request, which on a 2-core machine caps a benchmark below the server
it measures; this sends pre-built requests and reads responses by Content-Length, nothing more.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


async def _connection(host: str, port: int, request: bytes, count: int, bodies: list[Any]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            if status >= 300:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            bodies.append(json.loads(body) if body else None)
    finally:
        writer.close()


async def post_many(url: str, path: str, payload: dict[str, Any], headers: dict[str, str], total: int,
                    connections: int) -> list[Any]:
    """POST `payload` to `path` `total` times over `connections` keep-alive connections; the decoded bodies."""
    parts = urlsplit(url)
    body = json.dumps(payload).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": parts.netloc, "Content-Type": "application/json",
                                                  "Content-Length": str(len(body)), **headers}.items())
    request = f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body
    bodies: list[Any] = []
    shares = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    await asyncio.gather(*(_connection(parts.hostname or "127.0.0.1", parts.port or 80, request, n, bodies)
                           for n in shares if n))
    return bodies
