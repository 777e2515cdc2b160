"""`/api/v1/agents`: agents inside the project context (seed 001), and chatting with one (seed 002).

Reading and running an agent needs any project role; creating, changing and deleting one needs editor. `chat`
streams Server-Sent Events (`delta`, `tool_call`, `tool_result`, `done`, `error`) unless `stream` is false, when it
answers with the same JSON as `test`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr
from sse_starlette import EventSourceResponse

from runtime.agents.loop import AgentEvent, Delta, Done, Error, ToolCallEvent, ToolResultEvent
from runtime.api.bodies import Body
from runtime.api.deps import Project, Svc, requires
from runtime.api.platform_v1.shapes import Name, Page, PerPage, page
from runtime.auth.access import WRITE, ProjectContext

router = APIRouter()

Text = Annotated[StrictStr, Field(max_length=100_000)]
Ids = Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=200)]], Field(max_length=100)]


class AgentFields(Body):
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    instructions: Text | None = None
    model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    execution_policy: Annotated[StrictStr, Field(max_length=50)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1, le=32768)] | None = None
    tool_choice: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    tools: Ids | None = None
    rag_source_ids: Ids | None = None
    skills: Ids | None = None
    # a project LLM key (llmkey_...) with a base_url: the agent's own BYOK upstream on the enterprise plane; "" clears
    llm_key_id: Annotated[StrictStr, Field(max_length=200)] | None = None


class CreateAgent(AgentFields):
    name: Name


class UpdateAgent(AgentFields):
    name: Name | None = None


class Turn(Body):
    role: Literal["user", "assistant"]
    content: Text


class AgentMessage(Body):
    message: Annotated[StrictStr, Field(min_length=1, max_length=100_000)]
    history: Annotated[list[Turn], Field(max_length=200)] = Field(default_factory=list)
    stream: StrictBool = True


def _given(body: AgentFields) -> dict[str, Any]:
    """The fields the body set (a null leaves a field as it is)."""
    return {k: v for k, v in body.model_dump(include=body.model_fields_set).items() if v is not None}


def result_json(event: Done | Error) -> dict[str, Any] | JSONResponse:
    if isinstance(event, Error):
        return JSONResponse({"detail": event.detail, "error_code": "LLM_ERROR", "status": 502}, status_code=502)
    return {"response": event.response, "model": event.model, "provider": event.provider,
            "input_tokens": event.input_tokens, "output_tokens": event.output_tokens, "tool_calls": event.tool_calls,
            **_incomplete(event)}


def _incomplete(event: Done) -> dict[str, str]:
    """Why an answer is incomplete (`max_tool_rounds`: the last round was cut off), beside seed 001's fields."""
    return {"incomplete": event.incomplete} if event.incomplete else {}


def sse_event(event: AgentEvent) -> dict[str, str]:
    if isinstance(event, Delta):
        name, data = "delta", {"content": event.content}
    elif isinstance(event, ToolCallEvent):
        name, data = "tool_call", {"id": event.call_id, "name": event.name, "args": event.args}
    elif isinstance(event, ToolResultEvent):
        name, data = "tool_result", {"id": event.call_id, "name": event.name, "result": event.result,
                                     "success": event.success}
    elif isinstance(event, Done):
        name, data = "done", {"input_tokens": event.input_tokens, "output_tokens": event.output_tokens,
                              "model": event.model, "provider": event.provider, **_incomplete(event)}
    else:
        name, data = "error", {"detail": event.detail}
    return {"event": name, "data": json.dumps(data, ensure_ascii=False, separators=(",", ":"))}


@router.get("/agents")
async def list_agents(svc: Svc, ctx: Project, page_no: Page = 1, per_page: PerPage = 20) -> dict[str, Any]:
    rows = await svc.agents.list(ctx)
    return page(rows, page_no, per_page)


@router.post("/agents", status_code=201)
async def create_agent(body: CreateAgent, svc: Svc,
                       ctx: Annotated[ProjectContext, requires(WRITE, "agent.create")]) -> dict[str, Any]:
    return await svc.agents.create(ctx, _given(body))


@router.get("/agents/{agent_id}")
async def get_agent(agent_id: str, svc: Svc, ctx: Project) -> dict[str, Any]:
    return await svc.agents.get(ctx, agent_id)


@router.put("/agents/{agent_id}")
async def update_agent(agent_id: str, body: UpdateAgent, svc: Svc,
                       ctx: Annotated[ProjectContext, requires(WRITE, "agent.update")]) -> dict[str, Any]:
    return await svc.agents.update(ctx, agent_id, _given(body))


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, svc: Svc,
                       ctx: Annotated[ProjectContext, requires(WRITE, "agent.delete")]) -> Response:
    await svc.agents.delete(ctx, agent_id)
    return Response(status_code=204)


@router.post("/agents/{agent_id}/test", response_model=None)
async def test_agent(agent_id: str, body: AgentMessage, svc: Svc, ctx: Project) -> dict[str, Any] | JSONResponse:
    history = [t.model_dump() for t in body.history]
    return result_json(await svc.agents.complete(ctx, agent_id, body.message, history))


@router.post("/agents/{agent_id}/chat", response_model=None)
async def chat_agent(agent_id: str, body: AgentMessage, svc: Svc, ctx: Project
                     ) -> dict[str, Any] | JSONResponse | EventSourceResponse:
    history = [t.model_dump() for t in body.history]
    if not body.stream:
        return result_json(await svc.agents.complete(ctx, agent_id, body.message, history))
    agent_events = await svc.agents.start(ctx, agent_id, body.message, history)

    async def events() -> AsyncIterator[dict[str, str]]:
        async with aclosing(agent_events):  # a client that went away stops the generation and the loop
            async for event in agent_events:
                yield sse_event(event)

    return EventSourceResponse(events(), sep="\n", ping=15, headers={"Cache-Control": "no-cache",
                                                                    "X-Accel-Buffering": "no"})
