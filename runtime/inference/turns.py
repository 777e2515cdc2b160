"""Chat messages as the plain turns a chat template takes, worked out in the API process before a request is queued.

System-like roles are merged, past tool calls and tool results written out as text, and the offered tools described
in the system turn, so the model's runner only applies the template (runtime/inference/prompts.py).
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InvalidRequest
from runtime.inference import constraints
from runtime.inference.constraints import Constraint


def for_prompt(messages: list[dict[str, Any]], constraint: Constraint) -> list[dict[str, str]]:
    """The turns to render; a legacy completion's prompt is one turn whose content is evaluated as written."""
    if constraint.raw_prompt:
        return [{"role": "user", "content": "".join(_text(m.get("content")) for m in messages)}]
    return normalise(messages, constraint)


def normalise(messages: list[dict[str, Any]], constraint: Constraint) -> list[dict[str, str]]:
    """Plain role/content messages: system-like roles merged, tool calls and results written out as text."""
    out: list[dict[str, str]] = []
    system_parts: list[str] = []
    for msg in messages:
        role, text = msg["role"], _text(msg.get("content"))
        if role in ("system", "developer"):
            system_parts.append(text)
            continue
        if role == "assistant" and msg.get("tool_calls"):
            text = (text + "\n" if text else "") + constraints.render_calls(msg["tool_calls"])
        elif role == "tool":
            # Few small models know a "tool" role; a user turn carrying the result reads the same to them.
            role, text = "user", f"Result of the function call: {text}"
        out.append({"role": role, "content": text})
    if constraint.tools:
        system_parts.append(constraints.tool_prompt(constraint.tools, constraint.tool_mode))
    if system_parts:
        out.insert(0, {"role": "system", "content": "\n\n".join(p for p in system_parts if p)})
    if not out or out[-1]["role"] == "system":
        raise InvalidRequest("messages must contain at least one user message", code="invalid_messages")
    return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)
