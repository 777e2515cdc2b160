"""create_app(settings) -> the ASGI app. The lifespan opens the store and starts and stops the engines."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime import __version__
from runtime.api import errors, openai_v1, tarx
from runtime.api.deps import Services
from runtime.api.middleware import AccessLog, BodyLimit
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
from runtime.store import Database, meta, utcnow

log = logging.getLogger("tarx.runtime")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.db_path)
        await db.open()
        engine = InferenceEngine(settings)
        instance_id = await meta.ensure_instance(db)
        app.state.services = Services(
            settings=settings, db=db, engine=engine, chat=ChatService(engine, db), instance_id=instance_id,
            version=__version__, started_at_epoch=int(time.time()), started_at=utcnow(),
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
    app.include_router(openai_v1.router)
    app.include_router(tarx.router)

    @app.get("/health", include_in_schema=False)
    async def health_alias(request: Request) -> JSONResponse:
        return await openai_v1.health(request)

    # Outermost first: the access log sees the 413s the body limit sends itself.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.log_requests:
        app.add_middleware(AccessLog)
    return app
