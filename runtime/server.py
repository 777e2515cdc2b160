"""Run the runtime in the foreground with uvicorn; SIGINT/SIGTERM stop it cleanly (streams ended, DB closed)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from runtime.app import create_app
from runtime.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build_server(settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our handler on the root logger
        access_log=False,  # runtime.api.middleware.AccessLog writes one line per request instead
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    return uvicorn.Server(config)


def serve(settings: Settings) -> int:
    configure_logging()
    server = build_server(settings)
    server.run()
    # uvicorn returns after a clean stop; a failed start (port taken, lifespan error) leaves started False.
    return 0 if server.started else 1
