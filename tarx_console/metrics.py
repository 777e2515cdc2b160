"""Rates for the dashboard's sparklines, sampled by the console's health poller. No textual imports."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from tarx_console.client.api import TERMINAL_STATES


class Rates:
    """tokens/s and finished jobs/s between consecutive samples; the last `keep` of each."""

    def __init__(self, keep: int = 90) -> None:
        self.tokens_per_s: deque[float] = deque([0.0], maxlen=keep)
        self.jobs_per_s: deque[float] = deque([0.0], maxlen=keep)
        self._last: tuple[float, int, int] | None = None

    def sample(self, health: dict[str, Any], job_counts: dict[str, int], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        tokens = sum((m.get("stats") or {}).get("tokens_generated", 0) for m in health.get("models", {}).values())
        finished = sum(job_counts.get(s, 0) for s in TERMINAL_STATES)
        if self._last is not None:
            then, last_tokens, last_finished = self._last
            elapsed = max(now - then, 1e-6)
            # A restarted runtime counts from zero again: never show a negative rate.
            self.tokens_per_s.append(max(tokens - last_tokens, 0) / elapsed)
            self.jobs_per_s.append(max(finished - last_finished, 0) / elapsed)
        self._last = (now, tokens, finished)
