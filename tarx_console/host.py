"""The runtime inside this process: the console's embedded server, and the CLI's one-shot in-process app.

The console talks to the embedded runtime over HTTP like any other client (one code path, local or remote);
this module only owns the server task, and, for CLI commands when no local runtime answers, an app served
straight on the database through the client's ASGI transport. No textual imports here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.config import Settings
from tarx_console.client.api import TarxClient
from tarx_console.client.connect import PortState, Target, owner_key, probe

if TYPE_CHECKING:
    from runtime.server import Server


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

    @property
    def stopped(self) -> bool:
        """It was started and its server task has ended (crashed or stopped)."""
        return self.task is not None and self.task.done()

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


@contextlib.asynccontextmanager
async def open_client(target: Target, settings: Settings | None = None) -> AsyncIterator[TarxClient]:
    """A client for one CLI command. Local means this machine's data dir: over HTTP when its runtime is running,
    otherwise in-process on its database (the same app, no port bound), so scripts work either way."""
    if target.url is not None:
        async with TarxClient.over_http(target.url, target.key) as client:
            yield client
        return
    settings = settings or Settings()
    if await probe(settings.host, settings.port) is PortState.TARX:
        async with TarxClient.over_http(settings.base_url, target.key or owner_key(settings)) as client:
            yield client
        return
    from runtime.app import create_app  # lazily: FastAPI and llama.cpp only when no runtime is running

    app = create_app(settings.model_copy(update={"log_requests": False}))
    async with app.router.lifespan_context(app):
        async with TarxClient.over_asgi(app, target.key or owner_key(settings)) as client:
            yield client
