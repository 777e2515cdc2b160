"""Chat completions and embeddings in OpenAI's shapes, on top of the engine; every call is logged to the store."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from runtime import __version__
from runtime.errors import InvalidRequest
from runtime.inference import constraints
from runtime.inference.engine import InferenceEngine
from runtime.inference.jobs import ChatJob, Done, EmbedJob, Failed, QueueClass, Token, Vectors
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.store import Database, inference_log
from runtime.store.inference_log import InferenceRecord

FINGERPRINT = f"tarx-{__version__}"


@dataclass
class Limits:
    """Route limits applied while generating (from x-tarx-max-latency-ms and x-tarx-max-joules)."""

    deadline: float | None = None
    max_cpu_seconds: float | None = None


@dataclass
class Outcome:
    """What a finished chat call produced, before it is shaped into a response."""

    id: str
    text: str
    tool_calls: list[dict[str, Any]]
    done: Done

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else self.done.finish_reason

    def usage(self) -> dict[str, int]:
        p, c = self.done.prompt_tokens, self.done.completion_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class ChatService:
    def __init__(self, engine: InferenceEngine, db: Database) -> None:
        self.engine = engine
        self.db = db

    def _job(self, req: ChatCompletionRequest, queue_class: QueueClass, limits: Limits | None) -> ChatJob:
        return ChatJob(
            deadline=limits.deadline if limits else None,
            max_cpu_seconds=limits.max_cpu_seconds if limits else None,
            id=self.engine.new_job_id(),
            queue_class=queue_class,
            loop=asyncio.get_running_loop(),
            messages=[m.model_dump(exclude_none=True) for m in req.messages],
            constraint=constraints.for_request(req),
            max_tokens=req.output_limit,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stops=req.stop_list,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
        )

    async def _log(self, kind: str, model: str, job_id: str, queue_class: QueueClass, stream: bool,
                   done: Done | None, prompt_tokens: int = 0, cpu: float | None = None) -> None:
        await inference_log.record(self.db, InferenceRecord(
            id=job_id, kind=kind, model=model, queue_class=queue_class.value, stream=stream,
            prompt_tokens=done.prompt_tokens if done else prompt_tokens,
            completion_tokens=done.completion_tokens if done else 0,
            finish_reason=done.finish_reason if done else None,
            queue_ms=done.queue_ms if done else None, ttft_ms=done.ttft_ms if done else None,
            total_ms=done.total_ms if done else None, cpu_seconds=done.cpu_seconds if done else cpu,
        ))

    async def complete(self, req: ChatCompletionRequest, queue_class: QueueClass, limits: Limits | None = None,
                       on_done: Callable[[Done], None] | None = None) -> dict[str, Any]:
        spec = self.engine.registry.get(req.model)
        job = self._job(req, queue_class, limits)
        done: Done | None = None
        # aclosing: a cancelled caller (client gone) closes the run at once, which cancels the job.
        async with aclosing(self.engine.run(spec, "chat", job)) as events:
            async for event in events:
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Done):
                    done = event
        assert done is not None
        if on_done is not None:
            on_done(done)
        calls = constraints.parse_calls(done.text) if job.constraint.tools else []
        out = Outcome(job.id, done.text, calls, done)
        await self._log("chat", req.model, job.id, queue_class, False, done)
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else out.text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": out.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": out.finish_reason}],
            "usage": out.usage(),
        }

    async def stream(self, req: ChatCompletionRequest, queue_class: QueueClass, limits: Limits | None = None,
                     on_done: Callable[[Done], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """`chat.completion.chunk` objects. Raises before the first chunk if the request cannot start."""
        spec = self.engine.registry.get(req.model)
        job = self._job(req, queue_class, limits)
        events = self.engine.run(spec, "chat", job)
        first = await anext(events)  # surface queue-full, load and context errors before streaming starts
        if isinstance(first, Failed):
            await events.aclose()
            raise first.error
        return self._chunks(req, job, events, queue_class, on_done)

    async def _chunks(self, req: ChatCompletionRequest, job: ChatJob, events: AsyncIterator[Any],
                      queue_class: QueueClass, on_done: Callable[[Done], None] | None
                      ) -> AsyncIterator[dict[str, Any]]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": job.id, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        # With tools offered, output that may be a call is held back until it can be parsed whole.
        tool_mode = job.constraint.tool_mode if job.constraint.tools else "none"
        holding = tool_mode in ("required", "named")
        decided = tool_mode == "none" or holding
        held: list[str] = []
        done: Done | None = None
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for event in events:
                if isinstance(event, Token):
                    if not decided:
                        held.append(event.text)
                        joined = "".join(held)
                        if not joined.strip():
                            continue
                        decided, holding = True, constraints.looks_like_call(joined)
                        if not holding:
                            held = []
                            yield chunk({"content": joined})
                        continue
                    if holding:
                        held.append(event.text)
                    else:
                        yield chunk({"content": event.text})
                elif isinstance(event, Done):
                    done = event
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            await events.aclose()  # a client that went away stops generation here
            if done is not None:
                await self._log("chat", req.model, job.id, queue_class, True, done)
        assert done is not None
        if on_done is not None:
            on_done(done)
        text = "".join(held)
        calls = constraints.parse_calls(text) if holding else []
        if calls:
            yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        elif text:
            yield chunk({"content": text})
        out = Outcome(job.id, text, calls, done)
        yield chunk({}, out.finish_reason)
        if req.stream_options and req.stream_options.include_usage:
            final = chunk({})
            final["choices"] = []
            final["usage"] = out.usage()
            yield final

    async def embed(self, req: EmbeddingRequest) -> dict[str, Any]:
        spec = self.engine.registry.get(req.model)
        job = EmbedJob(id=self.engine.new_job_id("emb"), queue_class=QueueClass.interactive,
                       loop=asyncio.get_running_loop(), inputs=req.inputs)
        result: Vectors | None = None
        async with aclosing(self.engine.run(spec, "embedding", job)) as events:
            async for event in events:
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Vectors):
                    result = event
        assert result is not None
        await self._log("embedding", req.model, job.id, job.queue_class, False, None,
                        prompt_tokens=result.prompt_tokens, cpu=result.cpu_seconds)
        data = []
        for i, vec in enumerate(result.vectors):
            if req.dimensions is not None:
                if req.dimensions > len(vec):
                    raise InvalidRequest(f"dimensions must be at most {len(vec)} for model '{req.model}'")
                vec = _renormalise(vec[: req.dimensions])
            value: Any = vec
            if req.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


def _renormalise(vec: list[float]) -> list[float]:
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]

