"""`/v1/responses`: OpenAI's Responses API (what the newest SDKs and agent frameworks default to).

The only place where response records (runtime/inference/responses.py) become Responses JSON: the `response`
object, its output items, and the typed stream events (`response.created` … `response.completed`), each an SSE
event named by its type, numbered by `sequence_number`, with no `[DONE]` (as OpenAI sends them).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from runtime.api.deps import InferenceCaller, Svc
from runtime.api.errors import envelope
from runtime.api.openai_v1 import unless_disconnected
from runtime.errors import TarxError
from runtime.inference.responses import (
    Done,
    Draft,
    OutputCall,
    OutputItem,
    OutputMessage,
    ResponseEvent,
    ResponseRecord,
    ResponsesRequest,
    call_item_id,
)
from runtime.inference.results import TextDelta, ToolCalls, Usage

router = APIRouter(prefix="/v1", tags=["inference"])


# ---- wire shapes -------------------------------------------------------------------------------------------------

def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def item_json(item: OutputItem) -> dict[str, Any]:
    if isinstance(item, OutputCall):
        return {"type": "function_call", "id": item.id, "call_id": item.call_id, "name": item.name,
                "arguments": item.arguments, "status": item.status}
    return {"type": "message", "id": item.id, "status": item.status, "role": "assistant",
            "content": [_text_part(item.text)]}


def _usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def _response(body: ResponsesRequest, response_id: str, created_at: int, status: str) -> dict[str, Any]:
    """The response object's fields that echo the request, in a given state."""
    fmt = body.text.format.model_dump(by_alias=True, exclude_none=True)
    choice = body.tool_choice
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "error": None,
        "incomplete_details": None, "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
        "model": body.model, "output": [], "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "store": body.store, "temperature": body.temperature, "top_p": body.top_p,
        "text": {"format": fmt},
        "tool_choice": choice.model_dump() if choice is not None and not isinstance(choice, str) else choice or "auto",
        "tools": [t.model_dump(exclude_none=True) for t in body.tools or []], "truncation": "disabled",
        "usage": None, "user": body.user, "metadata": body.metadata or {},
    }


def response_json(record: ResponseRecord) -> dict[str, Any]:
    out = _response(record.request, record.id, record.created_at, record.status)
    out["output"] = [item_json(item) for item in record.output]
    out["usage"] = _usage(record.usage)
    if record.incomplete_reason:
        out["incomplete_details"] = {"reason": record.incomplete_reason}
    out["tarx_route"] = record.route.as_dict() if record.route else {"evidence_id": record.evidence_id}
    return out


async def stream_events(request: Request, draft: Draft, events: AsyncIterator[ResponseEvent]
                        ) -> AsyncIterator[dict[str, Any]]:
    """The typed Responses stream for one response: lifecycle events around the output items, each item added,
    filled and done in order; the last event is `response.completed` (or `response.incomplete` when the output
    hit max_output_tokens), carrying the whole response."""
    seq = 0
    index = 0  # the next output item's output_index
    message_open = False
    message_text: list[str] = []

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"event": kind, "data": json.dumps({"type": kind, "sequence_number": seq - 1, **fields},
                                                  ensure_ascii=False, separators=(",", ":"))}

    def where() -> dict[str, Any]:
        return {"item_id": draft.message_id, "output_index": 0, "content_index": 0}

    def open_message() -> list[dict[str, Any]]:
        nonlocal message_open, index
        message_open, index = True, index + 1
        item = {"type": "message", "id": draft.message_id, "status": "in_progress", "role": "assistant",
                "content": []}
        return [event("response.output_item.added", output_index=0, item=item),
                event("response.content_part.added", **where(), part=_text_part(""))]

    def close_message(message: OutputMessage) -> list[dict[str, Any]]:
        nonlocal message_open
        message_open = False
        text = "".join(message_text)
        return [event("response.output_text.done", **where(), text=text, logprobs=[]),
                event("response.content_part.done", **where(), part=_text_part(text)),
                event("response.output_item.done", output_index=0, item=item_json(message))]

    def message_of(status: str) -> OutputMessage:
        return OutputMessage(draft.message_id, "".join(message_text), status)

    created = _response(draft.request, draft.id, draft.created_at, "in_progress")
    yield event("response.created", response=created)
    yield event("response.in_progress", response=created)
    try:
        async with aclosing(events):  # a client that went away stops the generation
            async for item in events:
                if isinstance(item, TextDelta) and item.text:
                    if not message_open:
                        for e in open_message():
                            yield e
                    message_text.append(item.text)
                    yield event("response.output_text.delta", **where(), delta=item.text, logprobs=[])
                elif isinstance(item, ToolCalls):
                    if message_open:
                        for e in close_message(message_of("completed")):
                            yield e
                    for call in item.calls:
                        fc_id = call_item_id(call)
                        added = {"type": "function_call", "id": fc_id, "call_id": call.id, "name": call.name,
                                 "arguments": "", "status": "in_progress"}
                        yield event("response.output_item.added", output_index=index, item=added)
                        yield event("response.function_call_arguments.delta", item_id=fc_id, output_index=index,
                                    delta=call.arguments)
                        yield event("response.function_call_arguments.done", item_id=fc_id, output_index=index,
                                    name=call.name, arguments=call.arguments)
                        done_item = {**added, "arguments": call.arguments, "status": "completed"}
                        yield event("response.output_item.done", output_index=index, item=done_item)
                        index += 1
                elif isinstance(item, Done):
                    record = item.record
                    message = next((o for o in record.output if isinstance(o, OutputMessage)), None)
                    if message is not None:
                        if not message_open and index == 0:
                            for e in open_message():
                                yield e
                        if message_open:
                            for e in close_message(message):
                                yield e
                    final = response_json(record)
                    kind = "response.incomplete" if record.status == "incomplete" else "response.completed"
                    yield event(kind, response=final)
    except TarxError as err:  # after the first byte the status is sent: report in-band, as OpenAI does
        body = envelope(request.url.path, err)["error"]
        yield event("error", code=err.code, message=err.message, param=err.extra.get("param"), error=body)


# ---- routes ------------------------------------------------------------------------------------------------------

@router.post("/responses")
async def create_response(body: ResponsesRequest, request: Request, svc: Svc, caller: InferenceCaller) -> Any:
    if body.stream:
        draft, events = await svc.responses.stream(body, caller, request.headers)
        return EventSourceResponse(stream_events(request, draft, events), sep="\n", ping=15,
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                            "x-tarx-evidence-id": draft.evidence_id})
    record = await unless_disconnected(request, svc.responses.create(body, caller, request.headers))
    if record is None:  # nobody is left to answer; 499 is what proxies log for this
        return JSONResponse({"error": {"message": "client disconnected"}}, status_code=499)
    return JSONResponse(response_json(record), headers={"x-tarx-evidence-id": record.evidence_id or ""})


@router.get("/responses/{response_id}")
async def get_response(response_id: str, svc: Svc, caller: InferenceCaller) -> dict[str, Any]:
    return response_json(await svc.responses.get(response_id, caller))


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, svc: Svc, caller: InferenceCaller) -> dict[str, Any]:
    await svc.responses.delete(response_id, caller)
    return {"id": response_id, "object": "response", "deleted": True}
