"""Server-Sent Event helpers shared by the API families."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse


def last_event_id(request: Request, default: int = 0) -> int:
    """Where a reconnecting client left off (`Last-Event-ID`), so it misses nothing."""
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() else default


def job_log_stream(records: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    """A job's log records (JobService.logs) as `log` events, each with its sequence number as id, then `end`."""
    async def events() -> AsyncIterator[dict[str, Any]]:
        async for item in records:
            kind = item.pop("kind")
            if kind == "line":
                yield {"event": "log", "id": str(item["seq"]), "data": json.dumps(item)}
            else:
                yield {"event": "end", "data": json.dumps(item)}

    return EventSourceResponse(events(), sep="\n", ping=15, headers={"Cache-Control": "no-cache"})
