"""create_app(settings) -> the ASGI app. The lifespan opens the store and starts and stops the engines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sse_starlette.sse import AppStatus

from runtime import __version__
from runtime.api import (
    completions_v1,
    compute,
    compute_v0,
    errors,
    metrics,
    openai_tools,
    openai_v1,
    openapi,
    platform_v1,
    rag_v1,
    responses_v1,
    tarx,
)
from runtime.api.middleware import AccessLog, BodyLimit, ComputeVersion, HostCheck, RateLimit
from runtime.auth.ratelimit import RateLimiter, Window
from runtime.config import Settings
from runtime.inference.planes import ROUTE_HEADERS
from runtime.node.local import LocalNode
from runtime.services import Services

log = logging.getLogger("tarx.runtime")
LOOPBACK_ORIGIN = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"


def rate_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter({
        "platform": [Window(settings.rate_platform_per_minute, 60),
                     Window(settings.rate_platform_burst, settings.rate_platform_burst_seconds)],
        "compute": [Window(settings.rate_compute_per_minute, 60), Window(settings.rate_compute_per_hour, 3600)],
    })


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Our streams end themselves on shutdown (Services.begin_shutdown), each with a proper last event;
    # sse-starlette's own drain would cut them mid-response instead.
    AppStatus.enable_automatic_graceful_drain = False

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = await Services.open(settings)
        app.state.services = svc
        local_node = LocalNode(app, settings) if settings.local_node else None
        if local_node is not None:
            local_node.start()
        log.info("runtime %s ready: data dir %s, models %s", svc.instance_id, settings.data_dir,
                 ", ".join(s.name for s in svc.engine.registry.all()) or "none")
        try:
            yield
        finally:
            svc.begin_shutdown()
            if local_node is not None:
                await local_node.stop()
            await svc.close()
            log.info("runtime stopped; database closed")

    app = FastAPI(
        title="TARX local runtime",
        version=__version__,
        description="OpenAI-compatible inference over local GGUF models, and the TARX platform and compute APIs.",
        lifespan=lifespan,
    )
    errors.install(app)
    openapi.install(app)
    for module in (openai_v1, completions_v1, responses_v1, tarx, platform_v1, compute, compute_v0, metrics,
                   openai_tools, rag_v1):
        app.include_router(module.router)

    app.add_api_route("/health", openai_v1.health, methods=["GET"], include_in_schema=False)

    # add_middleware wraps: the last added runs first. Order, outermost first: request metrics, access log, host
    # check, body limit, CORS, compute version header, rate limits; so the log and the metrics see every answer,
    # 403s, 413s and 429s included.
    if settings.rate_limits:
        app.add_middleware(RateLimit, limiter=rate_limiter(settings))
    app.add_middleware(ComputeVersion)
    if settings.cors_origins or settings.cors_loopback_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_origin_regex=LOOPBACK_ORIGIN if settings.cors_loopback_origins else None,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"], allow_headers=["*"],
                           expose_headers=["x-tarx-evidence-id", "retry-after", "x-tarx-queue-class",
                                           "x-tarx-backpressure-state", *ROUTE_HEADERS])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts, bind_host=settings.host)
    app.add_middleware(AccessLog, log=settings.log_requests)
    return app
