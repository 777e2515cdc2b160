"""The agent tool loop, on the chat seam (runtime/inference/chat.py).

Typed chat events in, typed agent events out, in the shape of the OpenAI Agents SDK's runner: each round is one chat
call; when the model calls tools they run here (each bounded by a timeout) and their results go back as `tool`
messages for the next round; after `max_rounds` rounds of tool calls one last call runs without tools (as Dify's
last iteration), so the loop always ends with an answer. The first round uses the agent's
`tool_choice`; later rounds use `auto` (as the SDK resets a forced choice, so a forced call does not repeat
forever). A tool that raises, times out or gets arguments that do not parse is a failed `ToolResultEvent`, never a
crash. Closing the event iterator (a client that went away) closes the chat stream in progress, which stops the
generation, and ends the loop.

Tool-call markup never reaches the answer. A round without tools is free text, and a small model that has seen
calls in the conversation writes `<tool_call>...` again; text in `auto` may turn into markup after its first
character. Such markup is dropped from the deltas and the answer, and the run still ends with `Done` (Dify's
behaviour at its iteration limit: the last iteration's text is the answer), its `incomplete` set to
"max_tool_rounds" when the limit cut a call off. The answer may then be empty; the OpenAI Agents SDK would raise
MaxTurnsExceeded there instead, but the bundled SmolLM2 does this in most runs that use every round (five in
tests/test_agents.py), and their tool results are still worth a `done`.
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
from runtime.inference.constraints import CALL_CLOSE, CALL_OPEN
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
    # "max_tool_rounds" when the rounds ran out and the last answer was (partly) a call that was dropped, as the
    # Responses API's incomplete_details.reason; None otherwise
    incomplete: str | None = None


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


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (it may be the tag, cut by the stream)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class MarkupFilter:
    """Text in, text out without `<tool_call>...</tool_call>` (or an unclosed one, to the end): what may be the
    start of a tag is held back until the next piece decides it. `dropped` says whether any markup was seen."""

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False
        self.dropped = False

    def feed(self, text: str) -> str:
        self._pending += text
        out: list[str] = []
        while True:
            if self._inside:
                end = self._pending.find(CALL_CLOSE)
                if end < 0:
                    keep = _partial_tag(self._pending, CALL_CLOSE)
                    self._pending = self._pending[len(self._pending) - keep:]
                    return "".join(out)
                self._pending, self._inside = self._pending[end + len(CALL_CLOSE):], False
                continue
            start = self._pending.find(CALL_OPEN)
            if start >= 0:
                out.append(self._pending[:start])
                self._pending, self._inside, self.dropped = self._pending[start + len(CALL_OPEN):], True, True
                continue
            cut = len(self._pending) - _partial_tag(self._pending, CALL_OPEN)
            out.append(self._pending[:cut])
            self._pending = self._pending[cut:]
            return "".join(out)

    def finish(self) -> str:
        """What is still held back, at the end of the text (nothing when it ends inside markup)."""
        rest, self._pending = ("" if self._inside else self._pending), ""
        return rest


def without_markup(text: str) -> tuple[str, bool]:
    """(`text` without tool-call markup, whether there was any)."""
    markup = MarkupFilter()
    clean = markup.feed(text) + markup.finish()
    return (clean.strip() if markup.dropped else clean), markup.dropped


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
        markup = MarkupFilter()
        try:
            events = await chat.stream(call, await plans())
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, TextDelta) and event.text:
                        if text := markup.feed(event.text):
                            yield Delta(text)
                    elif isinstance(event, Final):
                        result = event.result
            if text := markup.finish():
                yield Delta(text)
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
            answer, dropped = without_markup(result.text)
            limited = dropped and bool(tools) and not offer
            if limited:
                log.info("agent: the model still called a tool after %d tool round(s); the call was dropped",
                         max_rounds)
            yield Done(answer, result.route.model, result.route.provider, input_tokens, output_tokens, made,
                       "max_tool_rounds" if limited else None)
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


__all__ = ["AgentEvent", "Delta", "Done", "Error", "MarkupFilter", "ToolCallEvent", "ToolResultEvent", "invoke", "run",
           "without_markup"]
