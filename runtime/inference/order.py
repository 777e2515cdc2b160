"""What the API process sends a model's runner for one chat generation.

Its own module, with nothing but the standard library, because both processes import it: the runner unpickles it
without loading the API's modules, and the API builds it without loading llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Order:
    """One chat generation as a model's runner receives it: picklable, built from a ChatJob by the worker."""

    id: str
    turns: list[dict[str, str]]  # role/content turns for the chat template (runtime/inference/turns.py)
    grammar: str | None  # GBNF the output must match (runtime/inference/constraints.py), or None
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    seconds_left: float | None = None  # the route deadline, as seconds from when the order was sent
    max_cpu_seconds: float | None = None
    sent_at: float = 0.0  # time.monotonic() in the sender (a system-wide clock on Linux)
    raw_prompt: bool = False  # the one turn's content is a legacy completion's prompt: no chat template
