"""The inference engine: model workers created on demand, job submission, and live queue figures."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from runtime.config import Settings
from runtime.inference.registry import ModelRegistry, ModelSpec
from runtime.inference.work import Event, Job, QueueClass, Started, Token
from runtime.inference.worker import ModelWorker, WorkerKind
from runtime.metrics import DETACHED, Metrics

log = logging.getLogger("tarx.inference")


class InferenceEngine:
    metrics: Metrics = DETACHED  # the app's metrics (runtime/metrics.py); Services sets it

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings)
        self._workers: dict[tuple[str, WorkerKind], ModelWorker] = {}

    def _record(self, name: str, data: dict[str, Any]) -> None:
        log.info("%s %s", name, " ".join(f"{k}={v}" for k, v in data.items()))

    def worker(self, spec: ModelSpec, kind: WorkerKind = "chat") -> ModelWorker:
        key = (spec.name, kind)
        if key not in self._workers:
            self._workers[key] = ModelWorker(spec, self.settings, kind, self._record)
        return self._workers[key]

    async def run(self, spec: ModelSpec, kind: WorkerKind, job: Job) -> AsyncIterator[Event]:
        """Queue `job` and yield its events until the last one. Leaving early (client gone) cancels the job."""
        worker = self.worker(spec, kind)
        worker.submit(job)
        finished = False
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, Started):
                    self.metrics.queued(spec.name, job.queue_class.value, event.queue_ms)
                yield event
                if not isinstance(event, Started | Token):
                    finished = True
                    return
        finally:
            if not finished:
                worker.cancel(job)

    def new_job_id(self, prefix: str = "chatcmpl") -> str:
        return f"{prefix}-{secrets.token_hex(12)}"

    def capacity(self) -> dict[str, dict[str, Any]]:
        """Live depth and in-flight count per queue class across every model."""
        classes: dict[str, dict[str, Any]] = {
            c.value: {"depth": 0, "in_flight": 0, "limit": self.settings.queue_max} for c in QueueClass
        }
        for w in self._workers.values():
            for cls, n in w.depth().items():
                classes[cls]["depth"] += n
            for job in w.running():
                classes[job.queue_class.value]["in_flight"] += 1
        for figures in classes.values():
            waiting = figures["depth"]
            figures["backpressure_state"] = (
                "saturated" if waiting >= self.settings.queue_max else "elevated" if waiting else "normal"
            )
        return classes

    def slots(self) -> dict[str, dict[str, int]]:
        """Per loaded chat model: the sequences it can decode together, and how many are busy."""
        return {name: {"total": w.slots, "busy": len(w.running())}
                for (name, kind), w in self._workers.items() if kind == "chat"}

    def model_status(self, spec: ModelSpec) -> dict[str, Any]:
        chat = self._workers.get((spec.name, "chat"))
        emb = self._workers.get((spec.name, "embedding"))
        state = chat.state if chat else "unloaded"
        return {
            "state": state,
            "available": spec.available(),
            "error": chat.error if chat else None,
            # A chat model embeds in its chat runner; only a sentence-embedding model has an embedding runner.
            "embedding_state": emb.state if emb else state if not spec.embedding_only else "unloaded",
            "stats": vars(chat.stats) if chat else None,
            "slots": {"total": chat.slots, "busy": len(chat.running())} if chat else None,
        }

    def begin_shutdown(self) -> None:
        """Stop taking work, fail what waits and cut what runs, so open streams end promptly and properly."""
        for w in self._workers.values():
            w.stop()

    async def stop(self) -> None:
        self.begin_shutdown()
        for w in self._workers.values():
            await asyncio.to_thread(w.join, 10)
