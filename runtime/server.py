"""Run the runtime in the foreground with uvicorn; SIGINT/SIGTERM stop it cleanly (streams ended, DB closed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from runtime.app import create_app
from runtime.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO, path: Path | None = None) -> None:
    """Log to stderr, or to `path` when a console owns the terminal."""
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per node call would drown the log


class Server(uvicorn.Server):
    """uvicorn, plus: a stop signal ends in-flight generations at once (streams close with a final event)."""

    _loop: asyncio.AbstractEventLoop | None = None
    # False when embedded in the console: the console owns the process's signals and stops the server itself.
    own_signals: bool = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.own_signals:
            yield
            return
        with super().capture_signals():
            yield

    def _services(self) -> Any:
        return getattr(getattr(self.config.app, "state", None), "services", None)

    def stop(self) -> None:
        """Stop from the server's own loop, as a signal would."""
        self.should_exit = True
        if (services := self._services()) is not None:
            services.begin_shutdown()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down; a requested stop is a clean exit (status 0).
        self._captured_signals.clear()
        services = self._services()
        if services is not None and self._loop is not None:
            # Signal handlers must not take the workers' locks; hand the work to the event loop.
            self._loop.call_soon_threadsafe(services.begin_shutdown)


def build_server(settings: Settings) -> Server:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our handler on the root logger
        access_log=False,  # runtime.api.middleware.AccessLog writes one line per request instead
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    return Server(config)


def serve(settings: Settings) -> int:
    configure_logging()
    server = build_server(settings)
    server.run()
    # uvicorn returns after a clean stop; a failed start (port taken, lifespan error) leaves started False.
    return 0 if server.started else 1
