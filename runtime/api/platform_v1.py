"""`/api/v1`: the TARX platform API (seed 001): identity, platform keys, projects, members, BYOK keys, credentials."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from runtime.api.deps import principal, project_by_path, project_context, services
from runtime.auth.access import ProjectContext
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest
from runtime.store import identity

router = APIRouter(prefix="/api/v1", tags=["platform"])
Caller = Annotated[Principal, Depends(principal)]
InProject = Annotated[ProjectContext, Depends(project_context)]
PathProject = Annotated[ProjectContext, Depends(project_by_path)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=100)]
Email = Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreatePlatformKey(_Body):
    name: Name
    expires_at: StrictStr | None = None


class CreateProject(_Body):
    name: Name
    slug: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")] | None = None
    description: Annotated[StrictStr, Field(max_length=2000)] = ""


class UpdateProject(_Body):
    name: Name | None = None
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None


class AddMember(_Body):
    email: Email
    role: Literal["owner", "admin", "editor", "member"] = "member"
    name: Name | None = None


class AddLlmKey(_Body):
    provider: Annotated[StrictStr, Field(min_length=1, max_length=50)]
    name: Name | None = None
    key: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    # An OpenAI-compatible endpoint: makes this key the project's enterprise upstream.
    base_url: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)] | None = None


class AddCredential(_Body):
    name: Name
    value: Annotated[StrictStr, Field(min_length=1, max_length=16384)]
    type: Annotated[StrictStr, Field(max_length=50)] | None = None


def page(items: list[Any], page: int, per_page: int) -> dict[str, Any]:
    start = (page - 1) * per_page
    return {"items": items[start:start + per_page], "total": len(items), "page": page, "per_page": per_page}


Page = Annotated[int, Query(ge=1, alias="page")]
PerPage = Annotated[int, Query(ge=1, le=200)]


# ---- who am I --------------------------------------------------------------------------------------------------

@router.get("/auth/me")
async def auth_me(request: Request, caller: Caller) -> dict[str, Any]:
    projects = await identity.projects_for(services(request).db, caller.user.id)
    return {**caller.user.public(), "auth": {"via": caller.via, "key_id": caller.key_id},
            "projects": [{"id": p.id, "slug": p.slug, "role": p.role} for p in projects]}


@router.get("/users/me")
async def users_me(request: Request, caller: Caller) -> dict[str, Any]:
    return {**caller.user.public(),
            "entitlements": await identity.entitlements(services(request).db, caller.user.id)}


# ---- platform keys ---------------------------------------------------------------------------------------------

@router.get("/platform-keys")
async def list_platform_keys(request: Request, caller: Caller, page_no: Page = 1,
                             per_page: PerPage = 20) -> dict[str, Any]:
    keys = await services(request).accounts.list_keys(caller, (KeyKind.platform,))
    return page([k.public() for k in keys], page_no, per_page)


@router.post("/platform-keys", status_code=201)
async def create_platform_key(body: CreatePlatformKey, request: Request, caller: Caller) -> dict[str, Any]:
    minted = await services(request).accounts.create_key(caller, KeyKind.platform, body.name,
                                                         expires_at=body.expires_at)
    return minted.public()


@router.delete("/platform-keys/{key_id}", status_code=204)
async def delete_platform_key(key_id: str, request: Request, caller: Caller) -> Response:
    await services(request).accounts.revoke_key(caller, key_id, (KeyKind.platform,))
    return Response(status_code=204)


# ---- projects and members -------------------------------------------------------------------------------------

@router.get("/projects")
async def list_projects(request: Request, caller: Caller, page_no: Page = 1,
                        per_page: PerPage = 20) -> dict[str, Any]:
    projects = await identity.projects_for(services(request).db, caller.user.id)
    return page([p.public() for p in projects], page_no, per_page)


@router.post("/projects", status_code=201)
async def create_project(body: CreateProject, request: Request, caller: Caller) -> dict[str, Any]:
    project = await services(request).accounts.create_project(caller, body.name, body.slug, body.description)
    return project.public()


@router.get("/projects/{project_id}")
async def get_project(ctx: PathProject) -> dict[str, Any]:
    return ctx.project.public()


@router.patch("/projects/{project_id}")
async def update_project(body: UpdateProject, request: Request, ctx: PathProject) -> dict[str, Any]:
    fields = body.model_dump(exclude_none=True)
    return (await services(request).accounts.update_project(ctx, fields)).public()


@router.get("/projects/{project_id}/members")
async def list_members(request: Request, ctx: PathProject, page_no: Page = 1,
                       per_page: PerPage = 50) -> dict[str, Any]:
    return page(await services(request).accounts.members(ctx), page_no, per_page)


@router.post("/projects/{project_id}/members", status_code=201)
async def add_member(body: AddMember, request: Request, ctx: PathProject) -> dict[str, Any]:
    return await services(request).accounts.add_member(ctx, body.email, body.role, body.name)


@router.delete("/projects/{project_id}/members/{user_id}", status_code=204)
async def remove_member(user_id: str, request: Request, ctx: PathProject) -> Response:
    await services(request).accounts.remove_member(ctx, user_id)
    return Response(status_code=204)


@router.delete("/projects/{project_id}/members", status_code=204)
async def remove_member_by_query(request: Request, ctx: PathProject, user_id: str | None = None) -> Response:
    if not user_id:
        raise InvalidRequest("Name the member to remove: ?user_id=usr_…", extra={"error_code": "VALIDATION_ERROR"})
    await services(request).accounts.remove_member(ctx, user_id)
    return Response(status_code=204)


# ---- BYOK LLM keys and credentials ---------------------------------------------------------------------------------

@router.get("/llm-keys")
async def list_llm_keys(request: Request, ctx: InProject) -> dict[str, Any]:
    rows = await services(request).accounts.list_secrets(ctx, "llm_key")
    return page(rows, 1, max(len(rows), 1))


@router.post("/llm-keys", status_code=201)
async def add_llm_key(body: AddLlmKey, request: Request, ctx: InProject) -> dict[str, Any]:
    return await services(request).accounts.add_secret(ctx, "llm_key", body.name or body.provider, body.key,
                                                       body.provider, body.base_url)


@router.delete("/llm-keys/{key_id}", status_code=204)
async def delete_llm_key(key_id: str, request: Request, ctx: InProject) -> Response:
    await services(request).accounts.delete_secret(ctx, "llm_key", key_id)
    return Response(status_code=204)


@router.get("/credentials")
async def list_credentials(request: Request, ctx: InProject) -> dict[str, Any]:
    rows = await services(request).accounts.list_secrets(ctx, "credential")
    # Seed 001: credentials are listed by name only.
    names = [{"id": r["id"], "name": r["name"], "type": r["provider"], "created_at": r["created_at"]} for r in rows]
    return page(names, 1, max(len(names), 1))


@router.post("/credentials", status_code=201)
async def add_credential(body: AddCredential, request: Request, ctx: InProject) -> dict[str, Any]:
    row = await services(request).accounts.add_secret(ctx, "credential", body.name, body.value, body.type)
    return {"id": row["id"], "name": row["name"], "type": row["provider"], "created_at": row["created_at"]}


@router.delete("/credentials/{cred_id}", status_code=204)
async def delete_credential(cred_id: str, request: Request, ctx: InProject) -> Response:
    await services(request).accounts.delete_secret(ctx, "credential", cred_id)
    return Response(status_code=204)
