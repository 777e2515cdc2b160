"""Work items handed to a model worker thread, and the events that come back through asyncio."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from runtime.errors import TarxError

if TYPE_CHECKING:
    from runtime.inference.constraints import Constraint


class QueueClass(StrEnum):
    interactive = "interactive"  # served first
    deep = "deep"


@dataclass
class Started:
    queue_ms: float
    prompt_tokens: int


@dataclass
class Token:
    text: str
    logprob: dict[str, Any] | None = None  # OpenAI's logprobs entry for the token, when the request asked


@dataclass
class Done:
    finish_reason: str  # stop | length | cancelled
    prompt_tokens: int
    completion_tokens: int
    queue_ms: float
    ttft_ms: float | None
    total_ms: float
    cpu_seconds: float
    text: str = ""  # the whole output (after stop strings), for non-streaming callers
    limited_by: str | None = None  # "max_latency_ms" or "max_joules" when a route limit cut the output
    logprobs: list[dict[str, Any]] | None = None  # one entry per generated token, when the request asked
    reused_tokens: int = 0  # prompt tokens whose KV was reused from an earlier request (prefix reuse)


@dataclass
class Vectors:
    vectors: list[list[float]]
    prompt_tokens: int
    cpu_seconds: float


@dataclass
class Failed:
    error: TarxError


Event = Started | Token | Done | Vectors | Failed


@dataclass(kw_only=True)
class Job:
    id: str
    queue_class: QueueClass
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.perf_counter)

    def emit(self, event: Event) -> None:
        """Called from the worker thread; hands the event to the request's event loop."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop closed under us during shutdown: nobody is listening
            pass

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass(kw_only=True)
class ChatJob(Job):
    turns: list[dict[str, str]]  # runtime/inference/turns.py
    constraint: Constraint
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stops: list[str]
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    deadline: float | None = None  # perf_counter time by which generation must stop (x-tarx-max-latency-ms)
    max_cpu_seconds: float | None = None  # CPU budget standing for x-tarx-max-joules
    generated: int = 0  # tokens generated so far (written by the worker thread; read for wait estimates)


@dataclass(kw_only=True)
class EmbedJob(Job):
    inputs: list[str | list[int]]  # text, or token ids of the model's vocabulary
