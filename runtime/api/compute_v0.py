"""`/v0/*` (seed 004, REST-style): workspaces (the same projects as /api/v1), members and the audit log."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from runtime.api.deps import principal, project_by_path, services
from runtime.auth.access import ADMIN, ProjectContext, require
from runtime.auth.principal import Principal
from runtime.store import audit, identity
from runtime.store.identity import Project

router = APIRouter(prefix="/v0", tags=["compute v0"])
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
