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


def resolve_target(url: str | None = None, key: str | None = None, context: str | None = None) -> Target:
    url = url or os.environ.get("TARX_URL")
    key = key or os.environ.get("TARX_API_KEY")
    if url:
        return Target("flags", url.rstrip("/"), key)
    data = load_contexts()
    name = context or data.get("current") or LOCAL
    if name == LOCAL:
        return Target(LOCAL, None, key)
    saved = data["contexts"].get(name)
    if saved is None:
        raise KeyError(f"no context named '{name}'; see `tarx context list`")
    return Target(name, saved["url"], key or saved["key"])


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
