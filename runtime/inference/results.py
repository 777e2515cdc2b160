"""The typed results of the chat seam (`ChatService` in runtime/inference/chat.py).

Agents, RAG and workflows call inference in-process and read these values; only the API layer
(runtime/api/openai_v1.py) turns them into OpenAI JSON. A streamed call yields `TextDelta` and `ToolCalls`
events and ends with one `Final` that carries the same `ChatResult` a non-streamed call returns. A request with
`n` > 1 choices streams every choice's events interleaved, each naming its choice (`index`), and ends with one
`Final` per choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.inference.energy import Joules


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked to call; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RouteEvidence:
    """Where a completion ran and what it cost: seed 000's `tarx_route`, stored in the route evidence ledger."""

    evidence_id: str
    execution_plane: str  # local | supercomputer | enterprise: where it actually ran
    policy: str
    privacy_tier: str
    model: str
    provider: str
    latency_ms: float
    joules: Joules
    fallback: bool
    fallback_reason: str | None
    limited_by: str | None  # max_latency_ms | max_joules when a route limit cut the output short
    recorded_at: str

    def as_dict(self) -> dict[str, Any]:
        """The `tarx_route` fields (for the wire and for /v1/evidence)."""
        return {"execution_plane": self.execution_plane, "policy": self.policy, "privacy_tier": self.privacy_tier,
                "model": self.model, "provider": self.provider, "latency_ms": self.latency_ms,
                **self.joules.evidence(), "fallback": self.fallback, "fallback_reason": self.fallback_reason,
                "evidence_id": self.evidence_id, "limited_by": self.limited_by, "recorded_at": self.recorded_at}


@dataclass(frozen=True)
class ChatResult:
    """A finished chat call.

    `text` is the assistant's answer (empty when it called tools instead); `tool_calls` the calls it made;
    `finish_reason` is `stop`, `length`, `tool_calls` or `cancelled`. `route` says which plane ran it and the
    Joules it took; it was written to the ledger together with the call's log row before this value existed.
    """

    id: str
    model: str
    created: int
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage
    route: RouteEvidence
    logprobs: list[dict[str, Any]] | None = None  # OpenAI's `logprobs.content` entries, when the request asked

    @property
    def joules(self) -> Joules:
        return self.route.joules


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, as soon as it is generated."""

    text: str
    logprobs: list[dict[str, Any]] | None = None  # the entries of the tokens behind `text`, when asked for
    index: int = 0  # the choice it belongs to (requests with n > 1)


@dataclass(frozen=True)
class ToolCalls:
    """The model's tool calls, whole (a call is released only once it parses)."""

    calls: list[ToolCall]
    index: int = 0


@dataclass(frozen=True)
class Final:
    """The last event of a stream: the same result a non-streamed call returns."""

    result: ChatResult
    index: int = 0


ChatEvent = TextDelta | ToolCalls | Final


@dataclass(frozen=True)
class Embeddings:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass
class Generated:
    """What one local generation produced, before it is routed and recorded (internal to runtime/inference)."""

    id: str
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cpu_seconds: float
    queue_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    limited_by: str | None = None
    logprobs: list[dict[str, Any]] | None = None
