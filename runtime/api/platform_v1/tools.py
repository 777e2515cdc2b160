"""`/api/v1/tools`: the built-in tools an agent may name in its `tools` (seed 001 has no such path; the console's
agent form reads it, so a console attached to a runtime of another version offers what that runtime has).

Each item has its name (what an agent's `tools` lists), description and the JSON schema of its arguments. Any
project member may read it. An MCP server's tools are listed with the server (`GET /api/v1/mcp`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.agents.tools import ToolSpec
from runtime.api.deps import Project, Svc
from runtime.api.platform_v1.shapes import page

router = APIRouter()


def tool_json(spec: ToolSpec) -> dict[str, Any]:
    return {"name": spec.name, "kind": "builtin", "description": spec.description, "parameters": spec.parameters}


@router.get("/tools")
async def list_tools(svc: Svc, ctx: Project) -> dict[str, Any]:
    items = [tool_json(s) for s in svc.agents.builtin_specs()]
    return page(items, 1, max(len(items), 1))
