"""Local generation on this runtime's engine: one chat request in, typed events out.

Used by the plane router (runtime/inference/planes.py) for the local plane and for every fallback; nothing here
logs or routes. With tools offered, output that may be a call is held back until it can be parsed whole, so a
caller never sees half a call as text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidRequest
from runtime.inference import constraints, turns
from runtime.inference.engine import InferenceEngine
from runtime.inference.results import Embeddings, Generated, TextDelta, ToolCalls
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.inference.work import ChatJob, Done, EmbedJob, Failed, QueueClass, Token, Vectors
from runtime.inference.worker import WorkerKind


@dataclass
class Limits:
    """Route limits applied while generating (from x-tarx-max-latency-ms and x-tarx-max-joules)."""

    deadline: float | None = None  # perf_counter time
    max_cpu_seconds: float | None = None


LocalEvent = TextDelta | ToolCalls | Generated
OnAbandoned = Callable[[Generated], Awaitable[None]]
SETTLE_SECONDS = 30.0  # how long a cancelled generation may take to report what it did


class LocalChat:
    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self._settling: set[asyncio.Task[None]] = set()

    def _job(self, req: ChatCompletionRequest, queue_class: QueueClass, limits: Limits, call_id: str | None
             ) -> ChatJob:
        constraint = constraints.for_request(req)
        return ChatJob(
            deadline=limits.deadline,
            max_cpu_seconds=limits.max_cpu_seconds,
            id=call_id or self.engine.new_job_id(),
            queue_class=queue_class,
            loop=asyncio.get_running_loop(),
            turns=turns.for_prompt([m.model_dump(exclude_none=True) for m in req.messages], constraint),
            constraint=constraint,
            max_tokens=req.output_limit,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stops=req.stop_list,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            top_k=req.top_k,
            min_p=req.min_p,
            repeat_penalty=req.repeat_penalty,
            logit_bias=req.token_bias,
            logprobs=req.logprobs,
            top_logprobs=req.top_logprobs or 0,
        )

    async def start(self, req: ChatCompletionRequest, queue_class: QueueClass, limits: Limits,
                    call_id: str | None = None, on_abandoned: OnAbandoned | None = None
                    ) -> AsyncIterator[LocalEvent]:
        """Queue the request and return its events, ending with one `Generated`.

        Raises before returning when the request cannot start (unknown model, queue full, prompt too long), so
        a streaming caller can still answer with an error status. Closing the iterator early cancels the
        generation between two tokens; `on_abandoned` then receives what was generated until it stopped, so
        the work is still accounted for.
        """
        spec = self.engine.registry.get(req.model)
        if spec.embedding_only:
            raise InvalidRequest(f"Model '{req.model}' is an embedding model: use it with /v1/embeddings.",
                                 code="model_not_supported")
        job = self._job(req, queue_class, limits, call_id)
        events = self.engine.run(spec, "chat", job)
        first = await anext(events)
        if isinstance(first, Failed):
            await events.aclose()
            raise first.error
        return self._events(job, events, on_abandoned)

    async def _events(self, job: ChatJob, events: AsyncIterator[object], on_abandoned: OnAbandoned | None
                      ) -> AsyncIterator[LocalEvent]:
        tool_mode = job.constraint.tool_mode if job.constraint.tools else "none"
        holding = tool_mode in ("required", "named")
        decided = tool_mode == "none" or holding
        held: list[str] = []
        done: Done | None = None
        failed = False
        probs: list[dict[str, Any]] = []  # logprobs entries not yet sent (their tokens' text is held back)

        def delta(text: str) -> TextDelta:
            nonlocal probs
            out, probs = probs, []
            return TextDelta(text, out or None) if job.logprobs else TextDelta(text)

        try:
            async with aclosing(events):  # a consumer that leaves early stops the generation here
                async for event in events:
                    if isinstance(event, Token):
                        if event.logprob is not None:
                            probs.append(event.logprob)
                        if not decided:
                            held.append(event.text)
                            joined = "".join(held)
                            if not joined.strip():
                                continue
                            decided, holding = True, constraints.looks_like_call(joined)
                            if not holding:
                                held = []
                                yield delta(joined)
                            continue
                        if holding:
                            held.append(event.text)
                        elif event.text:
                            yield delta(event.text)
                    elif isinstance(event, Done):
                        done = event
                    elif isinstance(event, Failed):
                        failed = True
                        raise event.error
        finally:
            if done is None and not failed and on_abandoned is not None:
                # Synchronous on purpose: this runs inside a cancelled request, where an await would be cut.
                task = asyncio.create_task(self._settle(job, on_abandoned), name=f"tarx-settle-{job.id}")
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
        assert done is not None
        text = "".join(held)
        # Held output never leaks call markup: a call cut by max_tokens comes back as far as it was written.
        content, calls, finish = (constraints.settle(text, done.finish_reason) if holding
                                  else (text, [], done.finish_reason))
        if calls:
            yield ToolCalls(calls)
        elif content or probs:
            yield delta(content)
        yield Generated(
            id=job.id, text=content if holding else done.text, tool_calls=calls,
            finish_reason=finish, prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens, cpu_seconds=done.cpu_seconds, queue_ms=done.queue_ms,
            ttft_ms=done.ttft_ms, total_ms=done.total_ms, limited_by=done.limited_by, logprobs=done.logprobs)

    @staticmethod
    async def _settle(job: ChatJob, on_abandoned: OnAbandoned) -> None:
        """Wait for the cancelled job's last report and hand over what it generated."""
        try:
            while True:
                event = await asyncio.wait_for(job.events.get(), SETTLE_SECONDS)
                if isinstance(event, Done):
                    break
                if isinstance(event, Failed):
                    return
        except TimeoutError:
            return
        await on_abandoned(Generated(
            id=job.id, text=event.text, tool_calls=[], finish_reason="cancelled", prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens, cpu_seconds=event.cpu_seconds, queue_ms=event.queue_ms,
            ttft_ms=event.ttft_ms, total_ms=event.total_ms, limited_by=event.limited_by))

    async def embed(self, req: EmbeddingRequest) -> tuple[Embeddings, float, str]:
        """Vectors for `req.inputs`, with the CPU seconds spent and the work id (for the log)."""
        spec = self.engine.registry.get(req.model)
        job = EmbedJob(id=self.engine.new_job_id("emb"), queue_class=QueueClass.interactive,
                       loop=asyncio.get_running_loop(), inputs=req.inputs)
        result: Vectors | None = None
        # A chat model embeds in its chat runner (one copy of the weights); a sentence-embedding model has its own.
        kind: WorkerKind = "embedding" if spec.embedding_only else "chat"
        async with aclosing(self.engine.run(spec, kind, job)) as events:
            async for event in events:
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Vectors):
                    result = event
        assert result is not None
        return Embeddings(req.model, result.vectors, result.prompt_tokens), result.cpu_seconds, job.id
