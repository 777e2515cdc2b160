"""What an agent's chat stream carries (seed 002's SSE events), as typed values; no textual, no httpx here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tarx_console.client.errors import UnexpectedResponse


@dataclass(frozen=True)
class ChatDelta:
    """A piece of the answer's text, as the model produced it."""

    content: str


@dataclass(frozen=True)
class ChatToolCall:
    id: str
    name: str
    args: dict[str, Any] | str = field(default_factory=dict)  # a string when the model wrote arguments not JSON


@dataclass(frozen=True)
class ChatToolResult:
    id: str
    name: str
    result: str
    success: bool


@dataclass(frozen=True)
class ChatDone:
    input_tokens: int
    output_tokens: int
    model: str
    provider: str


@dataclass(frozen=True)
class ChatFailed:
    """The runtime ended the turn with an error (an `error` event); the stream closes after it."""

    detail: str


ChatEvent = ChatDelta | ChatToolCall | ChatToolResult | ChatDone | ChatFailed


def chat_event(name: str, data: str) -> ChatEvent | None:
    """One SSE event as its typed value; None for an event this console does not know (a newer runtime's)."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise UnexpectedResponse(f"the chat stream sent a {name!r} event that is not JSON") from exc
    try:
        if name == "delta":
            return ChatDelta(str(body["content"]))
        if name == "tool_call":
            return ChatToolCall(str(body["id"]), str(body["name"]), body.get("args") or {})
        if name == "tool_result":
            return ChatToolResult(str(body["id"]), str(body["name"]), str(body["result"]), bool(body["success"]))
        if name == "done":
            return ChatDone(int(body.get("input_tokens") or 0), int(body.get("output_tokens") or 0),
                            str(body.get("model") or ""), str(body.get("provider") or ""))
        if name == "error":
            return ChatFailed(str(body.get("detail") or "the agent failed"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnexpectedResponse(f"the chat stream sent a {name!r} event of an unknown shape") from exc
    return None
