"""Server-Sent Event helpers shared by the API families."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse

from runtime.errors import InvalidRequest

MAX_EVENT_ID = 2**63 - 1  # event ids are SQLite INTEGERs


def last_event_id(request: Request, default: int = 0) -> int:
    """Where a reconnecting client left off (`Last-Event-ID`), so it misses nothing. Absent or empty: `default`;
    anything but a decimal number an event id could be is a 400."""
    value = request.headers.get("last-event-id", "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > MAX_EVENT_ID:
        raise InvalidRequest(f"Last-Event-ID must be an event id: a whole number from 0 to {MAX_EVENT_ID}.")
    return int(value)


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
