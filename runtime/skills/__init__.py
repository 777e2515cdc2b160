"""Skills: prompt and model bundles an agent can reference. The built-in ones ship as data files
(`runtime/skills/builtin/*.toml`: id, name, description, prompt, model); project skills are rows in the database
(runtime/store/skills.py), seen only inside their project. An agent that references a skill gets its prompt added
to the agent's instructions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from runtime.auth.access import WRITE, ProjectContext, require
from runtime.errors import Conflict, NotFound
from runtime.store import Database
from runtime.store import skills as store


@dataclass(frozen=True)
class Skill:
    id: str
    name: str
    description: str
    prompt: str
    model: str | None
    builtin: bool = True
    created_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "prompt": self.prompt,
                "model": self.model, "builtin": self.builtin, "created_at": self.created_at}


def _project_skill(row: dict[str, Any]) -> Skill:
    return Skill(id=row["id"], name=row["name"], description=row["description"], prompt=row["prompt"],
                 model=row["model"], builtin=False, created_at=row["created_at"])


def _not_found(skill_id: str) -> NotFound:
    return NotFound(f"Skill '{skill_id}' was not found.", extra={"error_code": "NOT_FOUND"})


def load_builtin() -> list[Skill]:
    found = []
    for entry in sorted(resources.files("runtime.skills").joinpath("builtin").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text("utf-8"))
            found.append(Skill(id=data["id"], name=data["name"], description=data["description"],
                               prompt=data["prompt"].strip(), model=data.get("model")))
    return found


class SkillCatalog:
    """The skills a project can use: the built-in ones (read once) and the project's own (`db`; None: built-in
    only)."""

    def __init__(self, db: Database | None = None) -> None:
        self.db = db
        self._skills = {s.id: s for s in load_builtin()}

    def list(self) -> list[Skill]:
        """The built-in skills."""
        return list(self._skills.values())

    def get(self, skill_id: str) -> Skill | None:
        """A built-in skill."""
        return self._skills.get(skill_id)

    async def project_skills(self, project_id: str) -> dict[str, Skill]:
        if self.db is None:
            return {}
        return {row["id"]: _project_skill(row) for row in await store.list_for(self.db, project_id)}

    async def list_for(self, project_id: str) -> list[Skill]:
        """Built-in skills, then the project's own."""
        return [*self.list(), *(await self.project_skills(project_id)).values()]

    async def find(self, project_id: str, skill_id: str) -> Skill | None:
        found = self.get(skill_id)
        if found is None and self.db is not None:
            row = await store.get(self.db, project_id, skill_id)
            found = _project_skill(row) if row else None
        return found

    async def create(self, ctx: ProjectContext, *, name: str, description: str, prompt: str,
                     model: str | None) -> Skill:
        """A project skill (editors and above); names are unique within the project and among built-in ones."""
        assert self.db is not None
        await require(self.db, ctx, WRITE, "skills.create")
        if any(s.name.lower() == name.lower() for s in self.list()):
            raise Conflict(f"'{name}' is a built-in skill's name.", extra={"error_code": "CONFLICT"})
        async with self.db.transaction() as tx:
            if await store.name_taken(tx, ctx.project.id, name):
                raise Conflict(f"A skill named '{name}' already exists in this project.",
                               extra={"error_code": "CONFLICT"})
            row = await store.insert(tx, project_id=ctx.project.id, name=name, description=description,
                                     prompt=prompt, model=model, created_by=ctx.principal.user.id)
        return _project_skill(row)

    async def delete(self, ctx: ProjectContext, skill_id: str) -> None:
        assert self.db is not None
        await require(self.db, ctx, WRITE, "skills.delete")
        if self.get(skill_id) is not None:
            raise Conflict("Built-in skills cannot be deleted.", extra={"error_code": "CONFLICT"})
        async with self.db.transaction() as tx:
            if not await store.delete(tx, ctx.project.id, skill_id):
                raise _not_found(skill_id)

    async def require(self, project_id: str, skill_id: str) -> Skill:
        found = await self.find(project_id, skill_id)
        if found is None:
            raise _not_found(skill_id)
        return found


__all__ = ["Skill", "SkillCatalog", "load_builtin"]
