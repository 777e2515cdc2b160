"""`/v1`: the OpenAI-compatible inference surface (seed 000's launch-safe list, local side)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from runtime.api.deps import Services, inference_principal, principal, services
from runtime.api.errors import envelope
from runtime.auth.principal import Principal
from runtime.errors import NotFound, TarxError
from runtime.inference.contract import EVIDENCE_CONTRACT, routing_catalogue, usage_report
from runtime.inference.routing import POLICIES, route_view
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.store import evidence as evidence_store

router = APIRouter(prefix="/v1", tags=["inference"])
# Inference needs a key unless the runtime is bound to loopback (see Settings.inference_requires_key).
needs_caller = [Depends(inference_principal)]
T = TypeVar("T")


async def _until_disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message on this connection can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work`, cancelling it (and so the generation behind it) if the client goes away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


def sse(request: Request, chunks: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async for chunk in chunks:
                yield {"data": json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))}
        except TarxError as err:  # after the first byte the status is sent: report in-band, as OpenAI does
            yield {"data": json.dumps(envelope(request.url.path, err))}
            return
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n", ping=15, headers={"Cache-Control": "no-cache",
                                                                    "X-Accel-Buffering": "no"})


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           caller: Annotated[Principal | None, Depends(inference_principal)]) -> Any:
    svc: Services = services(request)
    plan = await svc.router.plan(caller, request.headers)
    if body.stream:
        chunks = await svc.router.stream(plan, body)
        return sse(request, chunks)
    result = await unless_disconnected(request, svc.router.complete(plan, body))
    if result is None:  # nobody is left to answer; 499 is what proxies log for this
        return JSONResponse({"error": {"message": "client disconnected"}}, status_code=499)
    data, route = result
    return JSONResponse(data, headers={"x-tarx-evidence-id": route["evidence_id"]})


@router.post("/embeddings", dependencies=needs_caller)
async def embeddings(body: EmbeddingRequest, request: Request) -> Any:
    return await services(request).chat.embed(body)


def _model_card(svc: Services, spec: Any) -> dict[str, Any]:
    status = svc.engine.model_status(spec)
    return {
        "id": spec.name,
        "object": "model",
        "created": svc.started_at_epoch,
        "owned_by": "tarx",
        "description": spec.description,
        "source": spec.source,
        "state": status["state"],
        "available": status["available"],
    }


@router.get("/models", dependencies=needs_caller)
async def list_models(request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"object": "list", "data": [_model_card(svc, spec) for spec in svc.engine.registry.all()]}


@router.get("/models/{model_id}", dependencies=needs_caller)
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    return _model_card(svc, svc.engine.registry.get(model_id))


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    svc = services(request)
    models = {}
    for spec in svc.engine.registry.all():
        status = svc.engine.model_status(spec)
        models[spec.name] = {key: status[key] for key in ("state", "available", "error", "stats")}
    default = svc.settings.default_model
    d = models.get(default)
    ok = d is not None and d["available"] and d["state"] != "error"
    body = {
        "status": "ok" if ok else "unavailable",
        "default_model": default,
        "models": models,
        "queues": svc.engine.capacity(),
        "version": svc.version,
        "instance_id": svc.instance_id,
    }
    if not ok:
        reason = "is not installed" if d is None or not d["available"] else f"failed to load: {d['error']}"
        body["error"] = f"the default model '{default}' {reason}"
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/capacity", dependencies=needs_caller)
async def capacity(request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"object": "capacity", "live": True, "queue_classes": svc.router.capacity(),
            "policies": {policy: {"execution_plane": plane, "queue_class": "enterprise" if plane == "enterprise"
                                  else cls} for policy, (plane, cls) in POLICIES.items()},
            "headers_on_backpressure": ["Retry-After", "x-tarx-queue-class", "x-tarx-backpressure-state"]}


@router.get("/routes", dependencies=needs_caller)
async def routes(request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"object": "list", "data": routing_catalogue(svc.settings, await svc.router.hosted_configured())}


@router.get("/evidence", dependencies=needs_caller)
async def evidence_contract() -> dict[str, Any]:
    return EVIDENCE_CONTRACT


@router.get("/evidence/{evidence_id}", dependencies=needs_caller)
async def evidence_record(evidence_id: str, request: Request) -> dict[str, Any]:
    rec = await evidence_store.get(services(request).db, evidence_id)
    if rec is None:
        raise NotFound(f"No route evidence '{evidence_id}'.", code="evidence_not_found")
    return {**route_view(rec), "prompt_tokens": rec["prompt_tokens"], "completion_tokens": rec["completion_tokens"],
            "stream": rec["stream"], "project_id": rec["project_id"]}


@router.get("/usage")
async def usage(request: Request, caller: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    svc = services(request)
    return await usage_report(svc.db, svc.settings, svc.router.meter, caller)
