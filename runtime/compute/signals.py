"""Wake-ups inside one event loop: long-polling nodes, following log readers, the webhook sender."""

from __future__ import annotations

import asyncio
import contextlib


class Signals:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def wait(self, key: str, seconds: float) -> bool:
        """True if `key` was notified within `seconds`."""
        event = self._events.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        return False
