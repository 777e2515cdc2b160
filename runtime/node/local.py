"""The node the runtime runs inside itself, so jobs run with nothing else started (setting `local_node`).

It is an ordinary NodeRunner talking to the runtime's own app in-process: it registers once with the owner's key
and keeps its node identity in `<data dir>/local-node.json` (0600) across restarts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from runtime.config import Settings
from runtime.node.runner import NodeRunner


class LocalNode:
    def __init__(self, app: Any, settings: Settings) -> None:  # an ASGI app (no web framework import here)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 0)),
                                      base_url="http://localhost")
        self.runner = NodeRunner(
            self.http, settings.owner_key_file.read_text().strip(), name="local",
            labels={"node": "local"}, capacity=settings.local_node_capacity or os.cpu_count() or 1,
            workdir=settings.data_dir / "jobs", state_file=settings.data_dir / "local-node.json",
            heartbeat_seconds=settings.node_heartbeat_seconds)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.runner.run(self._stop), name="tarx-local-node")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.http.aclose()
