"""Where the console and CLI connect: flags, env, a saved context, or the local runtime; and what answers on a
port (the one reachability probe).

Starting a runtime in this process is not the client's business: `tarx_console.host` does that.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runtime.config import Settings, config_dir
from tarx_console.client.errors import BadURL

CONTEXTS_FILE = "contexts.json"
LOCAL = "local"


@dataclass
class Target:
    name: str
    url: str | None  # None: the local runtime
    key: str | None


def contexts_path() -> Path:
    return config_dir() / CONTEXTS_FILE


def load_contexts() -> dict[str, Any]:
    path = contexts_path()
    if not path.exists():
        return {"current": LOCAL, "contexts": {}}
    return json.loads(path.read_text())


def save_contexts(data: dict[str, Any]) -> Path:
    path = contexts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds keys
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    tmp.replace(path)
    path.chmod(0o600)
    return path


def check_url(url: str) -> str:
    """`url` without its trailing slash, once it is an http(s) URL with a host and a valid port; else BadURL
    (httpx would raise its own errors, or a bare OverflowError from the socket, from deep inside a request)."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise BadURL(f"'{url}' is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadURL(f"'{url}' is not an http:// or https:// URL with a host (e.g. http://127.0.0.1:11440)")
    if port is not None and not 0 < port < 65536:
        raise BadURL(f"'{url}' has port {port}; ports run from 1 to 65535")
    return url.rstrip("/")


def resolve_target(url: str | None = None, key: str | None = None, context: str | None = None) -> Target:
    url = url or os.environ.get("TARX_URL")
    key = key or os.environ.get("TARX_API_KEY")
    if url:
        return Target("flags", check_url(url), key)
    data = load_contexts()
    name = context or data.get("current") or LOCAL
    if name == LOCAL:
        return Target(LOCAL, None, key)
    saved = data["contexts"].get(name)
    if saved is None:
        raise KeyError(f"no context named '{name}'; see `tarx context list`")
    return Target(name, check_url(saved["url"]), key or saved["key"])


def owner_key(settings: Settings) -> str | None:
    """The local owner's key, written by the runtime at first start."""
    path = settings.owner_key_file
    return path.read_text().strip() if path.exists() else None


class PortState(enum.Enum):
    FREE = "free"
    TARX = "tarx"  # a tarx runtime answers there: attach to it
    OTHER = "other"  # something else holds the port


async def probe(host: str, port: int) -> PortState:
    """What answers on host:port. Never raises."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return PortState.FREE
    writer.close()
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            body = (await http.get(f"http://{netloc}/api/version")).json()
    except (httpx.HTTPError, ValueError):
        return PortState.OTHER
    is_tarx = isinstance(body, dict) and isinstance(body.get("release"), dict) and "tarx" in body["release"]
    return PortState.TARX if is_tarx else PortState.OTHER
