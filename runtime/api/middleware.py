"""Pure ASGI middleware: body size limit, request log, rate limits, the compute API version header."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import socket
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.errors import envelope
from runtime.api.families import Family, family, rate_limit_family
from runtime.auth.ratelimit import RateLimiter
from runtime.errors import PayloadTooLarge, TarxError
from runtime.release import CONSOLE_AGENT

access_log = logging.getLogger("tarx.access")


class RateLimited(TarxError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"


class BodyLimit:
    """413 in the family's envelope for bodies over the limit, by Content-Length or by counting."""

    exempt = "/api/compute/artifacts/upload/"

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body exceeds the {self.max_bytes}-byte limit.")

    async def _reject(self, path: str, send: Send) -> None:
        err = self._error()
        body = json.dumps(envelope(path, err)).encode()
        await send({"type": "http.response.start", "status": err.status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(self.exempt):  # artifact uploads stream to disk under their own limit
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(path, send)
            return
        seen = 0
        rejected = False

        async def counted() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 now and tell the app the client left, so it stops reading and answers nothing.
                    rejected = True
                    await self._reject(path, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counted, guarded_send)


class AccessLog:
    """Every answered request: `METHOD path status duration` on stderr (unless `log` is off), and counted by API
    family and status in the app's metrics (streams: when they end). Outermost of the runtime's middleware, so
    the refusals of the others (403 host, 413, 429) are seen too."""

    def __init__(self, app: ASGIApp, log: bool = True) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            status = status or 499  # the client went away before an answer
            raise
        except Exception:
            # The catch-all handler (outermost, outside this middleware) answers 500 for what escapes here.
            status = status or 500
            raise
        finally:
            seconds = time.perf_counter() - start
            svc = getattr(scope["app"].state, "services", None) if "app" in scope else None
            if svc is not None and status:
                svc.metrics.request(family(scope["path"]).value, status, seconds)
            if self.log and not (_console_poll(scope) and status < 400):
                client = scope.get("client") or ("-", 0)
                access_log.info('%s "%s %s" %s %.1fms', client[0], scope["method"], scope["path"], status or "-",
                                seconds * 1000)


def _console_poll(scope: Scope) -> bool:
    """A console's periodic read (it refreshes every few seconds); logging each would bury everything else."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    agent = next((v for k, v in scope.get("headers", []) if k == b"user-agent"), b"")
    return agent.startswith(CONSOLE_AGENT.encode())


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _caller(scope: Scope) -> str:
    """Who a limit counts against: the credential presented (hashed), else the client address."""
    credential = _header(scope, b"x-api-key") or _header(scope, b"authorization")
    if credential is None and b"token=" in scope.get("query_string", b""):
        credential = scope["query_string"]
    if credential:
        return "k:" + hashlib.sha256(credential).hexdigest()[:32]
    client = scope.get("client") or ("-", 0)
    return f"ip:{client[0]}"


class RateLimit:
    """Seed 001 and 003 limits: X-RateLimit-* and IETF RateLimit headers on every response, 429 when over."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = rate_limit_family(scope["path"]) if scope["type"] == "http" else None
        if policy is None or policy not in self.limiter.policies:
            await self.app(scope, receive, send)
            return
        d = self.limiter.hit(policy, _caller(scope))
        headers = [
            (b"x-ratelimit-limit", str(d.limit).encode()),
            (b"x-ratelimit-remaining", str(d.remaining).encode()),
            (b"x-ratelimit-reset", str(d.reset_epoch).encode()),
            (b"ratelimit", d.ietf.encode()),
            (b"ratelimit-policy", d.policy.encode()),
        ]
        if not d.allowed:
            err = RateLimited(f"Rate limit exceeded; retry in {d.retry_after} s.",
                              extra={"retry_after_seconds": d.retry_after, "error_code": "RATE_LIMIT_EXCEEDED"})
            body = json.dumps(envelope(scope["path"], err)).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"retry-after", str(d.retry_after).encode()), *headers]})
            await send({"type": "http.response.body", "body": body})
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


class HostCheck:
    """Refuse requests whose Host header names a host this runtime was not told it is (DNS rebinding: a web page
    whose name resolves to 127.0.0.1 would otherwise be same-origin with the runtime's key-less surface)."""

    def __init__(self, app: ASGIApp, allowed: list[str], bind_host: str) -> None:
        self.app = app
        self.any = "*" in allowed
        names = {name.lower().rstrip(".") for name in allowed}
        if bind_host not in ("127.0.0.1", "localhost", "::1") and not bind_host.startswith("127."):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower(), bind_host.lower()}
        self.names = names

    def allows(self, host: str) -> bool:
        if self.any or not host:
            return True
        name = host.lower()
        if name.startswith("["):  # [v6]:port
            return _is_ip(name[1:].partition("]")[0])
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        name = name.rstrip(".")
        return _is_ip(name) or name == "localhost" or name.endswith(".localhost") or name in self.names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        err = TarxError(f"Host '{host}' is not one this runtime answers to; add it to the allowed_hosts setting.",
                        status=403, type="permission_error", code="host_not_allowed",
                        extra={"error_code": "HOST_NOT_ALLOWED"})
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(envelope(scope["path"], err)).encode()})


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class ComputeVersion:
    """`/v0/*`: `X-Compute-API-Version` must be `v0` when sent, and every answer carries it."""

    VERSION = b"v0"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or family(scope["path"]) is not Family.compute_v0:
            await self.app(scope, receive, send)
            return
        asked = _header(scope, b"x-compute-api-version")
        version_header = (b"x-compute-api-version", self.VERSION)
        if asked is not None and asked.strip().lower() != self.VERSION:
            err = TarxError(f"Unsupported X-Compute-API-Version '{asked.decode(errors='replace')}'; this runtime "
                            "serves v0.", code="unsupported_api_version")
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"), version_header]})
            await send({"type": "http.response.body", "body": json.dumps(envelope(scope["path"], err)).encode()})
            return

        async def with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), version_header]}
            await send(message)

        await self.app(scope, receive, with_version)
