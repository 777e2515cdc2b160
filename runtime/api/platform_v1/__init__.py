"""`/api/v1`: the TARX platform API (seed 001), one router module per resource, included here.

Agents, RAG sources, MCP servers, skills, workflows, executions and webhooks join as modules of their own later.
"""

from __future__ import annotations

from fastapi import APIRouter

from runtime.api.platform_v1 import (
    agents,
    executions,
    identity,
    mcp,
    platform_keys,
    projects,
    rag,
    schedules,
    secrets,
    skills,
    tools,
    webhooks,
    workflows,
)

router = APIRouter(prefix="/api/v1", tags=["platform"])
for _module in (identity, platform_keys, projects, secrets, rag, mcp, agents, skills, tools, workflows, executions,
                schedules, webhooks):
    router.include_router(_module.router)

__all__ = ["router"]
