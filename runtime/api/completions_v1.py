"""`POST /v1/completions`: OpenAI's legacy text completion (litellm's `text_completion` and many tools call it).

The prompt is evaluated as written (runtime/inference/completions.py); this module only turns the chat seam's
typed results into `text_completion` JSON and its stream chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runtime.api.deps import InferenceCaller, Svc
from runtime.api.openai_v1 import FINGERPRINT, sse, unless_disconnected
from runtime.inference import completions
from runtime.inference.completions import Completed, CompletionEvent, CompletionRequest, Piece
from runtime.inference.results import ChatResult

router = APIRouter(prefix="/v1", tags=["inference"])


def _usage(results: list[ChatResult], n: int) -> dict[str, int]:
    """`results` in index order; a prompt's `n` choices share it, so each prompt is counted once."""
    prompt = sum(r.usage.prompt_tokens for r in results[::n])
    out = sum(r.usage.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


def legacy_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """Chat-style logprobs entries in the legacy completions shape (`tokens`, `token_logprobs`, `top_logprobs`,
    `text_offset`: where each token starts in the choice's text, counted from `offset`)."""
    if entries is None:
        return None
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []} for e in entries],
            "text_offset": offsets}


def completion_json(body: CompletionRequest, completion_id: str, results: list[ChatResult]) -> dict[str, Any]:
    return {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": body.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": i, "text": r.text, "finish_reason": r.finish_reason,
                         "logprobs": legacy_logprobs(r.logprobs) if body.logprobs is not None else None}
                        for i, r in enumerate(results)],
            "usage": _usage(results, body.n), "tarx_route": results[0].route.as_dict(),
            **({"tarx_routes": [r.route.as_dict() for r in results]} if len(results) > 1 else {})}


async def chunks_json(body: CompletionRequest, completion_id: str, events: AsyncIterator[CompletionEvent]
                      ) -> AsyncIterator[dict[str, Any]]:
    """`text_completion` chunks, one choice each; the one that ends a choice carries its finish_reason and route
    evidence, and `stream_options.include_usage` adds a last chunk with no choices and the usage."""
    created = int(time.time())
    finished: dict[int, ChatResult] = {}
    offsets: dict[int, int] = {}  # text emitted so far per choice, for text_offset

    def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        return {"id": completion_id, "object": "text_completion", "created": created, "model": body.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]}

    async with aclosing(events):  # a client that went away stops the generation
        async for event in events:
            if isinstance(event, Piece):
                piece = chunk(event.index, event.text)
                if body.logprobs is not None:
                    piece["choices"][0]["logprobs"] = legacy_logprobs(event.logprobs or [], offsets.get(event.index, 0))
                offsets[event.index] = offsets.get(event.index, 0) + len(event.text)
                yield piece
            elif isinstance(event, Completed):
                finished[event.index] = event.result
                last = chunk(event.index, "", event.result.finish_reason)
                last["tarx_route"] = event.result.route.as_dict()
                yield last
    if body.stream_options and body.stream_options.include_usage:
        usage = chunk(0, "")
        usage["choices"], usage["usage"] = [], _usage([finished[i] for i in sorted(finished)], body.n)
        yield usage


@router.post("/completions")
async def create_completion(body: CompletionRequest, request: Request, svc: Svc, caller: InferenceCaller) -> Any:
    if body.stream:
        completion_id, evidence_id, events = await completions.stream(svc.chat, body, caller, request.headers)
        return sse(request, chunks_json(body, completion_id, events), {"x-tarx-evidence-id": evidence_id})
    done = await unless_disconnected(request, completions.complete(svc.chat, body, caller, request.headers))
    if done is None:  # nobody is left to answer; 499 is what proxies log for this
        return JSONResponse({"error": {"message": "client disconnected"}}, status_code=499)
    completion_id, results = done
    return JSONResponse(completion_json(body, completion_id, results),
                        headers={"x-tarx-evidence-id": results[0].route.evidence_id})
