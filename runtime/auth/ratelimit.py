"""Fixed-window rate limits per key (per client IP when anonymous), several windows per API family."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: int


@dataclass
class Decision:
    allowed: bool
    limit: int  # the reported window (the family's first, unless another one is exhausted)
    remaining: int
    reset_epoch: int
    retry_after: int
    ietf: str  # RateLimit header (most constraining window)
    policy: str  # RateLimit-Policy header


class RateLimiter:
    def __init__(self, policies: dict[str, list[Window]]) -> None:
        self.policies = policies
        self._counts: dict[tuple[str, str, int], tuple[int, int]] = {}  # -> (window index, count)
        self._hits = 0

    def hit(self, family: str, who: str, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        windows = self.policies[family]
        states = []
        for w in windows:
            index = int(now // w.seconds)
            slot, count = self._counts.get((family, who, w.seconds), (index, 0))
            if slot != index:
                count = 0
            states.append((w, index, count))
        allowed = all(count < w.limit for w, _, count in states)
        if allowed:
            for w, index, count in states:
                self._counts[(family, who, w.seconds)] = (index, count + 1)
        self._hits += 1
        if self._hits % 10_000 == 0:
            self._prune(now)
        report = []
        for w, index, count in states:
            used = count + 1 if allowed else count
            reset = (index + 1) * w.seconds
            report.append((w, max(w.limit - used, 0), reset))
        blocked = [r for r in report if r[1] == 0 and not allowed]
        shown = blocked[0] if blocked else report[0]
        tightest = min(report, key=lambda r: (r[1], r[2]))
        retry_after = max(math.ceil(max(r[2] for r in blocked) - now), 1) if blocked else 0
        return Decision(
            allowed=allowed, limit=shown[0].limit, remaining=shown[1], reset_epoch=int(shown[2]),
            retry_after=retry_after,
            ietf=f"limit={tightest[0].limit}, remaining={tightest[1]}, reset={max(math.ceil(tightest[2] - now), 0)}",
            policy=", ".join(f"{w.limit};w={w.seconds}" for w in windows),
        )

    def _prune(self, now: float) -> None:
        for key, (index, _) in list(self._counts.items()):
            if (index + 1) * key[2] < now:
                del self._counts[key]
