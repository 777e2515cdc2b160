"""The chat seam: how anything in this runtime (the OpenAI API, agents, RAG, workflows) runs inference.

Call it in-process, never over HTTP:

    plan = await chat.plan(principal, headers)        # which plane, tier, limits; raises on a bad policy
    result = await chat.complete(request, plan)       # -> ChatResult: text, tool_calls, usage, route, joules
    async for event in await chat.stream(request, plan):   # TextDelta | ToolCalls | ... | Final(ChatResult)
        ...

`plan` may be omitted: the call then runs on the local plane, in the interactive queue, attributed to nobody.
Every finished call has written its inference-log row and its route evidence (one transaction) before its
result is returned or its `Final` event is yielded. Errors are `runtime.errors.TarxError`s (unknown model, full
queue, prompt too long, ...), raised before the first event of a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.auth.principal import Principal
from runtime.auth.secretbox import SecretBox
from runtime.config import Settings
from runtime.errors import InvalidRequest
from runtime.inference.engine import InferenceEngine
from runtime.inference.local import LocalChat
from runtime.inference.planes import Plan, PlaneRouter, evidence_of
from runtime.inference.results import ChatEvent, ChatResult, Embeddings, RouteEvidence
from runtime.inference.schemas import ChatCompletionRequest, EmbeddingRequest
from runtime.inference.work import QueueClass
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
        """Run one chat call to its end."""
        return await self.planes.complete(plan or await self.plan(None), request)

    async def stream(self, request: ChatCompletionRequest, plan: Plan | None = None) -> AsyncIterator[ChatEvent]:
        """Start one chat call and return its events; the last is `Final`. Closing the iterator early stops
        the generation."""
        return await self.planes.stream(plan or await self.plan(None), request)

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


def _renormalise(vec: list[float]) -> list[float]:
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]
