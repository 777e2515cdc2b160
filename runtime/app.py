"""create_app(settings) -> the ASGI app. The lifespan opens the store and starts and stops the engines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sse_starlette.sse import AppStatus

from runtime import __version__
from runtime.api import compute, compute_v0, errors, openai_v1, platform_v1, tarx
from runtime.api.deps import Services
from runtime.api.middleware import AccessLog, BodyLimit, ComputeVersion, RateLimit
from runtime.auth.accounts import Accounts
from runtime.auth.bootstrap import bootstrap
from runtime.auth.principal import Authenticator
from runtime.auth.ratelimit import RateLimiter, Window
from runtime.auth.secretbox import SecretBox
from runtime.compute.artifacts import ArtifactStore
from runtime.compute.jobs import JobService
from runtime.compute.nodes import NodeService
from runtime.compute.signals import Signals
from runtime.compute.webhooks import WebhookService
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
from runtime.inference.routing import ROUTE_HEADERS, Router
from runtime.node.local import LocalNode
from runtime.store import Database, meta, utcnow

log = logging.getLogger("tarx.runtime")


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
        db = Database(settings.db_path)
        await db.open()
        engine = InferenceEngine(settings)
        instance_id = await meta.ensure_instance(db)
        box = SecretBox(settings.key_file)
        auth = Authenticator(db, box, settings.session_seconds)
        await bootstrap(db, settings.owner_key_file)
        signals = Signals()
        webhooks = WebhookService(db, box, signals, max_attempts=settings.webhook_max_attempts,
                                  rotation_grace_seconds=settings.webhook_rotation_grace_seconds,
                                  base_backoff_seconds=settings.webhook_backoff_seconds)
        jobs = JobService(db, signals, webhooks, lease_grace_seconds=settings.lease_grace_seconds,
                          max_attempts=settings.job_max_attempts)
        chat = ChatService(engine, db)
        router = Router(settings, db, chat, box)
        app.state.services = Services(
            settings=settings, db=db, engine=engine, chat=chat, router=router, auth=auth,
            accounts=Accounts(db, box, auth), jobs=jobs,
            nodes=NodeService(db, heartbeat_seconds=settings.node_heartbeat_seconds,
                              lease_grace_seconds=settings.lease_grace_seconds,
                              poll_wait_seconds=settings.node_poll_wait_seconds, keys_changed=auth.invalidate),
            artifacts=ArtifactStore(db, settings.data_dir / "artifacts", box.jwt_secret, settings.artifact_max_bytes,
                                    settings.artifact_url_seconds),
            webhooks=webhooks, instance_id=instance_id, version=__version__,
            started_at_epoch=int(time.time()), started_at=utcnow(),
        )
        webhooks.start()
        reaper = asyncio.create_task(jobs.run_reaper(min(1.0, settings.lease_grace_seconds / 4)), name="tarx-reaper")
        local_node = LocalNode(app, settings) if settings.local_node else None
        if local_node is not None:
            local_node.start()
        log.info("runtime %s ready: data dir %s, models %s", instance_id, settings.data_dir,
                 ", ".join(s.name for s in engine.registry.all()) or "none")
        try:
            yield
        finally:
            app.state.services.begin_shutdown()
            if local_node is not None:
                await local_node.stop()
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            await webhooks.stop()
            await router.close()
            await engine.stop()
            await db.close()
            log.info("runtime stopped; database closed")

    app = FastAPI(
        title="TARX local runtime",
        version=__version__,
        description="OpenAI-compatible inference over local GGUF models, and the TARX platform and compute APIs.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (openai_v1, tarx, platform_v1, compute, compute_v0):
        app.include_router(module.router)

    @app.get("/health", include_in_schema=False)
    async def health_alias(request: Request) -> JSONResponse:
        return await openai_v1.health(request)

    # add_middleware wraps: the last added runs first. Order, outermost first: access log, body limit, compute
    # version header, rate limits; so the log sees every answer, 413s and 429s included.
    if settings.rate_limits:
        app.add_middleware(RateLimit, limiter=rate_limiter(settings))
    app.add_middleware(ComputeVersion)
    if settings.cors_origins:
        # Browsers may send the documented route headers and nothing else beyond the basics (seed 000).
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["authorization", "content-type", *ROUTE_HEADERS],
                           expose_headers=["x-tarx-evidence-id", "retry-after", "x-tarx-queue-class",
                                           "x-tarx-backpressure-state"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.log_requests:
        app.add_middleware(AccessLog)
    return app
