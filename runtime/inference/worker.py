"""One worker per loaded model and kind: a bounded two-class queue in the API process, the model in a runner.

Requests wait here (interactive ahead of deep, 429 past the bounds) and are handed to the model's runner process
(runtime/inference/runner.py) while it has a free slot: up to `parallel` chat requests decode together there.
Events come back on the runner's reader thread and go to each job's asyncio queue. A runner that dies fails only
its own requests (503, `runner_crashed`); the next request starts a fresh one and the queue goes on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from runtime.config import Settings
from runtime.errors import ModelUnavailable, QueueFull, TarxError
from runtime.inference.order import Order
from runtime.inference.registry import ModelSpec
from runtime.inference.runner import Runner
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
    runner_restarts: int = 0  # runners that died unexpectedly (a crash, a kill), replaced on the next call
    load_failures: int = 0  # loads that ended in an error (a broken file, too little memory)
    prompt_tokens: int = 0  # prompt tokens of finished requests
    prompt_tokens_reused: int = 0  # of those, how many came from a slot's KV cache (prefix reuse)


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
        self.slots = max(1, settings.parallel) if kind == "chat" else 1
        self.in_flight: dict[str, Job] = {}  # handed to the runner, not finished
        self.last_used = time.monotonic()
        self._runner: Runner | None = None
        self._pending: dict[QueueClass, deque[Job]] = {c: deque() for c in QueueClass}
        self._cond = threading.Condition()
        self._stopping = False
        self._tokens_per_second = 0.0  # measured decode speed of one stream (moving average)
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
            self._cond.notify_all()

    def _refuse(self, job: Job, message: str, retry_after: int) -> NoReturn:
        raise QueueFull(message, headers={"Retry-After": str(retry_after), "x-tarx-queue-class": job.queue_class.value,
                                          "x-tarx-backpressure-state": "saturated"},
                        extra={"retry_after_seconds": retry_after})

    def _expected_wait(self, job: Job) -> float:
        """Seconds until `job` would get a slot, from the measured decode speed (called under the lock): zero while
        the free slots outnumber the jobs queued ahead; else until the first running request ends, plus the queued
        work at or above its class spread over the slots. Zero until a generation has been measured."""
        if self._tokens_per_second <= 0:
            return 0.0
        ahead, waiting = 0.0, 0
        for cls in QueueClass:
            ahead += sum(self._typical_tokens(j) for j in self._pending[cls] if isinstance(j, ChatJob))
            waiting += len(self._pending[cls])
            if cls == job.queue_class:
                break
        if self.slots - len(self.in_flight) > waiting:  # a slot is free for it once those ahead are dispatched
            return 0.0
        left = [max((j.max_tokens or self.settings.max_output_tokens) - j.generated, 0)
                for j in self.in_flight.values() if isinstance(j, ChatJob)]
        return (min(left, default=0) + ahead / self.slots) / self._tokens_per_second

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
        """Stop a job: dropped from the queue if it has not started; its slot freed at once if it has."""
        job.cancel()
        with self._cond:
            queue = self._pending[job.queue_class]
            if job in queue:
                queue.remove(job)
                self.stats.cancelled += 1
                job.emit(Done("cancelled", 0, 0, _ms_since(job.enqueued_at), None, 0.0, 0.0))
                return
            runner = self._runner if job.id in self.in_flight else None
        if runner is not None:
            runner.send(("cancel", job.id))

    def depth(self) -> dict[str, int]:
        with self._cond:
            return {c.value: len(q) for c, q in self._pending.items()}

    def running(self) -> list[Job]:
        with self._cond:
            return list(self.in_flight.values())

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for queue in self._pending.values():
                while queue:
                    job = queue.popleft()
                    job.emit(Failed(ModelUnavailable("the runtime is shutting down")))
            runner, ids = self._runner, list(self.in_flight)
            self._cond.notify_all()
        for job_id in ids:
            if runner is not None:
                runner.send(("cancel", job_id))

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # ---- the dispatch thread: hands queued jobs to the runner, unloads when idle ----------------------------

    def _next_job(self) -> Job | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if len(self.in_flight) < self.slots:
                    for cls in QueueClass:  # enum order: interactive first
                        if self._pending[cls]:
                            job = self._pending[cls].popleft()
                            self.in_flight[job.id] = job
                            return job
                idle_for = time.monotonic() - self.last_used
                keep_alive = self.settings.keep_alive_seconds
                if self._runner is not None and not self.in_flight and idle_for >= keep_alive:
                    self._unload()
                    continue
                idle = self._runner is not None and not self.in_flight
                self._cond.wait(timeout=max(keep_alive - idle_for, 0.05) if idle else None)

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                if job.cancelled.is_set():
                    self._finished(job)
                    self.stats.cancelled += 1
                    job.emit(Done("cancelled", 0, 0, _ms_since(job.enqueued_at), None, 0.0, 0.0))
                    continue
                runner = self._ensure_runner()
                sent = runner.send(self._message(job))
                if not sent:  # the runner died just now: its reader fails what it held, this one included
                    continue
            except TarxError as exc:
                self._finished(job)
                self.stats.failed += 1
                job.emit(Failed(exc))
            except Exception as exc:
                self._finished(job)
                self.stats.failed += 1
                log.exception("inference failed for %s", job.id)
                job.emit(Failed(TarxError(f"inference failed: {type(exc).__name__}", status=500,
                                          type="server_error", code="inference_failed")))
        self._drain_and_unload()

    def _message(self, job: Job) -> tuple[Any, ...]:
        if isinstance(job, EmbedJob):
            return ("embed", job.id, job.inputs)
        assert isinstance(job, ChatJob)
        return ("chat", Order(
            id=job.id, turns=job.turns, grammar=job.constraint.grammar, raw_prompt=job.constraint.raw_prompt,
            max_tokens=job.max_tokens or self.settings.max_output_tokens, temperature=job.temperature,
            top_p=job.top_p, top_k=job.top_k, min_p=job.min_p, repeat_penalty=job.repeat_penalty,
            frequency_penalty=job.frequency_penalty, presence_penalty=job.presence_penalty, seed=job.seed,
            stops=job.stops, logit_bias=job.logit_bias, logprobs=job.logprobs, top_logprobs=job.top_logprobs,
            seconds_left=None if job.deadline is None else job.deadline - time.perf_counter(),
            max_cpu_seconds=job.max_cpu_seconds, sent_at=time.monotonic()))

    def _finished(self, job: Job) -> None:
        with self._cond:
            self.in_flight.pop(job.id, None)
            self.last_used = time.monotonic()
            self._cond.notify_all()

    def _ensure_runner(self) -> Runner:
        with self._cond:
            if self._runner is not None:
                return self._runner
        # Resolving may assemble the bundled Gemma file the first time: done here, never under the lock.
        try:
            path = self.spec.resolve(self.settings.data_dir)
        except Exception as exc:
            self._load_failed(f"{type(exc).__name__}: {exc}")
            raise ModelUnavailable(f"model '{self.spec.name}' could not be loaded: {self.error}") from exc
        self.state, self.error = "loading", None
        self.on_event("model.loading", {"model": self.spec.name, "kind": self.kind})
        config = {"kind": self.kind, "path": str(path), "prompt_format": self.spec.prompt_format,
                  "n_ctx": min(self.settings.n_ctx, self.spec.context_length or self.settings.n_ctx),
                  "n_batch": self.settings.n_batch, "parallel": self.slots,
                  "threads": self.settings.threads, "prefix_reuse": self.settings.cache_prompt,
                  "kv_unified": self.settings.kv_unified,
                  "prefill_chunk": self.settings.prefill_chunk}
        holder: list[Runner] = []
        runner = Runner(config, lambda m: self._on_message(holder[0], m), lambda code: self._on_exit(holder[0], code))
        holder.append(runner)
        with self._cond:
            self._runner = runner
        return runner

    def _load_failed(self, error: str) -> None:
        self.state, self.error = "error", error
        self.stats.load_failures += 1
        self.on_event("model.error", {"model": self.spec.name, "kind": self.kind, "error": error})

    def _unload(self) -> None:
        """Stop the idle runner (called under the lock): its process exits and gives all its memory back."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        runner.expected_exit = True
        threading.Thread(target=runner.stop, name="tarx-runner-stop", daemon=True).start()
        self.state = "unloaded"
        self.stats.unloads += 1
        self.on_event("model.unloaded", {"model": self.spec.name, "kind": self.kind})

    def _drain_and_unload(self) -> None:
        """At shutdown: let cancelled requests report (they were told to stop), then stop the runner."""
        deadline = time.monotonic() + 10
        with self._cond:
            while self.in_flight and time.monotonic() < deadline:
                self._cond.wait(0.05)
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.expected_exit = True
            runner.stop()
            self.state = "unloaded"
        with self._cond:
            left = list(self.in_flight.values())
            self.in_flight.clear()
        for job in left:
            job.emit(Failed(ModelUnavailable("The runtime is shutting down; the generation was stopped.",
                                             code="runtime_shutting_down")))

    # ---- the runner's reader thread -------------------------------------------------------------------------

    def _on_message(self, runner: Runner, message: Any) -> None:
        if isinstance(message, list):
            for event in message:
                self._on_event(event)
            return
        op = message[0]
        if op == "ready":
            self.state = "ready"
            self.stats.loads += 1
            self.on_event("model.ready", {"model": self.spec.name, "kind": self.kind, "load_ms": round(message[1], 1),
                                          "runner_pid": runner.pid})
        elif op == "load_error":
            self._load_failed(message[1])
            runner.expected_exit = True
            self._fail_all(runner, ModelUnavailable(f"model '{self.spec.name}' could not be loaded: {message[1]}"))

    def _on_event(self, event: tuple[Any, ...]) -> None:
        op, job_id = event[0], event[1]
        with self._cond:
            job = self.in_flight.get(job_id)
        if job is None:
            return
        if op == "token":
            if isinstance(job, ChatJob):
                job.generated += 1
            job.emit(Token(event[2], event[3]))
        elif op == "started":
            job.emit(Started(_ms_since(job.enqueued_at), event[2]))
        elif op == "done":
            self._done(job, event[2])
        elif op == "vectors":
            self._finished(job)
            self.stats.completed += 1
            job.emit(Vectors(event[2], event[3], event[4]))
        elif op == "cancelled":  # an embedding request stopped before its vectors
            self._finished(job)
            self.stats.cancelled += 1
        elif op == "failed":
            self._finished(job)
            self.stats.failed += 1
            message, status, type_, code = event[2]
            job.emit(Failed(TarxError(message, status=status, type=type_, code=code)))

    def _done(self, job: Job, d: dict[str, Any]) -> None:
        self._finished(job)
        n_out, finish, ttft = d["completion_tokens"], d["finish_reason"], d["ttft_ms"]
        self.stats.tokens_generated += n_out
        self.stats.prompt_tokens += d["prompt_tokens"]
        self.stats.prompt_tokens_reused += d["reused"]
        if d["tail"]:
            job.emit(Token(d["tail"]))
        if finish != "cancelled" and ttft is not None and n_out >= 4:
            self._measured(n_out, (d["total_ms"] - ttft) / 1000)
        if finish == "cancelled":
            self.stats.cancelled += 1
            if self._stopping:  # cut short by shutdown, not by the client: tell the client why
                job.emit(Failed(ModelUnavailable("The runtime is shutting down; the generation was stopped.",
                                                 code="runtime_shutting_down")))
                return
        else:
            self.stats.completed += 1
        job.emit(Done(finish, d["prompt_tokens"], n_out, _ms_since(job.enqueued_at) - d["total_ms"], ttft,
                      d["total_ms"], d["cpu_seconds"], d["text"], d["limited_by"], d["logprobs"], d["reused"]))

    def _on_exit(self, runner: Runner, code: int | None) -> None:
        if runner.expected_exit:
            self._fail_all(runner, ModelUnavailable("The model's runner stopped; the request was not completed.",
                                                    code="runner_stopped"))
            return
        log.error("model runner for %s (%s, pid %s) died with exit code %s; failing its requests and restarting",
                  self.spec.name, self.kind, runner.pid, code)
        self.stats.runner_restarts += 1
        self.on_event("model.runner_died", {"model": self.spec.name, "kind": self.kind, "pid": runner.pid,
                                            "exit_code": code})
        self._fail_all(runner, ModelUnavailable(
            f"The runner for model '{self.spec.name}' stopped unexpectedly (exit code {code}) while this request "
            "ran; the runtime restarted it. Retry the request.", code="runner_crashed"))

    def _fail_all(self, runner: Runner, error: TarxError) -> None:
        """Fail every request the runner held and forget the runner; queued requests go to the next one."""
        with self._cond:
            if self._runner is not runner:  # already replaced: what runs now belongs to its successor
                return
            self._runner = None
            if self.state != "error":
                self.state = "unloaded"
            failed = list(self.in_flight.values())
            self.in_flight.clear()
            self.last_used = time.monotonic()
            self._cond.notify_all()
        for job in failed:
            self.stats.failed += 1
            job.emit(Failed(error))


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1000
