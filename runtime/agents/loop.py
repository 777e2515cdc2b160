"""The agent tool loop, on the chat seam (runtime/inference/chat.py).

Typed chat events in, typed agent events out, in the shape of the OpenAI Agents SDK's runner: each round is one
chat call; when the model calls tools they run here (each bounded by a timeout) and their results go back as
`tool` messages for the next round; after `max_rounds` rounds of tool calls one last call runs without tools, so
the loop always ends with an answer. The first round uses the agent's `tool_choice`; later rounds use `auto` (as
the SDK resets a forced choice, so a forced call does not repeat forever). A tool that raises, times out or gets
arguments that do not parse is a failed `ToolResultEvent`, never a crash. Closing the event iterator (a client
that went away) closes the chat stream in progress, which stops the generation, and ends the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from runtime.agents.tools import Tool, ToolError
from runtime.errors import TarxError
from runtime.inference.chat import ChatService
from runtime.inference.planes import Plan
from runtime.inference.results import Final, TextDelta
from runtime.inference.schemas import ChatCompletionRequest, ChatMessage, FunctionCall
from runtime.inference.schemas import ToolCall as WireToolCall

log = logging.getLogger("tarx.agents")


@dataclass(frozen=True)
class Delta:
    content: str


@dataclass(frozen=True)
class ToolCallEvent:
    call_id: str
    name: str
    args: Any  # the parsed arguments; the raw text when they did not parse


@dataclass(frozen=True)
class ToolResultEvent:
    call_id: str
    name: str
    result: str
    success: bool


@dataclass(frozen=True)
class Done:
    response: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Error:
    detail: str


AgentEvent = Delta | ToolCallEvent | ToolResultEvent | Done | Error


def _parse(arguments: str) -> tuple[Any, str | None]:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as err:
        return arguments, f"the arguments are not JSON: {err}"
    if not isinstance(args, dict):
        return args, "the arguments must be a JSON object"
    return args, None


async def invoke(tool: Tool | None, name: str, args: Any, problem: str | None, limit_s: float) -> tuple[str, bool]:
    """Run one tool call: (result text, success)."""
    if tool is None:
        return f"unknown tool '{name}'", False
    if problem is not None:
        return problem, False
    try:
        async with asyncio.timeout(limit_s):
            return await tool.run(args), True
    except TimeoutError:
        return f"the tool timed out after {limit_s:g} s", False
    except ToolError as err:
        return str(err), False
    except Exception as err:  # a tool's bug must not end the conversation
        log.warning("tool %s raised", name, exc_info=True)
        return f"the tool failed: {type(err).__name__}: {err}", False


async def run(chat: ChatService, plans: Callable[[], Awaitable[Plan]], request: ChatCompletionRequest,
              tools: dict[str, Tool], *, max_rounds: int, tool_timeout: float) -> AsyncIterator[AgentEvent]:
    """Run the agent to its answer; the last event is `Done` or `Error`. `plans` gives each round's plan (a plan
    names one call: its log row and route evidence)."""
    messages = list(request.messages)
    choice = request.tool_choice
    input_tokens = output_tokens = 0
    made: list[dict[str, Any]] = []
    for round_no in range(max_rounds + 1):
        offer = bool(tools) and round_no < max_rounds
        call = request.model_copy(update={"messages": messages, "tools": request.tools if offer else None,
                                          "tool_choice": choice if offer else None})
        result = None
        try:
            events = await chat.stream(call, await plans())
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, TextDelta) and event.text:
                        yield Delta(event.text)
                    elif isinstance(event, Final):
                        result = event.result
        except TarxError as err:
            yield Error(err.message)
            return
        except Exception as err:  # the stream still ends with an event the client can read
            log.exception("agent round failed")
            yield Error(f"internal error: {type(err).__name__}")
            return
        if result is None:
            yield Error("the model's stream ended without a result")
            return
        input_tokens += result.usage.prompt_tokens
        output_tokens += result.usage.completion_tokens
        if not result.tool_calls or not offer:
            yield Done(result.text, result.route.model, result.route.provider, input_tokens, output_tokens, made)
            return
        messages.append(ChatMessage(role="assistant", content=result.text or None, tool_calls=[
            WireToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
            for c in result.tool_calls]))
        for tool_call in result.tool_calls:
            args, problem = _parse(tool_call.arguments)
            if result.finish_reason == "length":  # a call cut by max_tokens is never run half-written
                problem = "the call was cut short by max_tokens and was not run"
            yield ToolCallEvent(tool_call.id, tool_call.name, args)
            text, ok = await invoke(tools.get(tool_call.name), tool_call.name, args, problem, tool_timeout)
            yield ToolResultEvent(tool_call.id, tool_call.name, text, ok)
            made.append({"name": tool_call.name, "args": args, "result": text, "success": ok})
            messages.append(ChatMessage(role="tool", tool_call_id=tool_call.id, content=text))
        choice = "auto"
    raise AssertionError("unreachable: the last round offers no tools")  # pragma: no cover


__all__ = ["AgentEvent", "Delta", "Done", "Error", "ToolCallEvent", "ToolResultEvent", "invoke", "run"]
