"""Server-Sent Event helpers shared by the API families."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse

from runtime.compute.jobs import JobService


def last_event_id(request: Request, default: int = 0) -> int:
    """Where a reconnecting client left off (`Last-Event-ID`), so it misses nothing."""
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() else default


def job_log_stream(jobs: JobService, job_id: str, after_seq: int, follow: bool, stop: asyncio.Event
                   ) -> EventSourceResponse:
    async def events() -> AsyncIterator[dict[str, Any]]:
        async for item in jobs.follow_logs(job_id, after_seq, follow, stop):
            kind = item.pop("kind")
            if kind == "line":
                yield {"event": "log", "id": str(item["seq"]), "data": json.dumps(item)}
            else:
                yield {"event": "end", "data": json.dumps(item)}

    return EventSourceResponse(events(), sep="\n", ping=15, headers={"Cache-Control": "no-cache"})
