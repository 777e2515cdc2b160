"""One thread per loaded model instance: a `Llama` object is not thread-safe, so only its thread touches it.

Requests wait in a bounded two-class queue (interactive ahead of deep). Tokens go back to asyncio through each
job's event queue; cancellation is a flag the loop checks between tokens.
"""

from __future__ import annotations

import codecs
import gc
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

import llama_cpp
from llama_cpp import Llama, LlamaGrammar

from runtime.config import Settings
from runtime.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable, QueueFull, TarxError
from runtime.inference import prompts
from runtime.inference.registry import ModelSpec
from runtime.inference.stops import StopMatcher
from runtime.inference.work import ChatJob, Done, EmbedJob, Failed, Job, QueueClass, Started, Token, Vectors

log = logging.getLogger("tarx.inference")

WorkerKind = Literal["chat", "embedding"]
State = Literal["unloaded", "loading", "ready", "error"]


@dataclass
class WorkerStats:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    tokens_generated: int = 0
    loads: int = 0
    unloads: int = 0


class ModelWorker:
    def __init__(
        self,
        spec: ModelSpec,
        settings: Settings,
        kind: WorkerKind = "chat",
        on_event: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.kind = kind
        self.on_event = on_event or (lambda _name, _data: None)
        self.state: State = "unloaded"
        self.error: str | None = None
        self.stats = WorkerStats()
        self.in_flight: Job | None = None
        self.last_used = time.monotonic()
        self._llm: Llama | None = None
        self._pending: dict[QueueClass, deque[Job]] = {c: deque() for c in QueueClass}
        self._cond = threading.Condition()
        self._stopping = False
        self._tokens_per_second = 0.0  # measured decode speed (moving average)
        self._typical_output = 0.0  # measured completion tokens per request (moving average)
        self._thread = threading.Thread(target=self._run, name=f"tarx-{kind}-{spec.name}", daemon=True)
        self._thread.start()

    # ---- called from the event loop -------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise ModelUnavailable("the runtime is shutting down")
            depth = sum(len(q) for q in self._pending.values())
            if depth >= self.settings.queue_max:
                self._refuse(job, f"The queue for model '{self.spec.name}' is full ({depth} waiting); retry "
                                  "shortly.", self.settings.retry_after_seconds)
            wait, limit = self._expected_wait(job), self.settings.queue_max_wait_seconds
            if limit and wait > limit:
                self._refuse(job, f"Model '{self.spec.name}' has about {wait:.0f} s of work queued ahead of this "
                                  f"request (limit {limit:g} s); retry later.",
                             max(self.settings.retry_after_seconds, math.ceil(wait - limit)))
            self._pending[job.queue_class].append(job)
            self._cond.notify()

    def _refuse(self, job: Job, message: str, retry_after: int) -> NoReturn:
        raise QueueFull(message, headers={"Retry-After": str(retry_after), "x-tarx-queue-class": job.queue_class.value,
                                          "x-tarx-backpressure-state": "saturated"},
                        extra={"retry_after_seconds": retry_after})

    def _expected_wait(self, job: Job) -> float:
        """Seconds of measured work ahead of `job`: what runs now and what is queued at or above its class
        (called under the lock). Zero until a generation has been measured."""
        if self._tokens_per_second <= 0:
            return 0.0
        tokens = 0.0
        running = self.in_flight
        if isinstance(running, ChatJob):  # what it may still generate, by its own budget
            tokens += max((running.max_tokens or self.settings.max_output_tokens) - running.generated, 0)
        for cls in QueueClass:
            tokens += sum(self._typical_tokens(j) for j in self._pending[cls] if isinstance(j, ChatJob))
            if cls == job.queue_class:
                break
        return tokens / self._tokens_per_second

    def _typical_tokens(self, job: ChatJob) -> float:
        budget = job.max_tokens or self.settings.max_output_tokens
        return min(budget, self._typical_output) if self._typical_output else budget

    def _measured(self, tokens: int, seconds: float) -> None:
        """Fold one finished generation into the running figures (exponential moving averages)."""
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        self._tokens_per_second = rate if self._tokens_per_second <= 0 else 0.8 * self._tokens_per_second + 0.2 * rate
        self._typical_output = tokens if self._typical_output <= 0 else 0.8 * self._typical_output + 0.2 * tokens

    def cancel(self, job: Job) -> None:
        """Stop a job: dropped from the queue if it has not started, stopped between tokens if it has."""
        job.cancel()
        with self._cond:
            queue = self._pending[job.queue_class]
            if job in queue:
                queue.remove(job)
                self.stats.cancelled += 1
                job.emit(Done("cancelled", 0, 0, _ms_since(job.enqueued_at), None, 0.0, 0.0))

    def depth(self) -> dict[str, int]:
        with self._cond:
            return {c.value: len(q) for c, q in self._pending.items()}

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for queue in self._pending.values():
                while queue:
                    job = queue.popleft()
                    job.emit(Failed(ModelUnavailable("the runtime is shutting down")))
            if self.in_flight is not None:
                self.in_flight.cancel()
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # ---- the worker thread ----------------------------------------------------------------------------------

    def _next_job(self) -> Job | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                for cls in QueueClass:  # enum order: interactive first
                    if self._pending[cls]:
                        job = self._pending[cls].popleft()
                        self.in_flight = job
                        return job
                idle_for = time.monotonic() - self.last_used
                keep_alive = self.settings.keep_alive_seconds
                if self._llm is not None and idle_for >= keep_alive:
                    self._unload()
                    continue
                self._cond.wait(timeout=max(keep_alive - idle_for, 0.05) if self._llm is not None else None)

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                if job.cancelled.is_set():
                    self.stats.cancelled += 1
                    job.emit(Done("cancelled", 0, 0, _ms_since(job.enqueued_at), None, 0.0, 0.0))
                elif isinstance(job, ChatJob):
                    self._generate(job)
                elif isinstance(job, EmbedJob):
                    self._embed(job)
            except TarxError as exc:
                self.stats.failed += 1
                job.emit(Failed(exc))
            except Exception as exc:
                self.stats.failed += 1
                log.exception("inference failed for %s", job.id)
                job.emit(Failed(TarxError(f"inference failed: {type(exc).__name__}", status=500,
                                          type="server_error", code="inference_failed")))
            finally:
                with self._cond:
                    self.in_flight = None
                    self.last_used = time.monotonic()
        self._unload()

    def _load(self) -> Llama:
        if self._llm is not None:
            return self._llm
        self.state, self.error = "loading", None
        self.on_event("model.loading", {"model": self.spec.name, "kind": self.kind})
        started = time.perf_counter()
        try:
            path = self.spec.resolve(self.settings.data_dir)
            kwargs: dict = dict(
                model_path=str(path),
                n_ctx=self.settings.n_ctx,
                n_threads=self.settings.threads,
                n_threads_batch=self.settings.threads,
                n_batch=self.settings.n_batch,
                verbose=False,
            )
            if self.kind == "embedding":
                # Each input is decoded whole, so the batch must hold a full context; mean-pool to one vector.
                kwargs.update(embedding=True, n_batch=self.settings.n_ctx, n_ubatch=self.settings.n_ctx,
                              pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
            self._llm = Llama(**kwargs)
        except Exception as exc:
            self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
            self.on_event("model.error", {"model": self.spec.name, "kind": self.kind, "error": self.error})
            raise ModelUnavailable(f"model '{self.spec.name}' could not be loaded: {self.error}") from exc
        self.state = "ready"
        self.stats.loads += 1
        self.on_event("model.ready", {"model": self.spec.name, "kind": self.kind,
                                      "load_ms": round(_ms_since(started), 1)})
        return self._llm

    def _unload(self) -> None:
        if self._llm is None:
            return
        self._llm.close()
        self._llm = None
        gc.collect()
        self.state = "unloaded"
        self.stats.unloads += 1
        self.on_event("model.unloaded", {"model": self.spec.name, "kind": self.kind})

    def _generate(self, job: ChatJob) -> None:
        llm = self._load()
        cpu0, t0 = time.process_time(), time.perf_counter()
        queue_ms = (t0 - job.enqueued_at) * 1000
        prompt = prompts.render(llm, self.spec.prompt_format, job.messages, job.constraint)
        n_prompt, n_ctx = len(prompt.tokens), llm.n_ctx()
        if n_prompt >= n_ctx:
            raise ContextLengthExceeded(
                f"The prompt is {n_prompt} tokens; this model's context is {n_ctx} tokens."
            )
        budget = min(job.max_tokens or self.settings.max_output_tokens, n_ctx - n_prompt)
        grammar = LlamaGrammar.from_string(job.constraint.grammar, verbose=False) if job.constraint.grammar else None
        llm.set_seed(job.seed if job.seed is not None else random.randrange(2**31))
        if not self.settings.cache_prompt:
            llm.reset()  # evaluate the whole prompt afresh (see Settings.cache_prompt)
        job.emit(Started(queue_ms, n_prompt))

        vocab = llm._model.vocab
        matcher = StopMatcher(job.stops)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        n_out, finish, ttft, limited_by = 0, "length", None, None
        tokens = llm.generate(
            prompt.tokens, temp=job.temperature, top_p=job.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0,
            frequency_penalty=job.frequency_penalty, presence_penalty=job.presence_penalty, grammar=grammar,
        )
        try:
            for tok in tokens:
                if job.cancelled.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, tok) or tok in prompt.stop_token_ids:
                    finish = "stop"
                    break
                # The energy budget is checked before a token counts: a budget the prompt alone exhausts yields
                # no output, which the router reports as an explicit failure.
                if job.max_cpu_seconds is not None and time.process_time() - cpu0 >= job.max_cpu_seconds:
                    limited_by = "max_joules"
                    break
                n_out += 1
                job.generated = n_out
                text = matcher.feed(decoder.decode(llm.detokenize([tok])))
                if text:
                    if ttft is None:
                        ttft = (time.perf_counter() - t0) * 1000
                    parts.append(text)
                    job.emit(Token(text))
                if matcher.stopped:
                    finish = "stop"
                    break
                if n_out >= budget:
                    break
                if job.deadline is not None and time.perf_counter() >= job.deadline:
                    limited_by = "max_latency_ms"
                    break
        finally:
            tokens.close()
        if not matcher.stopped and finish != "cancelled":
            tail = matcher.flush() + decoder.decode(b"", final=True)
            if tail:
                parts.append(tail)
                job.emit(Token(tail))
        self.stats.tokens_generated += n_out
        if finish != "cancelled" and ttft is not None and n_out >= 4:
            self._measured(n_out, time.perf_counter() - t0 - ttft / 1000)
        if finish == "cancelled":
            self.stats.cancelled += 1
            if self._stopping:  # cut short by shutdown, not by the client: tell the client why
                job.emit(Failed(ModelUnavailable("The runtime is shutting down; the generation was stopped.",
                                                 code="runtime_shutting_down")))
                return
        else:
            self.stats.completed += 1
        job.emit(Done(finish, n_prompt, n_out, queue_ms, ttft, (time.perf_counter() - t0) * 1000,
                      time.process_time() - cpu0, "".join(parts), limited_by))

    def _embed(self, job: EmbedJob) -> None:
        llm = self._load()
        cpu0 = time.process_time()
        n_ctx, n_vocab = llm.n_ctx(), llm.n_vocab()
        batches: list[list[int]] = []
        for i, item in enumerate(job.inputs):
            tokens = item if isinstance(item, list) else llm.tokenize(item.encode("utf-8"), add_bos=True,
                                                                      special=False)
            if not tokens:
                raise InvalidRequest(f"input {i} is empty")
            if any(t >= n_vocab for t in tokens):
                raise InvalidRequest(f"input {i} holds a token id outside this model's vocabulary (0..{n_vocab - 1})")
            if len(tokens) > n_ctx:
                raise ContextLengthExceeded(f"input {i} is {len(tokens)} tokens; this model's context is {n_ctx} "
                                            "tokens.")
            batches.append(tokens)
        # One decode per input: a vector must not depend on what else was sent with it (batched decoding gives
        # slightly different numbers for the same text).
        vectors = [self._vector(llm, tokens) for tokens in batches]
        self.stats.completed += 1
        job.emit(Vectors(vectors, sum(len(t) for t in batches), time.process_time() - cpu0))

    @staticmethod
    def _vector(llm: Llama, tokens: list[int]) -> list[float]:
        # Llama.embed's own steps for one sequence (every token an output, as embedding mode needs), on token
        # ids, so ids sent by the client embed as they are. An empty sequence never gets here: the binding would
        # write before its batch (index -1) and corrupt memory.
        llm._ctx.kv_cache_clear()
        llm._batch.reset()
        llm._batch.add_sequence(tokens, 0, True)
        try:
            llm._ctx.decode(llm._batch)
        finally:
            llm._batch.reset()
        ptr = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)
        vec = [float(v) for v in ptr[: llm.n_embd()]]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000
