"""Agents inside a project: the record's rules (create, read, update, delete) and running one (the tool loop).

Plain arguments in, plain dicts and typed loop events out; the database only through runtime/store/agents.py and
inference only through the chat seam, planned for the caller (so every round counts in /v1/usage, attributed to
the agent's project, with its route evidence and Joules).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from runtime.agents import loop
from runtime.agents.loop import AgentEvent, Done, Error
from runtime.agents.tools import (
    RAG_SEARCH,
    RAG_SEARCH_SPEC,
    Tool,
    ToolError,
    ToolSpec,
    builtin_tools,
    rag_search_tool,
)
from runtime.auth.access import ProjectContext
from runtime.config import Settings
from runtime.errors import InvalidRequest, NotFound
from runtime.inference.chat import ChatService
from runtime.inference.planes import POLICIES, Plan
from runtime.inference.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionDef,
    NamedFunction,
    NamedToolChoice,
    ToolDef,
)
from runtime.mcp import McpServer, McpService, McpTool
from runtime.rag import RagService
from runtime.skills import Skill, SkillCatalog
from runtime.store import Database
from runtime.store import agents as store
from runtime.store import secrets as secret_store

DEFAULTS: dict[str, Any] = {"description": "", "instructions": "", "model": "tarx-local",
                            "execution_policy": "local", "temperature": 0.7, "max_tokens": 512,
                            "tool_choice": "auto", "tools": [], "rag_source_ids": [], "skills": [],
                            "llm_key_id": None}
CHOICES = ("auto", "required", "none")
MCP_PREFIX = "mcp:"  # an agent's `tools` entry `mcp:<server_id>:<tool_name>` names a tool of the project's MCP server


def function_name(tool_name: str, taken: set[str]) -> str:
    """A name the OpenAI function schema accepts (`^[A-Za-z0-9_-]{1,64}$`) for `tool_name`, unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", tool_name)[:60] or "tool"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


class AgentService:
    def __init__(self, settings: Settings, db: Database, chat: ChatService, skills: SkillCatalog, *,
                 rag: RagService | None = None, mcp: McpService | None = None) -> None:
        self.settings = settings
        self.db = db
        self.chat = chat
        self.skills = skills
        self.rag = rag
        self.mcp = mcp
        self.tools = builtin_tools(settings.agent_http_allow_private, settings.agent_tool_timeout_seconds)

    def builtin_names(self) -> list[str]:
        return sorted([*self.tools, RAG_SEARCH] if self.rag is not None else self.tools)

    def builtin_specs(self) -> list[ToolSpec]:
        """The built-in tools an agent may name, described (`GET /api/v1/tools`), in builtin_names' order."""
        specs = [t.spec() for t in self.tools.values()] + ([RAG_SEARCH_SPEC] if self.rag is not None else [])
        return sorted(specs, key=lambda s: s.name)

    # ---- the record ----------------------------------------------------------------------------------------------

    async def _check(self, ctx: ProjectContext, fields: dict[str, Any], *, model_changed: bool = True) -> None:
        builtin = self.builtin_names()
        refs = [t for t in fields["tools"] if t.startswith(MCP_PREFIX)]
        unknown = [t for t in fields["tools"] if t not in builtin and t not in refs]
        if unknown:
            raise InvalidRequest(f"unknown tools {unknown}; the built-in tools are {builtin}, and an MCP tool is "
                                 "named 'mcp:<server_id>:<tool_name>'")
        if refs:
            offered = {f"{MCP_PREFIX}{server.id}:{tool.name}" for server, tool in await self._mcp_tools(ctx)}
            missing_mcp = [t for t in refs if t not in offered]
            if missing_mcp:
                raise InvalidRequest(f"unknown MCP tools {missing_mcp}: no server of this project offers them")
        missing = [s for s in fields["skills"] if await self.skills.find(ctx.project.id, s) is None]
        if missing:
            raise InvalidRequest(f"unknown skills {missing}")
        if fields["execution_policy"] not in POLICIES:
            raise InvalidRequest(f"execution_policy must be one of {list(POLICIES)}")
        # A typo in a local model's name is refused at once, as OpenAI refuses an unknown model; a hosted or
        # enterprise plane's model is the upstream's to know. An agent whose model file went away later still
        # takes other edits (its runs fail with the model's error).
        if model_changed and POLICIES[fields["execution_policy"]][0] == "local":
            served = self.chat.local_chat_models()
            if fields["model"] not in served:
                raise InvalidRequest(f"model '{fields['model']}' is not a chat model this runtime serves; it serves "
                                     f"{served}")
        await self._check_llm_key(ctx, fields)
        choice = fields["tool_choice"]
        if choice not in CHOICES and choice not in fields["tools"]:
            raise InvalidRequest(f"tool_choice must be one of {list(CHOICES)} or one of the agent's tools")
        for key in ("tools", "rag_source_ids", "skills"):
            fields[key] = list(dict.fromkeys(fields[key]))

    async def _check_llm_key(self, ctx: ProjectContext, fields: dict[str, Any]) -> None:
        """An agent's own BYOK key: one of the project's LLM keys that names an endpoint, used on the enterprise
        plane (so the policy must be an enterprise one). "" clears it."""
        key_id = fields.get("llm_key_id") or None
        fields["llm_key_id"] = key_id
        if key_id is None:
            return
        keys = {k["id"]: k for k in await secret_store.list_for(self.db, ctx.project.id, "llm_key")}
        key = keys.get(key_id)
        if key is None:
            raise InvalidRequest(f"llm_key_id '{key_id}' is not an LLM key of this project (GET /api/v1/llm-keys)")
        if not key.get("base_url"):
            raise InvalidRequest(f"LLM key '{key_id}' names no base_url: an agent's upstream needs an endpoint")
        if POLICIES[fields["execution_policy"]][0] != "enterprise":
            raise InvalidRequest("an agent with an llm_key_id runs on the enterprise plane: set execution_policy "
                                 "to enterprise-private or enterprise-byo")

    async def create(self, ctx: ProjectContext, values: dict[str, Any]) -> dict[str, Any]:
        fields = {**DEFAULTS, **values}
        await self._check(ctx, fields)
        async with self.db.transaction() as tx:
            return await store.insert(tx, ctx.project.id, ctx.principal.user.id, fields)

    async def list(self, ctx: ProjectContext) -> list[dict[str, Any]]:
        return await store.list_for(self.db, ctx.project.id)

    async def get(self, ctx: ProjectContext, agent_id: str) -> dict[str, Any]:
        found = await store.get(self.db, ctx.project.id, agent_id)
        if found is None:
            raise NotFound(f"Agent '{agent_id}' was not found.", extra={"error_code": "NOT_FOUND"})
        return found

    async def update(self, ctx: ProjectContext, agent_id: str, values: dict[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            current = await store.get(tx, ctx.project.id, agent_id)
            if current is None:
                raise NotFound(f"Agent '{agent_id}' was not found.", extra={"error_code": "NOT_FOUND"})
            fields = {k: current[k] for k in store.FIELDS} | values
            await self._check(ctx, fields, model_changed=bool({"model", "execution_policy"} & values.keys()))
            await store.update(tx, ctx.project.id, agent_id, fields)
            found = await store.get(tx, ctx.project.id, agent_id)
        assert found is not None
        return found

    async def delete(self, ctx: ProjectContext, agent_id: str) -> None:
        async with self.db.transaction() as tx:
            if not await store.delete(tx, ctx.project.id, agent_id):
                raise NotFound(f"Agent '{agent_id}' was not found.", extra={"error_code": "NOT_FOUND"})

    # ---- running it ----------------------------------------------------------------------------------------------

    def instructions(self, agent: dict[str, Any], project_skills: Mapping[str, Skill] | None = None) -> str:
        """The agent's instructions followed by the prompts of its skills (built-in or `project_skills`)."""
        parts = [agent["instructions"].strip()]
        for skill_id in agent["skills"]:
            skill = self.skills.get(skill_id) or (project_skills or {}).get(skill_id)
            if skill is not None:
                parts.append(skill.prompt)
        return "\n\n".join(p for p in parts if p)

    async def _mcp_tools(self, ctx: ProjectContext) -> list[tuple[McpServer, McpTool]]:
        return await self.mcp.project_tools(ctx) if self.mcp is not None else []

    def _mcp_tool(self, ctx: ProjectContext, server_id: str, tool: McpTool, name: str) -> Tool:
        mcp = self.mcp
        assert mcp is not None
        limit = self.settings.agent_tool_timeout_seconds

        async def run(args: dict[str, Any]) -> str:
            outcome = await mcp.call_tool(ctx, server_id, tool.name, args, deadline_s=limit)
            if not outcome.success:
                raise ToolError(outcome.result_text)
            return outcome.result_text

        parameters = tool.input_schema if tool.input_schema.get("type") == "object" else {
            "type": "object", "properties": {}}
        return Tool(name, tool.description or f"The MCP tool {tool.name}.", parameters, run)

    async def resolve(self, ctx: ProjectContext, agent: dict[str, Any]) -> dict[str, Tool]:
        """The agent's `tools` entries that can run now -> their tools, each under a unique function name (an MCP
        tool its server no longer offers is left out)."""
        mcp = {f"{MCP_PREFIX}{server.id}:{tool.name}": (server.id, tool)
               for server, tool in (await self._mcp_tools(ctx)
                                    if any(t.startswith(MCP_PREFIX) for t in agent["tools"]) else [])}
        resolved: dict[str, Tool] = {}
        taken: set[str] = set()
        for ref in agent["tools"]:
            if ref == RAG_SEARCH and self.rag is not None:
                tool = rag_search_tool(self.rag, ctx.project.id, agent["rag_source_ids"])
            elif ref in self.tools:
                tool = self.tools[ref]
            elif ref in mcp:
                server_id, found = mcp[ref]
                tool = self._mcp_tool(ctx, server_id, found, function_name(found.name, taken | set(agent["tools"])))
            else:
                continue
            taken.add(tool.name)
            resolved[ref] = tool
        return resolved

    def request(self, agent: dict[str, Any], message: str, history: list[dict[str, str]],
                resolved: dict[str, Tool], project_skills: Mapping[str, Skill] | None = None
                ) -> tuple[ChatCompletionRequest, dict[str, Tool]]:
        tools = {tool.name: tool for tool in resolved.values()}
        messages = []
        system = self.instructions(agent, project_skills)
        if system:
            messages.append(ChatMessage(role="system", content=system))
        messages += [ChatMessage(role=turn["role"], content=turn["content"]) for turn in history]  # type: ignore[arg-type]
        messages.append(ChatMessage(role="user", content=message))
        choice: Any = agent["tool_choice"]
        if choice not in CHOICES:
            named = resolved.get(choice)
            choice = NamedToolChoice(type="function", function=NamedFunction(name=named.name)) if named else "auto"
        return ChatCompletionRequest(
            model=agent["model"], messages=messages, temperature=float(agent["temperature"]),
            max_tokens=int(agent["max_tokens"]), seed=0,
            tools=[ToolDef(type="function", function=FunctionDef(**t.definition())) for t in tools.values()] or None,
            tool_choice=choice if tools else None), tools

    async def start(self, ctx: ProjectContext, agent_id: str, message: str, history: list[dict[str, str]]
                    ) -> AsyncIterator[AgentEvent]:
        """Plan the run (a bad policy or a missing agent raises here, before any event) and return its events."""
        agent = await self.get(ctx, agent_id)
        headers = {"x-tarx-execution-policy": agent["execution_policy"], "x-tarx-project-id": ctx.project.id}
        if agent.get("llm_key_id"):  # the agent's own BYOK key on the enterprise plane
            headers["x-tarx-llm-key-id"] = agent["llm_key_id"]
        first: list[Plan] = [await self.chat.plan(ctx.principal, headers)]

        async def plans() -> Plan:  # one plan per round: a plan names one call (its log row and evidence)
            return first.pop() if first else await self.chat.plan(ctx.principal, headers)

        request, tools = self.request(agent, message, history, await self.resolve(ctx, agent),
                                      await self.skills.project_skills(ctx.project.id))
        return loop.run(self.chat, plans, request, tools, max_rounds=self.settings.agent_max_tool_rounds,
                        tool_timeout=self.settings.agent_tool_timeout_seconds)

    async def complete(self, ctx: ProjectContext, agent_id: str, message: str, history: list[dict[str, str]]
                       ) -> Done | Error:
        events = await self.start(ctx, agent_id, message, history)
        last: Done | Error = Error("the agent produced no answer")
        async for event in events:
            if isinstance(event, Done | Error):
                last = event
        return last
