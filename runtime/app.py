"""create_app(settings) -> the ASGI app. The lifespan opens the store and starts and stops the engines."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime import __version__
from runtime.api import compute, compute_v0, errors, openai_v1, platform_v1, tarx
from runtime.api.deps import Services
from runtime.api.middleware import AccessLog, BodyLimit, ComputeVersion, RateLimit
from runtime.auth.accounts import Accounts
from runtime.auth.bootstrap import bootstrap
from runtime.auth.principal import Authenticator
from runtime.auth.ratelimit import RateLimiter, Window
from runtime.auth.secretbox import SecretBox
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.db_path)
        await db.open()
        engine = InferenceEngine(settings)
        instance_id = await meta.ensure_instance(db)
        box = SecretBox(settings.key_file)
        auth = Authenticator(db, box, settings.session_seconds)
        await bootstrap(db, settings.data_dir)
        app.state.services = Services(
            settings=settings, db=db, engine=engine, chat=ChatService(engine, db), auth=auth,
            accounts=Accounts(db, box, auth), instance_id=instance_id, version=__version__,
            started_at_epoch=int(time.time()), started_at=utcnow(),
        )
        log.info("runtime %s ready: data dir %s, models %s", instance_id, settings.data_dir,
                 ", ".join(s.name for s in engine.registry.all()) or "none")
        try:
            yield
        finally:
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
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.log_requests:
        app.add_middleware(AccessLog)
    return app
