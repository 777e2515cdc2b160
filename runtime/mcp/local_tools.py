"""The tools `tarx mcp` serves to desktop MCP clients, described once: the MCP server (tarx_console/mcp_server.py)
and `GET /openai-tools` (the same tools in OpenAI function-calling format, seed 000) both read them from here.

Every tool runs against the local runtime (127.0.0.1:11440 or the configured one); nothing is sent elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocalTool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


DEFAULT_CHAT_MODEL = "tarx-local"
DEFAULT_CHAT_MAX_TOKENS = 512

LOCAL_TOOLS: tuple[LocalTool, ...] = (
    LocalTool(
        "chat",
        "Ask a model served by the local TARX runtime (OpenAI-compatible chat completion, run on this machine) "
        "and get its answer as text.",
        _object({
            "message": {"type": "string", "description": "The user message to answer."},
            "model": {"type": "string", "description": f"A model id from /v1/models (default {DEFAULT_CHAT_MODEL})."},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 8192,
                           "description": f"Longest answer in tokens (default {DEFAULT_CHAT_MAX_TOKENS})."},
        }, ["message"])),
    LocalTool(
        "rag_search",
        "Search the RAG sources of the caller's project on the local TARX runtime (hybrid BM25 and vector "
        "retrieval) and return the best passages with their documents and scores.",
        _object({
            "query": {"type": "string", "description": "What to look for."},
            "k": {"type": "integer", "minimum": 1, "maximum": 50, "description": "How many passages (default 5)."},
            "source_id": {"type": "string", "description": "Search only this RAG source (default: all of them)."},
        }, ["query"])),
    LocalTool(
        "agent_chat",
        "Send a message to one of the project's agents on the local TARX runtime (its instructions, tools, RAG "
        "sources and skills apply) and get its answer, with the tools it called.",
        _object({
            "agent": {"type": "string", "description": "The agent's id (agt_...) or its name."},
            "message": {"type": "string", "description": "The user message."},
        }, ["agent", "message"])),
    LocalTool(
        "submit_job",
        "Submit a shell command as a job to the local TARX runtime's compute queue; a worker node runs it. "
        "Returns the job (its id and state).",
        _object({
            "command": {"type": "string", "description": "The shell command to run."},
            "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 86400,
                                "description": "Longest run in seconds (default 3600)."},
        }, ["command"])),
)


def openai_tools() -> list[dict[str, Any]]:
    """LOCAL_TOOLS as OpenAI function-calling tool definitions."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in LOCAL_TOOLS]
