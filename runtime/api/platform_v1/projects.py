"""`/api/v1/projects` and their members. Role checks (and their audit records) live in `Accounts`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Caller, PathProject, Svc
from runtime.api.platform_v1.shapes import Email, Name, Page, PerPage, page
from runtime.errors import InvalidRequest

router = APIRouter()
Description = Annotated[StrictStr, Field(max_length=2000)]


class CreateProject(Body):
    name: Name
    slug: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")] | None = None
    description: Description = ""


class UpdateProject(Body):
    name: Name | None = None
    description: Description | None = None


class AddMember(Body):
    email: Email
    role: Literal["owner", "admin", "editor", "member"] = "member"
    name: Name | None = None


@router.get("/projects")
async def list_projects(svc: Svc, caller: Caller, page_no: Page = 1, per_page: PerPage = 20) -> dict[str, Any]:
    projects = await svc.accounts.projects(caller)
    return page([p.public() for p in projects], page_no, per_page)


@router.post("/projects", status_code=201)
async def create_project(body: CreateProject, svc: Svc, caller: Caller) -> dict[str, Any]:
    project = await svc.accounts.create_project(caller, body.name, body.slug, body.description)
    return project.public()


@router.get("/projects/{project_id}")
async def get_project(ctx: PathProject) -> dict[str, Any]:
    return ctx.project.public()


@router.patch("/projects/{project_id}")
async def update_project(body: UpdateProject, svc: Svc, ctx: PathProject) -> dict[str, Any]:
    return (await svc.accounts.update_project(ctx, body.model_dump(exclude_none=True))).public()


@router.get("/projects/{project_id}/members")
async def list_members(svc: Svc, ctx: PathProject, page_no: Page = 1, per_page: PerPage = 50) -> dict[str, Any]:
    return page(await svc.accounts.members(ctx), page_no, per_page)


@router.post("/projects/{project_id}/members", status_code=201)
async def add_member(body: AddMember, svc: Svc, ctx: PathProject) -> dict[str, Any]:
    return await svc.accounts.add_member(ctx, body.email, body.role, body.name)


@router.delete("/projects/{project_id}/members/{user_id}", status_code=204)
async def remove_member(user_id: str, svc: Svc, ctx: PathProject) -> Response:
    await svc.accounts.remove_member(ctx, user_id)
    return Response(status_code=204)


@router.delete("/projects/{project_id}/members", status_code=204)
async def remove_member_by_query(svc: Svc, ctx: PathProject, user_id: str | None = None) -> Response:
    if not user_id:
        raise InvalidRequest("Name the member to remove: ?user_id=usr_…", extra={"error_code": "VALIDATION_ERROR"})
    await svc.accounts.remove_member(ctx, user_id)
    return Response(status_code=204)
