"""`/v0/*` (seed 004, REST-style): workspaces (the same projects as /api/v1), members, audit, jobs, agents,
billing and outbound webhooks. The active workspace comes from X-Project-ID / X-Project-Slug as in /api/v1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from runtime.api.compute_models import CreateWebhook, Limits, SubmitJob
from runtime.api.deps import context_for, principal, project_by_path, services
from runtime.api.sse import job_log_stream, last_event_id
from runtime.auth.access import ADMIN, READ, ProjectContext, require
from runtime.auth.principal import Principal
from runtime.compute import billing
from runtime.compute.jobs import job_view
from runtime.compute.nodes import node_view
from runtime.errors import InvalidRequest, NotFound
from runtime.store import audit, identity
from runtime.store.identity import Project
from runtime.store.jobs import ACTIVE, TERMINAL

router = APIRouter(prefix="/v0", tags=["compute v0"])
STATES = ("QUEUED", *ACTIVE, *TERMINAL)
Caller = Annotated[Principal, Depends(principal)]
Workspace = Annotated[ProjectContext, Depends(project_by_path)]

# v0 speaks owner / admin / member; a v0 member can create work (our editor); read-only members show as viewer.
V0_TO_ROLE = {"owner": "owner", "admin": "admin", "member": "editor"}
ROLE_TO_V0 = {"owner": "owner", "admin": "admin", "editor": "member", "member": "viewer"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateWorkspace(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    slug: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")] | None = None
    default_region: Annotated[StrictStr, Field(max_length=50)] = Field("local", alias="defaultRegion")


class UpdateWorkspace(_Body):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)] | None = None
    default_region: Annotated[StrictStr, Field(max_length=50)] | None = Field(None, alias="defaultRegion")


class Invite(_Body):
    email: Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    role: Literal["owner", "admin", "member"] = "member"
    name: StrictStr | None = None


def workspace_view(p: Project) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "slug": p.slug, "defaultRegion": p.default_region, "ownerId": p.owner_id,
            "role": ROLE_TO_V0.get(p.role or "", p.role), "createdAt": p.created_at, "updatedAt": p.updated_at}


@router.post("/workspaces", status_code=201)
async def create_workspace(body: CreateWorkspace, request: Request, caller: Caller) -> dict[str, Any]:
    project = await services(request).accounts.create_project(caller, body.name, body.slug,
                                                              default_region=body.default_region)
    return workspace_view(project)


@router.get("/workspaces")
async def list_workspaces(request: Request, caller: Caller) -> dict[str, Any]:
    projects = await identity.projects_for(services(request).db, caller.user.id)
    return {"items": [workspace_view(p) for p in projects], "total": len(projects)}


@router.get("/workspaces/{project_id}")
async def get_workspace(ctx: Workspace) -> dict[str, Any]:
    return workspace_view(ctx.project)


@router.patch("/workspaces/{project_id}")
async def update_workspace(body: UpdateWorkspace, request: Request, ctx: Workspace) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True)
    return workspace_view(await services(request).accounts.update_project(ctx, fields))


@router.get("/workspaces/{project_id}/members")
async def list_workspace_members(request: Request, ctx: Workspace) -> dict[str, Any]:
    rows = await services(request).accounts.members(ctx)
    items = [{"userId": r["user_id"], "email": r["email"], "name": r["name"],
              "role": ROLE_TO_V0.get(r["role"], r["role"]), "addedAt": r["added_at"]} for r in rows]
    return {"items": items, "total": len(items)}


@router.post("/workspaces/{project_id}/members", status_code=201)
async def invite_member(body: Invite, request: Request, ctx: Workspace) -> dict[str, Any]:
    m = await services(request).accounts.add_member(ctx, body.email, V0_TO_ROLE[body.role], body.name)
    return {"userId": m["user_id"], "email": m["email"], "name": m["name"], "role": body.role}


@router.get("/workspaces/{project_id}/audit", response_model=None)
async def audit_log(request: Request, ctx: Workspace, since: str | None = None, until: str | None = None,
                    actor: str | None = None, action: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
                    format: Literal["json", "jsonl"] = "json") -> Any:
    svc = services(request)
    await require(svc.db, ctx, ADMIN, "audit.read")
    records = await audit.query(svc.db, ctx.project.id, since=since, until=until, actor=actor, action=action,
                                limit=limit)
    if format == "jsonl":
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return PlainTextResponse(lines, media_type="application/x-ndjson")
    return {"items": records, "total": len(records)}


# ---- jobs ------------------------------------------------------------------------------------------------------

def _labels(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition(":") if ":" in item else item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label filters look like key:value, not '{item}'")
        out[key] = value
    return out


@router.post("/jobs", status_code=201)
async def submit_job(body: SubmitJob, request: Request, response: Response, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller, body.workspace_id)
    done = await svc.jobs.submit(ctx, body.spec(), request.headers.get("idempotency-key"))
    if done.warnings:
        response.headers["X-Compute-Usage-Warning"] = "; ".join(done.warnings)
    if not done.created:
        response.status_code = 200
    return await svc.jobs.detail_of(done.job)


@router.get("/jobs")
async def list_jobs(request: Request, caller: Caller,
                    state: Annotated[list[str] | None, Query()] = None,
                    label: Annotated[list[str] | None, Query()] = None,
                    since: str | None = None, until: str | None = None,
                    page: Annotated[int, Query(ge=1)] = 1,
                    page_size: Annotated[int, Query(ge=1, le=500, alias="pageSize")] = 50) -> dict[str, Any]:
    states = [s.upper() for s in state or []]
    bad = [s for s in states if s not in STATES]
    if bad:
        raise InvalidRequest(f"unknown state {bad}; use {list(STATES)}")
    ctx = await context_for(request, caller)
    found, total = await services(request).jobs.list(ctx, states=states or None, labels=_labels(label or []),
                                                     since=since, until=until, limit=page_size,
                                                     offset=(page - 1) * page_size)
    return {"items": [job_view(j) for j in found], "total": total, "page": page, "pageSize": page_size}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    return await services(request).jobs.detail(await context_for(request, caller), job_id)


@router.post("/jobs/{job_id}:cancel")
async def cancel_job(job_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    job = await svc.jobs.cancel(ctx, job_id)
    return await svc.jobs.detail(ctx, job.id)


@router.get("/jobs/{job_id}/logs", response_model=None)
async def job_logs(job_id: str, request: Request, caller: Caller, follow: bool = False,
                   after: Annotated[int, Query(ge=0)] = 0) -> Any:
    svc = services(request)
    await svc.jobs.get(await context_for(request, caller), job_id)
    start = last_event_id(request, after)
    if follow:
        return job_log_stream(svc.jobs, job_id, start, follow=True, stop=svc.stopping)
    lines = [item async for item in svc.jobs.follow_logs(job_id, start, follow=False) if item["kind"] == "line"]
    return {"items": [{k: v for k, v in line.items() if k != "kind"} for line in lines]}


# ---- agents (worker nodes) -------------------------------------------------------------------------------------

@router.get("/agents")
async def list_agents(request: Request, caller: Caller) -> dict[str, Any]:
    items = await services(request).nodes.list(await context_for(request, caller))
    return {"items": items, "total": len(items)}


@router.get("/agents/{agent_id}")
async def get_agent(agent_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    return await node_view(svc.db, await svc.nodes.get(await context_for(request, caller), agent_id))


@router.post("/agents/{agent_id}:drain")
async def drain_agent(agent_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    node = await svc.nodes.drain(caller, await svc.nodes.get(ctx, agent_id), ctx)
    return await node_view(svc.db, node)


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, request: Request, caller: Caller) -> Response:
    svc = services(request)
    ctx = await context_for(request, caller)
    await svc.nodes.delete(ctx, await svc.nodes.get(ctx, agent_id))
    return Response(status_code=204)


# ---- billing ---------------------------------------------------------------------------------------------------

@router.get("/billing/usage")
async def billing_usage(request: Request, caller: Caller, window_start: Annotated[
        str | None, Query(alias="windowStart")] = None, window_end: Annotated[
        str | None, Query(alias="windowEnd")] = None) -> dict[str, Any]:
    ctx = await context_for(request, caller)
    await require(services(request).db, ctx, READ, "billing.read")
    return await billing.usage(services(request).db, ctx.project.id, window_start, window_end)


@router.get("/billing/invoices")
async def invoices(request: Request, caller: Caller) -> dict[str, Any]:
    await context_for(request, caller)
    return {"items": [], "total": 0, "note": "A local runtime (Hobby plan) has no invoices."}


@router.get("/billing/limits")
async def get_limits(request: Request, caller: Caller) -> dict[str, Any]:
    ctx = await context_for(request, caller)
    await require(services(request).db, ctx, READ, "billing.read")
    return await services(request).jobs.limits.get(ctx.project.id)


@router.patch("/billing/limits")
async def patch_limits(body: Limits, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, ADMIN, "billing.limits")
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    await svc.jobs.limits.set(ctx.project.id, changes)
    async with svc.db.transaction() as tx:
        await audit.write(tx, caller.actor, "billing.limits", target=ctx.project.id, project_id=ctx.project.id,
                          detail=changes)
    return await svc.jobs.limits.get(ctx.project.id)


# ---- outbound webhooks -----------------------------------------------------------------------------------------

@router.post("/webhooks", status_code=201)
async def create_webhook(body: CreateWebhook, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, ADMIN, "webhook.create")
    async with svc.db.transaction() as tx:
        hook = await svc.webhooks.create(tx, ctx.project.id, body.url, list(body.events))
        await audit.write(tx, caller.actor, "webhook.create", target=hook["id"], project_id=ctx.project.id,
                          detail={"url": body.url, "events": list(body.events)})
    return hook


@router.get("/webhooks")
async def list_webhooks(request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, READ, "webhook.list")
    items = await svc.webhooks.list(ctx.project.id)
    return {"items": items, "total": len(items)}


@router.get("/webhooks/{hook_id}/deliveries")
async def webhook_deliveries(hook_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, ADMIN, "webhook.read")
    if hook_id not in {h["id"] for h in await svc.webhooks.list(ctx.project.id)}:
        raise NotFound(f"Webhook '{hook_id}' was not found.")
    return {"items": await svc.webhooks.deliveries(hook_id)}


@router.delete("/webhooks/{hook_id}", status_code=204)
async def delete_webhook(hook_id: str, request: Request, caller: Caller) -> Response:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, ADMIN, "webhook.delete")
    async with svc.db.transaction() as tx:
        await svc.webhooks.delete(tx, ctx.project.id, hook_id)
        await audit.write(tx, caller.actor, "webhook.delete", target=hook_id, project_id=ctx.project.id)
    return Response(status_code=204)


@router.post("/webhooks/{hook_id}:rotate-secret")
async def rotate_webhook_secret(hook_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    svc = services(request)
    ctx = await context_for(request, caller)
    await require(svc.db, ctx, ADMIN, "webhook.rotate_secret")
    async with svc.db.transaction() as tx:
        rotated = await svc.webhooks.rotate(tx, ctx.project.id, hook_id)
        await audit.write(tx, caller.actor, "webhook.rotate_secret", target=hook_id, project_id=ctx.project.id)
    return rotated
