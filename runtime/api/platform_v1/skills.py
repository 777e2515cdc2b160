"""`/api/v1/skills`: the skills agents can reference, built-in (data files) and the project's own (seed 001 lists
both; it leaves making them to the TARX UI, which is the console here: it creates and deletes project skills
through POST and DELETE, editors and above)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc
from runtime.api.platform_v1.shapes import Name, page

router = APIRouter()


class CreateSkill(Body):
    name: Name
    description: Annotated[StrictStr, Field(max_length=2000)] = ""
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=20_000)]
    model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None


@router.get("/skills")
async def list_skills(svc: Svc, ctx: Project) -> dict[str, Any]:
    items = [s.as_dict() for s in await svc.skills.list_for(ctx.project.id)]
    return page(items, 1, max(len(items), 1))


@router.post("/skills", status_code=201)
async def create_skill(body: CreateSkill, svc: Svc, ctx: Project) -> dict[str, Any]:
    skill = await svc.skills.create(ctx, name=body.name, description=body.description, prompt=body.prompt,
                                    model=body.model)
    return skill.as_dict()


@router.get("/skills/{skill_id}")
async def get_skill(skill_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return (await svc.skills.require(ctx.project.id, skill_id)).as_dict()


@router.delete("/skills/{skill_id}", status_code=204)
async def delete_skill(skill_id: str, svc: Svc, ctx: Project) -> Response:
    await svc.skills.delete(ctx, skill_id)
    return Response(status_code=204)
