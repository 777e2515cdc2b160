"""`/api/v1/skills`: the skills agents can reference (seed 001: read-only; the built-in ones ship as data files)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.api.deps import Project, Svc
from runtime.api.platform_v1.shapes import page
from runtime.errors import NotFound

router = APIRouter()


@router.get("/skills")
async def list_skills(svc: Svc, ctx: Project) -> dict[str, Any]:
    items = [s.as_dict() for s in svc.skills.list()]
    return page(items, 1, max(len(items), 1))


@router.get("/skills/{skill_id}")
async def get_skill(skill_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    skill = svc.skills.get(skill_id)
    if skill is None:
        raise NotFound(f"Skill '{skill_id}' was not found.", extra={"error_code": "NOT_FOUND"})
    return skill.as_dict()
