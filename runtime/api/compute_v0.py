"""`/v0/*` (seed 004, REST-style): workspaces (the same projects as /api/v1), members, audit, jobs, worker nodes
(seed 004 calls them agents: `/v0/agents`), billing and outbound webhooks. The active workspace comes from
X-Project-ID / X-Project-Slug as in /api/v1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.compute_models import MAX_FILTERS, MAX_PAGE, CreateWebhook, Limits, SubmitJob
from runtime.api.deps import Caller, PathProject, Project, Svc, context_for
from runtime.api.sse import MAX_EVENT_ID, job_log_stream, last_event_id
from runtime.compute import audit
from runtime.compute.jobs import job_view
from runtime.errors import InvalidRequest
from runtime.store.identity import Project as Workspace
from runtime.store.jobs import JOB_SORTS, JobState

router = APIRouter(prefix="/v0", tags=["compute v0"])

# v0 speaks owner / admin / member; a v0 member can create work (our editor); read-only members show as viewer.
V0_TO_ROLE = {"owner": "owner", "admin": "admin", "member": "editor"}
ROLE_TO_V0 = {"owner": "owner", "admin": "admin", "editor": "member", "member": "viewer"}


class CreateWorkspace(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    slug: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")] | None = None
    default_region: Annotated[StrictStr, Field(max_length=50)] = Field("local", alias="defaultRegion")


class UpdateWorkspace(Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = None
    default_region: Annotated[StrictStr, Field(max_length=50)] | None = Field(None, alias="defaultRegion")


class Invite(Body):
    email: Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    role: Literal["owner", "admin", "member"] = "member"
    name: StrictStr | None = None


def workspace_view(p: Workspace) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "slug": p.slug, "defaultRegion": p.default_region, "ownerId": p.owner_id,
            "role": ROLE_TO_V0.get(p.role or "", p.role), "createdAt": p.created_at, "updatedAt": p.updated_at}


@router.post("/workspaces", status_code=201)
async def create_workspace(body: CreateWorkspace, svc: Svc, caller: Caller) -> dict[str, Any]:
    project = await svc.accounts.create_project(caller, body.name, body.slug, default_region=body.default_region)
    return workspace_view(project)


@router.get("/workspaces")
async def list_workspaces(svc: Svc, caller: Caller) -> dict[str, Any]:
    projects = await svc.accounts.projects(caller)
    return {"items": [workspace_view(p) for p in projects], "total": len(projects)}


@router.get("/workspaces/{project_id}")
async def get_workspace(ctx: PathProject) -> dict[str, Any]:
    return workspace_view(ctx.project)


@router.patch("/workspaces/{project_id}")
async def update_workspace(body: UpdateWorkspace, svc: Svc, ctx: PathProject) -> dict[str, Any]:
    return workspace_view(await svc.accounts.update_project(ctx, body.model_dump(exclude_none=True)))


@router.get("/workspaces/{project_id}/members")
async def list_workspace_members(svc: Svc, ctx: PathProject) -> dict[str, Any]:
    rows = await svc.accounts.members(ctx)
    items = [{"userId": r["user_id"], "email": r["email"], "name": r["name"],
              "role": ROLE_TO_V0.get(r["role"], r["role"]), "addedAt": r["added_at"]} for r in rows]
    return {"items": items, "total": len(items)}


@router.post("/workspaces/{project_id}/members", status_code=201)
async def invite_member(body: Invite, svc: Svc, ctx: PathProject) -> dict[str, Any]:
    m = await svc.accounts.add_member(ctx, body.email, V0_TO_ROLE[body.role], body.name)
    return {"userId": m["user_id"], "email": m["email"], "name": m["name"], "role": body.role}


@router.get("/workspaces/{project_id}/audit", response_model=None)
async def audit_log(svc: Svc, ctx: PathProject, since: str | None = None, until: str | None = None,
                    actor: str | None = None, action: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
                    format: Literal["json", "jsonl"] = "json") -> Any:
    records = await audit.records(svc.db, ctx, since=since, until=until, actor=actor, action=action, limit=limit)
    if format == "jsonl":
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return PlainTextResponse(lines, media_type="application/x-ndjson")
    return {"items": records, "total": len(records)}


# ---- jobs ------------------------------------------------------------------------------------------------------

def _at_most(name: str, values: list[str]) -> None:
    if len(values) > MAX_FILTERS:
        raise InvalidRequest(f"{name}: at most {MAX_FILTERS} filters per request, not {len(values)}")


def _labels(values: list[str]) -> dict[str, str]:
    _at_most("label", values)
    out = {}
    for item in values:
        key, sep, value = item.partition(":") if ":" in item else item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label filters look like key:value, not '{item}'")
        if '"' in key:
            raise InvalidRequest('label keys cannot contain a double quote (")')
        out[key] = value
    return out


def _states(values: list[str]) -> list[str]:
    _at_most("state", values)
    states = [s.upper() for s in values]
    bad = [s for s in states if s not in JobState.__members__]
    if bad:
        raise InvalidRequest(f"unknown state {bad}; use {[s.value for s in JobState]}")
    return states


@router.post("/jobs", status_code=201)
async def submit_job(body: SubmitJob, request: Request, response: Response, svc: Svc, caller: Caller
                     ) -> dict[str, Any]:
    ctx = await context_for(request, caller, body.workspace_id)
    done = await svc.jobs.submit(ctx, body.spec(), request.headers.get("idempotency-key"))
    if done.warnings:
        response.headers["X-Compute-Usage-Warning"] = "; ".join(done.warnings)
    if not done.created:
        response.status_code = 200
    return done.detail


@router.get("/jobs")
async def list_jobs(svc: Svc, ctx: Project,
                    state: Annotated[list[str] | None, Query()] = None,
                    label: Annotated[list[str] | None, Query()] = None,
                    since: str | None = None, until: str | None = None,
                    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
                    page_size: Annotated[int, Query(ge=1, le=500, alias="pageSize")] = 50,
                    sort: Annotated[str, Query(max_length=40)] = "createdAt",
                    order: Annotated[str, Query(max_length=10)] = "desc") -> dict[str, Any]:
    states = _states(state or [])
    if sort not in JOB_SORTS:
        raise InvalidRequest(f"unknown sort '{sort[:40]}'; use one of {sorted(JOB_SORTS)}")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order is asc or desc")
    found, total = await svc.jobs.list(ctx, states=states or None, labels=_labels(label or []), since=since,
                                       until=until, limit=page_size, offset=(page - 1) * page_size, sort=sort,
                                       descending=order == "desc")
    return {"items": [job_view(j) for j in found], "total": total, "page": page, "pageSize": page_size}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.jobs.detail(ctx, job_id)


@router.post("/jobs/{job_id}:cancel")
async def cancel_job(job_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.jobs.cancel(ctx, job_id)


@router.get("/jobs/{job_id}/logs", response_model=None)
async def job_logs(job_id: str, request: Request, svc: Svc, ctx: Project, follow: bool = False,
                   after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0) -> Any:
    records = await svc.jobs.logs(ctx, job_id, last_event_id(request, after), follow, stop=svc.stopping)
    if follow:
        return job_log_stream(records)
    return {"items": [{k: v for k, v in r.items() if k != "kind"} async for r in records if r["kind"] == "line"]}


# ---- worker nodes (seed 004's "agents") ------------------------------------------------------------------------

@router.get("/agents")
async def list_nodes_v0(svc: Svc, ctx: Project) -> dict[str, Any]:
    items = await svc.nodes.list(ctx)
    return {"items": items, "total": len(items)}


@router.get("/agents/{node_id}")
async def get_node_v0(node_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.nodes.detail(ctx, node_id)


@router.post("/agents/{node_id}:drain")
async def drain_node_v0(node_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.nodes.drain(ctx, node_id)


@router.delete("/agents/{node_id}", status_code=204)
async def delete_node_v0(node_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.nodes.delete(ctx, node_id)
    return Response(status_code=204)


# ---- billing ---------------------------------------------------------------------------------------------------

@router.get("/billing/usage")
async def billing_usage(svc: Svc, ctx: Project,
                        window_start: Annotated[str | None, Query(alias="windowStart")] = None,
                        window_end: Annotated[str | None, Query(alias="windowEnd")] = None) -> dict[str, Any]:
    return await svc.jobs.billing.usage(ctx, window_start, window_end)


@router.get("/billing/invoices")
async def invoices(ctx: Project) -> dict[str, Any]:
    return {"items": [], "total": 0, "note": "A local runtime (Hobby plan) has no invoices."}


@router.get("/billing/limits")
async def get_limits(svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.jobs.billing.limits(ctx)


@router.patch("/billing/limits")
async def patch_limits(body: Limits, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.jobs.billing.set_limits(ctx, body.model_dump(by_alias=True, exclude_unset=True))


# ---- outbound webhooks -----------------------------------------------------------------------------------------

@router.post("/webhooks", status_code=201)
async def create_webhook(body: CreateWebhook, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.webhooks.create(ctx, body.url, list(body.events))


@router.get("/webhooks")
async def list_webhooks(svc: Svc, ctx: Project) -> dict[str, Any]:
    items = await svc.webhooks.list(ctx)
    return {"items": items, "total": len(items)}


@router.get("/webhooks/{hook_id}/deliveries")
async def webhook_deliveries(hook_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return {"items": await svc.webhooks.deliveries(ctx, hook_id)}


@router.delete("/webhooks/{hook_id}", status_code=204)
async def delete_webhook(hook_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.webhooks.delete(ctx, hook_id)
    return Response(status_code=204)


@router.post("/webhooks/{hook_id}:rotate-secret")
async def rotate_webhook_secret(hook_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.webhooks.rotate(ctx, hook_id)
