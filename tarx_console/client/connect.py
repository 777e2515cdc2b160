"""Where the console and CLI connect: flags, env, a saved context, or the local runtime.

Local means the runtime of this machine's data dir: over HTTP when it is running, otherwise in-process on its
database (the same app, through httpx's ASGI transport), so scripts work whether or not a runtime is up.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runtime.config import Settings, config_dir
from tarx_console.client.api import TarxClient

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


@contextlib.asynccontextmanager
async def open_client(target: Target, settings: Settings | None = None) -> AsyncIterator[TarxClient]:
    if target.url is not None:
        async with httpx.AsyncClient(base_url=target.url, timeout=60) as http:
            yield TarxClient(http, target.key)
        return
    settings = settings or Settings()
    local_url = settings.base_url
    try:
        async with httpx.AsyncClient(base_url=local_url, timeout=2) as probe:
            running = (await probe.get("/api/version")).status_code == 200
    except httpx.TransportError:
        running = False
    if running:
        key = target.key or owner_key(settings)
        async with httpx.AsyncClient(base_url=local_url, timeout=60) as http:
            yield TarxClient(http, key)
        return
    # No runtime running: serve this one call in-process, straight on the database.
    from runtime.app import create_app

    app = create_app(settings.model_copy(update={"log_requests": False}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://tarx.local") as http:
            yield TarxClient(http, target.key or owner_key(settings))


def owner_key(settings: Settings) -> str | None:
    """The local owner's key, written by the runtime at first start."""
    path = settings.owner_key_file
    return path.read_text().strip() if path.exists() else None
