"""`/v1`: the OpenAI-compatible inference surface (seed 000's launch-safe list, local side).

The only place where chat results become OpenAI JSON (`chat.completion`, `chat.completion.chunk`, `usage`,
`tarx_route`); everything below speaks the typed seam of runtime/inference/results.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from runtime import __version__
from runtime.api.deps import Caller, InferenceCaller, Svc, inference_principal
from runtime.api.errors import envelope
from runtime.errors import NotFound, TarxError
from runtime.inference.contract import EVIDENCE_CONTRACT, routing_catalogue, usage_report
from runtime.inference.planes import POLICIES
from runtime.inference.registry import ModelSpec
from runtime.inference.results import ChatEvent, ChatResult, Embeddings, Final, TextDelta, ToolCall, ToolCalls
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.services import Services

router = APIRouter(prefix="/v1", tags=["inference"])
# Inference needs a key unless the runtime is bound to loopback (see Settings.inference_requires_key).
needs_caller = [Depends(inference_principal)]
FINGERPRINT = f"tarx-{__version__}"
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


# ---- wire shapes -------------------------------------------------------------------------------------------------

def _tool_calls(calls: list[ToolCall], indexed: bool = False) -> list[dict[str, Any]]:
    return [{**({"index": i} if indexed else {}), "id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for i, c in enumerate(calls)]


def _usage(results: list[ChatResult]) -> dict[str, int]:
    """The choices share one prompt: it is counted once, and every choice's completion tokens are added."""
    prompt = results[0].usage.prompt_tokens
    out = sum(r.usage.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


def _choice(index: int, result: ChatResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if result.tool_calls else result.text,
                               "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = _tool_calls(result.tool_calls)
    return {"index": index, "message": message, "finish_reason": result.finish_reason,
            "logprobs": None if result.logprobs is None else {"content": result.logprobs, "refusal": None}}


def completion_json(results: list[ChatResult]) -> dict[str, Any]:
    """One `chat.completion` with a choice per result; with several choices, `tarx_routes` lists each one's route
    evidence (`tarx_route` is the first's)."""
    first = results[0]
    return {"id": first.id, "object": "chat.completion", "created": first.created, "model": first.model,
            "system_fingerprint": FINGERPRINT, "choices": [_choice(i, r) for i, r in enumerate(results)],
            "usage": _usage(results), "tarx_route": first.route.as_dict(),
            **({"tarx_routes": [r.route.as_dict() for r in results]} if len(results) > 1 else {})}


async def chunks_json(body: ChatCompletionRequest, call_id: str, events: AsyncIterator[ChatEvent]
                      ) -> AsyncIterator[dict[str, Any]]:
    """`chat.completion.chunk`s. Every chunk has one choice (its `index` says which of the `n`), except the usage
    chunk that `stream_options.include_usage` asks for, sent once every choice has finished (OpenAI's rule: clients
    index `choices[0]` on all others); a choice's route evidence rides on the chunk that carries its
    `finish_reason`."""
    created = int(time.time())
    finished: dict[int, ChatResult] = {}

    def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        return {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    async with aclosing(events):  # a client that went away stops the generation
        for index in range(body.n):
            yield chunk({"role": "assistant", "content": ""}, index=index)
        async for event in events:
            if isinstance(event, TextDelta):
                piece = chunk({"content": event.text}, index=event.index)
                if event.logprobs:
                    piece["choices"][0]["logprobs"] = {"content": event.logprobs, "refusal": None}
                yield piece
            elif isinstance(event, ToolCalls):
                yield chunk({"tool_calls": _tool_calls(event.calls, indexed=True)}, index=event.index)
            elif isinstance(event, Final):
                finished[event.index] = event.result
                last = chunk({}, event.result.finish_reason, event.index)
                last["tarx_route"] = event.result.route.as_dict()
                yield last
    if body.stream_options and body.stream_options.include_usage and finished:
        usage = chunk({})
        usage["choices"] = []
        usage["usage"] = _usage([finished[i] for i in sorted(finished)])
        yield usage


def sse(request: Request, chunks: AsyncIterator[dict[str, Any]], headers: dict[str, str]) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield {"data": json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))}
        except TarxError as err:  # after the first byte the status is sent: report in-band, as OpenAI does
            yield {"data": json.dumps(envelope(request.url.path, err))}
            return
        yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n", ping=15, headers={"Cache-Control": "no-cache",
                                                                    "X-Accel-Buffering": "no", **headers})


def embeddings_json(result: Embeddings, encoding_format: str) -> dict[str, Any]:
    data = []
    for i, vec in enumerate(result.vectors):
        value: Any = vec
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": result.model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


# ---- routes ------------------------------------------------------------------------------------------------------

@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, svc: Svc, caller: InferenceCaller) -> Any:
    plan = await svc.chat.plan(caller, request.headers)
    evidence_header = {"x-tarx-evidence-id": plan.evidence_id}
    if body.stream:
        events = await svc.chat.stream(body, plan)
        return sse(request, chunks_json(body, plan.call_id, events), evidence_header)
    results = await unless_disconnected(request, svc.chat.choices(body, plan))
    if results is None:  # nobody is left to answer; 499 is what proxies log for this
        return JSONResponse({"error": {"message": "client disconnected"}}, status_code=499)
    return JSONResponse(completion_json(results), headers=evidence_header)


@router.post("/embeddings", dependencies=needs_caller)
async def embeddings(body: EmbeddingRequest, svc: Svc) -> dict[str, Any]:
    return embeddings_json(await svc.chat.embed(body), body.encoding_format)


def _model_card(svc: Services, spec: ModelSpec) -> dict[str, Any]:
    status = svc.engine.model_status(spec)
    return {"id": spec.name, "object": "model", "created": svc.started_at_epoch, "owned_by": "tarx",
            "description": spec.description, "source": spec.source, "state": status["state"],
            "available": status["available"], "embedding_only": spec.embedding_only}


@router.get("/models", dependencies=needs_caller)
async def list_models(svc: Svc) -> dict[str, Any]:
    specs = {spec.name: spec for spec in svc.engine.registry.all()}
    # Aliases (settings model_aliases) are listed as models of their own, naming what they stand for.
    aliases = [_alias_card(svc, alias, specs[target]) for alias, target in svc.settings.model_aliases.items()
               if target in specs and alias not in specs]
    return {"object": "list", "data": [_model_card(svc, spec) for spec in specs.values()] + aliases}


def _alias_card(svc: Services, alias: str, spec: ModelSpec) -> dict[str, Any]:
    return {**_model_card(svc, spec), "id": alias, "alias_of": spec.name}


@router.get("/models/{model_id}", dependencies=needs_caller)
async def get_model(model_id: str, svc: Svc) -> dict[str, Any]:
    spec = svc.engine.registry.get(model_id)
    return _model_card(svc, spec) if spec.name == model_id else _alias_card(svc, model_id, spec)


@router.get("/health")
async def health(svc: Svc) -> JSONResponse:
    h = svc.chat.health()
    body: dict[str, Any] = {"status": "ok" if h.ok else "unavailable", "default_model": h.default_model,
                            "models": h.models, "queues": h.queues, "version": svc.version,
                            "instance_id": svc.instance_id}
    if h.error:
        body["error"] = h.error
    return JSONResponse(body, status_code=200 if h.ok else 503)


@router.get("/capacity", dependencies=needs_caller)
async def capacity(svc: Svc) -> dict[str, Any]:
    return {"object": "capacity", "live": True, "queue_classes": svc.chat.capacity(), "slots": svc.engine.slots(),
            "policies": {policy: {"execution_plane": plane, "queue_class": "enterprise" if plane == "enterprise"
                                  else cls} for policy, (plane, cls) in POLICIES.items()},
            "headers_on_backpressure": ["Retry-After", "x-tarx-queue-class", "x-tarx-backpressure-state"]}


@router.get("/routes", dependencies=needs_caller)
async def routes(svc: Svc) -> dict[str, Any]:
    return {"object": "list", "data": routing_catalogue(svc.settings, await svc.chat.hosted_configured())}


@router.get("/evidence", dependencies=needs_caller)
async def evidence_contract() -> dict[str, Any]:
    return EVIDENCE_CONTRACT


@router.get("/evidence/{evidence_id}", dependencies=needs_caller)
async def evidence_record(evidence_id: str, svc: Svc) -> dict[str, Any]:
    found = await svc.chat.evidence(evidence_id)
    if found is None:
        raise NotFound(f"No route evidence '{evidence_id}'.", code="evidence_not_found")
    route, accounting = found
    return {**route.as_dict(), **accounting}


@router.get("/usage")
async def usage(svc: Svc, caller: Caller) -> dict[str, Any]:
    return await usage_report(svc.db, svc.settings, svc.chat.planes.meter, caller)
