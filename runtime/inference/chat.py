"""The chat seam: how anything in this runtime (the OpenAI API, agents, RAG, workflows) runs inference.

Call it in-process, never over HTTP:

    plan = await chat.plan(principal, headers)        # which plane, tier, limits; raises on a bad policy
    result = await chat.complete(request, plan)       # -> ChatResult: text, tool_calls, usage, route, joules
    async for event in await chat.stream(request, plan):   # TextDelta | ToolCalls | ... | Final(ChatResult)
        ...
    results = await chat.choices(request, plan)       # -> one ChatResult per choice, for `n` > 1

A request with `n` > 1 runs one generation per choice (each its own log row and route evidence, choice `i` seeded
`seed + i`): the first is started alone, and the others once its prompt is evaluated, so their prompts reuse its KV
cells (the runner's prefix reuse) and all of them decode side by side. An error in any choice fails the call and
stops the others; so does cancelling it.

`plan` may be omitted: the call then runs on the local plane, in the interactive queue, attributed to nobody.
Every finished call has written its inference-log row and its route evidence (one transaction) before its
result is returned or its `Final` event is yielded. Errors are `runtime.errors.TarxError`s (unknown model, full
queue, prompt too long, ...), raised before the first event of a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from runtime.auth.principal import Principal
from runtime.auth.secretbox import SecretBox
from runtime.config import Settings
from runtime.errors import InvalidRequest, TarxError
from runtime.inference.engine import InferenceEngine
from runtime.inference.local import LocalChat
from runtime.inference.planes import Plan, PlaneRouter, evidence_of
from runtime.inference.results import ChatEvent, ChatResult, Embeddings, RouteEvidence
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.inference.work import ChatJob, QueueClass
from runtime.store import Database, evidence, inference_log
from runtime.store.inference_log import InferenceRecord


@dataclass(frozen=True)
class Health:
    ok: bool
    default_model: str
    models: dict[str, dict[str, Any]]
    queues: dict[str, dict[str, Any]]
    error: str | None


class ChatService:
    def __init__(self, settings: Settings, engine: InferenceEngine, db: Database, box: SecretBox) -> None:
        self.settings = settings
        self.engine = engine
        self.db = db
        self.local = LocalChat(engine)
        self.planes = PlaneRouter(settings, db, self.local, box)

    async def close(self) -> None:
        await self.planes.close()

    async def plan(self, principal: Principal | None, headers: Mapping[str, str] | None = None) -> Plan:
        """Plan a call from the caller and the seed 000 route headers (`x-tarx-execution-policy`, ...)."""
        return await self.planes.plan(principal, headers or {})

    async def complete(self, request: ChatCompletionRequest, plan: Plan | None = None) -> ChatResult:
        """Run one chat call to its end (one choice: `choices` runs a request with `n` > 1)."""
        if request.n > 1:
            raise InvalidRequest("a request with n > 1 has several results: run it with ChatService.choices",
                                 extra={"param": "n"})
        return await self.planes.complete(plan or await self.plan(None), request)

    async def choices(self, request: ChatCompletionRequest, plan: Plan | None = None) -> list[ChatResult]:
        """Run a call with `request.n` choices to its end; one result per choice, in index order."""
        plan = plan or await self.plan(None)
        if request.n == 1:
            return [await self.planes.complete(plan, request)]
        calls = _split(request, plan)
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the rest; so does cancelling the call
                first = group.create_task(self.planes.complete(calls[0][1], calls[0][0]))
                await self._progress(calls[0][0], calls[0][1], first, evaluated=True)
                rest = []
                for req, sibling in calls[1:]:
                    rest.append(group.create_task(self.planes.complete(sibling, req)))
                    # One at a time, as a stream starts them: the queue's wait estimate counts a job still waiting
                    # to be handed to the runner as work ahead of the next, even with slots free.
                    await self._progress(req, sibling, rest[-1], evaluated=False)
        except ExceptionGroup as failed:
            raise _first_error(failed) from None
        return [first.result(), *(task.result() for task in rest)]

    async def stream(self, request: ChatCompletionRequest, plan: Plan | None = None) -> AsyncIterator[ChatEvent]:
        """Start one chat call and return its events; the last is `Final` (with `n` > 1, every choice's events,
        each naming its choice, and a `Final` per choice). Closing the iterator early stops every generation."""
        plan = plan or await self.plan(None)
        if request.n == 1:
            return await self.planes.stream(plan, request)
        calls = _split(request, plan)
        first = await self.planes.stream(calls[0][1], calls[0][0])  # a refusal is still an error status
        return self._interleaved(calls, first)

    async def _interleaved(self, calls: list[tuple[ChatCompletionRequest, Plan]], first: AsyncIterator[ChatEvent]
                           ) -> AsyncIterator[ChatEvent]:
        """Every choice's events as they come, each marked with its choice; the first error ends them all."""
        queue: asyncio.Queue[tuple[int, ChatEvent | Exception | None]] = asyncio.Queue()
        pumps: list[asyncio.Task[None]] = []

        async def pump(index: int, events: AsyncIterator[ChatEvent]) -> None:
            try:
                async with aclosing(events):
                    async for event in events:
                        queue.put_nowait((index, event))
            except Exception as exc:
                queue.put_nowait((index, exc))
            else:
                queue.put_nowait((index, None))

        async def start_rest() -> None:
            await self._progress(calls[0][0], calls[0][1], pumps[0], evaluated=True)
            for index, (req, plan) in enumerate(calls[1:], start=1):
                try:
                    events = await self.planes.stream(plan, req)  # returns once the runner has taken it
                except Exception as exc:
                    queue.put_nowait((index, exc))
                    return
                pumps.append(asyncio.create_task(pump(index, events)))

        pumps.append(asyncio.create_task(pump(0, first)))
        starter = asyncio.create_task(start_rest())
        running = len(calls)
        try:
            while running:
                index, item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield _marked(item, index)
        finally:  # the client left, or a choice failed: stop every generation still running
            for task in (starter, *pumps):
                task.cancel()
            await asyncio.gather(starter, *pumps, return_exceptions=True)

    async def _progress(self, request: ChatCompletionRequest, plan: Plan, call: asyncio.Task[Any], *,
                        evaluated: bool) -> None:
        """Wait until the call's job is in the model's runner (`evaluated`: until its prompt is in its slot's KV
        cells, i.e. its first token is out), or the call ended. The first choice's prompt is awaited so the other
        choices' prompts reuse those cells through prefix reuse instead of being evaluated beside it. Returns at
        once when an upstream runs the call: it caches prompts its own way."""
        if plan.upstream is not None:
            return
        try:
            spec = self.engine.registry.get(request.model)
        except TarxError:
            return  # the call fails with the same error
        if spec.embedding_only:
            return
        worker = self.engine.worker(spec)
        while not call.done():
            job = next((j for j in worker.running() if j.id == plan.call_id), None)
            if isinstance(job, ChatJob) and (job.generated > 0 or not evaluated):
                return
            await asyncio.sleep(PROMPT_POLL_SECONDS)

    def local_chat_models(self) -> list[str]:
        """The names a local chat call may use: the chat models this runtime serves and the aliases of them."""
        names = [spec.name for spec in self.engine.registry.all() if not spec.embedding_only]
        return sorted([*names, *(alias for alias, target in self.settings.model_aliases.items() if target in names)])

    def default_embedding_model(self) -> str:
        """tarx-embed (settings `embedding_model`) when it is installed, else the default chat model."""
        names = {spec.name for spec in self.engine.registry.all()}
        return self.settings.embedding_model if self.settings.embedding_model in names else self.settings.default_model

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Vectors for `request.inputs` (normalised), logged like any inference call."""
        if request.model is None:
            request = request.model_copy(update={"model": self.default_embedding_model()})
        result, cpu_seconds, work_id = await self.local.embed(request)
        if request.dimensions is not None:
            width = len(result.vectors[0]) if result.vectors else 0
            if request.dimensions > width:
                raise InvalidRequest(f"dimensions must be at most {width} for model '{request.model}'")
            result = Embeddings(result.model, [_renormalise(v[: request.dimensions]) for v in result.vectors],
                                result.prompt_tokens)
        await inference_log.record(self.db, InferenceRecord(
            id=work_id, kind="embedding", model=request.model, queue_class=QueueClass.interactive.value,
            stream=False, prompt_tokens=result.prompt_tokens, completion_tokens=0, finish_reason=None,
            queue_ms=None, ttft_ms=None, total_ms=None, cpu_seconds=cpu_seconds))
        self.engine.metrics.tokens(request.model, result.prompt_tokens)
        return result

    async def evidence(self, evidence_id: str) -> tuple[RouteEvidence, dict[str, object]] | None:
        """A stored route evidence record and its accounting fields (tokens, stream, project)."""
        rec = await evidence.get(self.db, evidence_id)
        if rec is None:
            return None
        return evidence_of(rec), {k: rec[k] for k in ("prompt_tokens", "completion_tokens", "stream", "project_id")}

    async def hosted_configured(self) -> bool:
        return await self.planes.hosted_configured()

    async def set_hosted(self, url: str, key: str | None) -> None:
        """Point the supercomputer plane at a hosted upstream (owner-only; checked by the caller)."""
        await self.planes.set_hosted(url, key)

    def capacity(self) -> dict[str, dict[str, object]]:
        return self.planes.capacity()

    def health(self) -> Health:
        """Whether the default model can serve, each model's state and statistics, and the queues."""
        models = {}
        for spec in self.engine.registry.all():
            status = self.engine.model_status(spec)
            models[spec.name] = {key: status[key] for key in ("state", "available", "error", "stats")}
        default = self.settings.default_model
        d = models.get(default)
        ok = d is not None and d["available"] and d["state"] != "error"
        error = None
        if not ok:
            reason = "is not installed" if d is None or not d["available"] else f"failed to load: {d['error']}"
            error = f"the default model '{default}' {reason}"
        return Health(ok, default, models, self.engine.capacity(), error)


PROMPT_POLL_SECONDS = 0.005  # how often a choice's progress is looked at while the next one waits for it


def _split(request: ChatCompletionRequest, plan: Plan) -> list[tuple[ChatCompletionRequest, Plan]]:
    """One call per choice. Choice 0 is the planned call itself (its id names the completion, its evidence id the
    response header); the others are its siblings with their own evidence record and log row."""
    return [(request.choice(0), plan)] + [
        (request.choice(i), replace(plan, evidence_id=evidence.new_evidence_id(), call_id=f"{plan.call_id}-{i}"))
        for i in range(1, request.n)]


def _marked(event: ChatEvent, index: int) -> ChatEvent:
    return replace(event, index=index)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first error of a failed group of choices (one choice's error fails the whole call, as at OpenAI)."""
    error = group.exceptions[0]
    return _first_error(error) if isinstance(error, BaseExceptionGroup) else error


def _renormalise(vec: list[float]) -> list[float]:
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]
