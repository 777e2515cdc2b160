"""`/api/v1/workflows`: workflow records (nodes and edges) in the project context, and starting executions
(seed 001; seed 002's "Trigger a Workflow").

Members read; editors create, update (every update bumps `version`), delete and execute. A graph that does not
validate is a 422 naming the node ids at fault."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc, requires
from runtime.api.platform_v1.executions import Cursor, Limit, Status, execution_item
from runtime.api.platform_v1.shapes import Name, Page, PerPage, page
from runtime.auth.access import WRITE, ProjectContext
from runtime.workflows.graph import MAX_EDGES, MAX_NODES
from runtime.workflows.service import WorkflowView

router = APIRouter()

NodeId = Annotated[StrictStr, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Position(Body):
    x: float
    y: float


class NodeIn(Body):
    id: NodeId
    type: Annotated[StrictStr, Field(min_length=1, max_length=50)]
    config: dict[str, Any] = Field(default_factory=dict)
    position: Position | None = None


class EdgeIn(Body):
    id: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = None
    source: NodeId
    target: NodeId
    condition: Annotated[StrictStr, Field(max_length=10_000)] | None = None
    label: Annotated[StrictStr, Field(max_length=100)] | None = None


Nodes = Annotated[list[NodeIn], Field(max_length=MAX_NODES)]
Edges = Annotated[list[EdgeIn], Field(max_length=MAX_EDGES)]
Description = Annotated[StrictStr, Field(max_length=2000)]


class CreateWorkflow(Body):
    name: Name
    description: Description = ""
    nodes: Nodes
    edges: Edges = Field(default_factory=list)


class UpdateWorkflow(Body):
    name: Name | None = None
    description: Description | None = None
    nodes: Nodes | None = None
    edges: Edges | None = None


class Execute(Body):
    input: Any = None


def _nodes(nodes: list[NodeIn]) -> list[dict[str, Any]]:
    return [n.model_dump(exclude_none=True) for n in nodes]


def _edges(edges: list[EdgeIn]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in edges]


def workflow_json(view: WorkflowView) -> dict[str, Any]:
    wf = view.workflow
    return {"id": wf.id, "project_id": wf.project_id, "name": wf.name, "description": wf.description,
            "nodes": wf.nodes, "edges": wf.edges, "version": wf.version, "created_by": wf.created_by,
            "created_at": wf.created_at, "updated_at": wf.updated_at, "schedule": view.schedule}


@router.get("/workflows")
async def list_workflows(svc: Svc, ctx: Project, page_no: Page = 1, per_page: PerPage = 20) -> dict[str, Any]:
    rows = [workflow_json(v) for v in await svc.workflows.list(ctx)]
    return page(rows, page_no, per_page)


@router.post("/workflows", status_code=201)
async def create_workflow(body: CreateWorkflow, svc: Svc,
                          ctx: Annotated[ProjectContext, requires(WRITE, "workflow.create")]) -> dict[str, Any]:
    return workflow_json(await svc.workflows.create(ctx, body.name, body.description, _nodes(body.nodes),
                                                    _edges(body.edges)))


@router.get("/workflows/{workflow_id}")
async def get_workflow(workflow_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return workflow_json(await svc.workflows.get(ctx, workflow_id))


@router.put("/workflows/{workflow_id}")
async def update_workflow(workflow_id: str, body: UpdateWorkflow, svc: Svc,
                          ctx: Annotated[ProjectContext, requires(WRITE, "workflow.update")]) -> dict[str, Any]:
    fields: dict[str, Any] = {k: v for k, v in (("name", body.name), ("description", body.description))
                              if v is not None}
    if body.nodes is not None:
        fields["nodes"] = _nodes(body.nodes)
    if body.edges is not None:
        fields["edges"] = _edges(body.edges)
    return workflow_json(await svc.workflows.update(ctx, workflow_id, fields))


@router.delete("/workflows/{workflow_id}", status_code=204)
async def delete_workflow(workflow_id: str, svc: Svc,
                          ctx: Annotated[ProjectContext, requires(WRITE, "workflow.delete")]) -> Response:
    await svc.workflows.delete(ctx, workflow_id)
    return Response(status_code=204)


@router.post("/workflows/{workflow_id}/execute", status_code=202)
async def execute_workflow(workflow_id: str, body: Execute, svc: Svc,
                           ctx: Annotated[ProjectContext, requires(WRITE, "workflow.execute")]) -> dict[str, Any]:
    ex = await svc.workflows.execute(ctx, workflow_id, body.input)
    return {"execution_id": ex.id, "status": "pending", "workflow_id": ex.workflow_id,
            "workflow_version": ex.workflow_version}


@router.get("/workflows/{workflow_id}/executions")
async def workflow_executions(workflow_id: str, svc: Svc, ctx: Project, response: Response, limit: Limit = 20,
                              cursor: Cursor = None,
                              status: Status | None = None) -> list[dict[str, Any]]:
    """Seed 002 iterates this answer directly: a JSON array, newest first; the next page's cursor is in the
    `X-Next-Cursor` header."""
    found = await svc.workflows.list_executions(ctx, workflow_id=workflow_id, status=status, cursor=cursor,
                                                limit=limit)
    if found.next_cursor:
        response.headers["X-Next-Cursor"] = found.next_cursor
    return [execution_item(ex) for ex in found.items]
