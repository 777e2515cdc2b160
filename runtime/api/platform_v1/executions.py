"""`/api/v1/executions`: workflow executions (seed 001), polled or streamed (seed 002).

Members read and follow; editors approve and cancel. One execution's GET also carries `graph`, the nodes and edges
of the workflow version that ran, so a viewer draws what ran even after the workflow changed. The stream is
Server-Sent Events (`node_start`, `node_complete`, `node_failed`, `approval_required`, ..., then
`execution_complete` or `execution_failed`), each with its sequence number as id and `type` in its data;
`Last-Event-ID` resumes after what a client saw, and a finished execution's stream replays and closes. EventSource
cannot send headers, so `?token=` is accepted here (the access log never records query strings)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, StrictBool, StrictStr
from sse_starlette import EventSourceResponse

from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc, requires
from runtime.api.sse import last_event_id
from runtime.auth.access import WRITE, ProjectContext
from runtime.store.executions import Event, Execution
from runtime.workflows.service import ExecutionLogs, ExecutionView

router = APIRouter()

Status = Literal["pending", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected"]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=100, description="the previous page's next_cursor")]


class Approve(Body):
    approved: StrictBool
    comment: Annotated[StrictStr, Field(max_length=10_000)] | None = None
    node_id: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = None


def execution_item(ex: Execution) -> dict[str, Any]:
    return {"id": ex.id, "workflow_id": ex.workflow_id, "workflow_version": ex.workflow_version, "status": ex.status,
            "trigger": ex.trigger, "input": ex.input, "output": ex.output, "error": ex.error,
            "created_at": ex.created_at, "started_at": ex.started_at, "completed_at": ex.completed_at}


def execution_json(view: ExecutionView, *, graph: bool = False) -> dict[str, Any]:
    """`graph` adds the nodes and edges of the workflow version that ran (the workflow may have changed since);
    only the single-execution GET carries it, so lists and action answers stay small."""
    results = {}
    for n in view.nodes:
        result: dict[str, Any] = {"status": n.status, "output": n.output, "duration_ms": n.duration_ms}
        if n.error:
            result["error"] = n.error
        result.update(node_type=n.node_type, attempts=n.attempts, started_at=n.started_at,
                      completed_at=n.completed_at)
        results[n.node_id] = result
    out = {**execution_item(view.execution), "node_results": results}
    if graph:
        out["graph"] = {"nodes": view.execution.graph["nodes"], "edges": view.execution.graph["edges"]}
    return out


def logs_json(logs: ExecutionLogs) -> dict[str, Any]:
    return {**execution_item(logs.execution),
            "nodes": [{"node_id": n.node_id, "node_type": n.node_type, "status": n.status, "input": n.input,
                       "output": n.output, "error": n.error, "attempts": n.attempts, "started_at": n.started_at,
                       "completed_at": n.completed_at, "duration_ms": n.duration_ms} for n in logs.nodes],
            "events": [{"seq": e.seq, "event": e.event, "data": e.data, "created_at": e.created_at}
                       for e in logs.events]}


def sse_event(event: Event) -> dict[str, str]:
    return {"event": event.event, "id": str(event.seq),
            "data": json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)}


@router.get("/executions")
async def list_executions(svc: Svc, ctx: Project, limit: Limit = 20, cursor: Cursor = None,
                          workflow_id: Annotated[str | None, Query(max_length=200)] = None,
                          status: Status | None = None) -> dict[str, Any]:
    found = await svc.workflows.list_executions(ctx, workflow_id=workflow_id, status=status, cursor=cursor,
                                                limit=limit)
    return {"items": [execution_item(ex) for ex in found.items], "next_cursor": found.next_cursor,
            "per_page": limit}


@router.get("/executions/{execution_id}")
async def get_execution(execution_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return execution_json(await svc.workflows.execution(ctx, execution_id), graph=True)


@router.get("/executions/{execution_id}/logs")
async def execution_logs(execution_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return logs_json(await svc.workflows.logs(ctx, execution_id))


@router.get("/executions/{execution_id}/stream", response_model=None)
async def stream_execution(execution_id: str, request: Request, svc: Svc, ctx: Project) -> EventSourceResponse:
    events = await svc.workflows.events(ctx, execution_id, last_event_id(request))

    async def sse() -> AsyncIterator[dict[str, str]]:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield sse_event(event)

    return EventSourceResponse(sse(), sep="\n", ping=15, headers={"Cache-Control": "no-cache",
                                                                 "X-Accel-Buffering": "no"})


@router.post("/executions/{execution_id}/approve")
async def approve_execution(execution_id: str, body: Approve, svc: Svc,
                            ctx: Annotated[ProjectContext, requires(WRITE, "execution.approve")]) -> dict[str, Any]:
    return execution_json(await svc.workflows.approve(ctx, execution_id, body.approved, body.comment, body.node_id))


@router.post("/executions/{execution_id}/cancel")
async def cancel_execution(execution_id: str, svc: Svc,
                           ctx: Annotated[ProjectContext, requires(WRITE, "execution.cancel")]) -> dict[str, Any]:
    return execution_json(await svc.workflows.cancel(ctx, execution_id))
