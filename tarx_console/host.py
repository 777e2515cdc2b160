"""The runtime the console runs inside its own process, and the choice between starting one and attaching.

The console talks to the embedded runtime over HTTP like any other client (one code path, local or remote);
this module only owns the server task. No textual imports here.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from runtime.config import Settings

if TYPE_CHECKING:
    from runtime.server import Server


class PortState(enum.Enum):
    FREE = "free"
    TARX = "tarx"  # another tarx runtime answers there: attach to it
    OTHER = "other"  # something else holds the port


async def probe(host: str, port: int) -> PortState:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return PortState.FREE
    writer.close()
    try:
        async with httpx.AsyncClient(timeout=3) as http:
            body = (await http.get(f"http://{host}:{port}/api/version")).json()
    except (httpx.HTTPError, ValueError):
        return PortState.OTHER
    is_tarx = isinstance(body, dict) and isinstance(body.get("release"), dict) and "tarx" in body["release"]
    return PortState.TARX if is_tarx else PortState.OTHER


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedRuntime:
    """The runtime's uvicorn server as a task on the console's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def log_path(self) -> Path:
        return self.settings.data_dir / "logs" / "runtime.log"

    async def start(self) -> None:
        """Bind, start, and return once the runtime answers; raises OSError when the port cannot be bound."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.settings.host, self.settings.port))  # here, not in uvicorn, which would sys.exit
        except OSError:
            sock.close()
            raise
        # The runtime's imports (FastAPI, llama.cpp) take most of a second: off the event loop, so the console's
        # first frame does not wait for them and its progress indicator keeps moving.
        server_module = await asyncio.to_thread(importlib.import_module, "runtime.server")
        server_module.configure_logging(path=self.log_path)  # the terminal belongs to the console
        self.server = server_module.build_server(self.settings)
        self.server.own_signals = False
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                raise RuntimeError(f"the runtime failed to start; see {self.log_path}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.server is None or self.task is None:
            return
        self.server.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 20)
        except TimeoutError:
            self.server.force_exit = True
            await self.task
