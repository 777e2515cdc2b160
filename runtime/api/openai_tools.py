"""`GET /openai-tools` (seed 000): the tools `tarx mcp` serves, in OpenAI function-calling format, for agents that
implement the handlers themselves against this runtime (`base_url`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.api.deps import Svc
from runtime.mcp.local_tools import openai_tools

router = APIRouter(tags=["mcp"])


@router.get("/openai-tools")
async def list_openai_tools(svc: Svc) -> dict[str, Any]:
    return {"object": "list", "tools": openai_tools(), "base_url": svc.settings.base_url}
