"""Skills: prompt and model bundles an agent can reference. The built-in ones ship as data files
(`runtime/skills/builtin/*.toml`: id, name, description, prompt, model); an agent that references a skill gets
its prompt added to the agent's instructions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Skill:
    id: str
    name: str
    description: str
    prompt: str
    model: str | None
    builtin: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "prompt": self.prompt,
                "model": self.model, "builtin": self.builtin}


def load_builtin() -> list[Skill]:
    found = []
    for entry in sorted(resources.files("runtime.skills").joinpath("builtin").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text("utf-8"))
            found.append(Skill(id=data["id"], name=data["name"], description=data["description"],
                               prompt=data["prompt"].strip(), model=data.get("model")))
    return found


class SkillCatalog:
    """The skills this runtime offers (the built-in ones, read once)."""

    def __init__(self) -> None:
        self._skills = {s.id: s for s in load_builtin()}

    def list(self) -> list[Skill]:
        return list(self._skills.values())

    def get(self, skill_id: str) -> Skill | None:
        return self._skills.get(skill_id)


__all__ = ["Skill", "SkillCatalog", "load_builtin"]
