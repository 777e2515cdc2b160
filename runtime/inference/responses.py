"""OpenAI's Responses API (`/v1/responses`) on the chat seam.

A request (input items, instructions, function tools, a text format, `previous_response_id`) becomes one
`ChatCompletionRequest`, run through `ChatService.complete`/`stream`, so it is planned, routed, logged and has its
route evidence and Joules like any chat call. The result is a typed `ResponseRecord`; stored (unless `store` is
false) per caller, so `GET /v1/responses/{id}` and a later `previous_response_id` find it. Wire JSON is built in
runtime/api/responses_v1.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest, NotFound
from runtime.inference.chat import ChatService
from runtime.inference.results import ChatResult, Final, RouteEvidence, TextDelta, ToolCall, ToolCalls, Usage
from runtime.inference.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    FunctionDef,
    JsonSchemaFormat,
    NamedFunction,
    NamedToolChoice,
    OpenAIBody,
    ResponseFormat,
    Text,
    ToolDef,
)
from runtime.inference.schemas import ToolCall as WireToolCall
from runtime.store import Database
from runtime.store import responses as store

StrictFloat = Annotated[float, Field(strict=True)]


# ---- request body ------------------------------------------------------------------------------------------------

class ContentPart(OpenAIBody):
    type: Literal["input_text", "output_text", "text"]
    text: Text


class MessageItem(OpenAIBody):
    """A message: `{"role": "user", "content": "..."}` (the SDK's easy form) or with `"type": "message"`."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Text | list[ContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(OpenAIBody):
    """A call the model made earlier (sent back by clients that keep their own history)."""

    type: Literal["function_call"]
    call_id: StrictStr
    name: Text  # Text: both are written into the prompt, so they must be encodable
    arguments: Text


class FunctionCallOutputItem(OpenAIBody):
    """The result of a function call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: StrictStr
    output: Text


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(OpenAIBody):
    type: Literal["function"]
    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: StrictBool | None = None


class FunctionChoice(OpenAIBody):
    type: Literal["function"]
    name: StrictStr


class TextFormat(OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr = "response"
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class TextConfig(OpenAIBody):
    format: TextFormat = Field(default_factory=lambda: TextFormat(type="text"))


class ResponsesRequest(OpenAIBody):
    model: StrictStr
    input: Text | Annotated[list[InputItem], Field(min_length=1)]
    instructions: Text | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[StrictFloat, Field(gt=0, le=1)] = 1.0
    seed: StrictInt | None = None  # not in OpenAI's API; honoured here as chat completions honour it
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    stream: StrictBool = False
    store: StrictBool = True
    previous_response_id: StrictStr | None = None
    metadata: dict[str, StrictStr] | None = None
    user: StrictStr | None = None


# ---- typed results -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputMessage:
    id: str
    text: str
    status: str  # completed | incomplete


@dataclass(frozen=True)
class OutputCall:
    id: str  # the item's id (fc_…); call_id is what a function_call_output answers
    call_id: str
    name: str
    arguments: str
    status: str


OutputItem = OutputMessage | OutputCall


@dataclass(frozen=True)
class ResponseRecord:
    """A finished (or stored) response. `route` is set on a fresh result, None when read back from the store."""

    id: str
    created_at: int
    model: str
    status: str  # completed | incomplete
    incomplete_reason: str | None  # max_output_tokens when the output was cut
    output: list[OutputItem]
    usage: Usage
    request: ResponsesRequest
    evidence_id: str | None
    route: RouteEvidence | None = None


@dataclass(frozen=True)
class Draft:
    """What a streamed response is known by before it finishes: its id, the id its message item will have."""

    id: str
    created_at: int
    message_id: str
    evidence_id: str
    request: ResponsesRequest


@dataclass(frozen=True)
class Done:
    """The last event of a streamed response."""

    record: ResponseRecord


ResponseEvent = TextDelta | ToolCalls | Done


def call_item_id(call: ToolCall) -> str:
    """The output item id of a function call, derived from its call id so a stream and its record agree."""
    return "fc_" + call.id.removeprefix("call_")


# ---- the service ------------------------------------------------------------------------------------------------

@dataclass
class _Turn:
    chat_request: ChatCompletionRequest
    conversation: list[dict[str, Any]]  # history + this input, without instructions


class ResponsesService:
    def __init__(self, chat: ChatService, db: Database) -> None:
        self.chat = chat
        self.db = db

    async def create(self, body: ResponsesRequest, principal: Principal | None, headers: Mapping[str, str]
                     ) -> ResponseRecord:
        """Run the response to its end (and store it unless `store` is false)."""
        turn = await self._turn(body, principal)
        plan = await self.chat.plan(principal, headers)
        result = await self.chat.complete(turn.chat_request, plan)
        record = _record(body, _response_id(plan.call_id), int(time.time()), _message_id(), result)
        await self._store(record, turn, principal)
        return record

    async def stream(self, body: ResponsesRequest, principal: Principal | None, headers: Mapping[str, str]
                     ) -> tuple[Draft, AsyncIterator[ResponseEvent]]:
        """Start the response (raising before any event when it cannot start) and return its draft and events:
        `TextDelta`s, `ToolCalls`, then `Done` with the record, stored by then."""
        turn = await self._turn(body, principal)
        plan = await self.chat.plan(principal, headers)
        events = await self.chat.stream(turn.chat_request, plan)
        draft = Draft(_response_id(plan.call_id), int(time.time()), _message_id(), plan.evidence_id, body)

        async def run() -> AsyncIterator[ResponseEvent]:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Final):
                        record = _record(body, draft.id, draft.created_at, draft.message_id, event.result)
                        await self._store(record, turn, principal)
                        yield Done(record)
                    else:
                        yield event

        return draft, run()

    async def get(self, response_id: str, principal: Principal | None) -> ResponseRecord:
        row = await store.get(self.db, response_id, _owner(principal))
        if row is None:
            raise NotFound(f"No response '{response_id}'.", code="response_not_found")
        return _from_row(row)

    async def delete(self, response_id: str, principal: Principal | None) -> None:
        if not await store.delete(self.db, response_id, _owner(principal)):
            raise NotFound(f"No response '{response_id}'.", code="response_not_found")

    async def _turn(self, body: ResponsesRequest, principal: Principal | None) -> _Turn:
        history: list[dict[str, Any]] = []
        if body.previous_response_id:
            row = await store.get(self.db, body.previous_response_id, _owner(principal))
            if row is None:
                raise InvalidRequest(f"Previous response with id '{body.previous_response_id}' not found.",
                                     code="previous_response_not_found", extra={"param": "previous_response_id"})
            history = row["conversation"]
        conversation = history + [m.model_dump(exclude_none=True) for m in _messages(body.input)]
        system = [ChatMessage(role="system", content=body.instructions)] if body.instructions else []
        messages = system + [ChatMessage.model_validate(m) for m in conversation]
        return _Turn(_chat_request(body, messages), conversation)

    async def _store(self, record: ResponseRecord, turn: _Turn, principal: Principal | None) -> None:
        if not record.request.store:
            return
        calls = [WireToolCall(id=o.call_id, function=FunctionCall(name=o.name, arguments=o.arguments))
                 for o in record.output if isinstance(o, OutputCall)]
        text = "".join(o.text for o in record.output if isinstance(o, OutputMessage))
        # An assistant turn with calls may have no text; one without calls keeps its (maybe empty) text.
        answer = ChatMessage(role="assistant", content=(text or None) if calls else text, tool_calls=calls or None)
        await store.insert(self.db, {
            "id": record.id, "user_id": _owner(principal), "created_at": record.created_at, "model": record.model,
            "status": record.status, "incomplete_reason": record.incomplete_reason,
            "previous_response_id": record.request.previous_response_id, "evidence_id": record.evidence_id,
            "request": record.request.model_dump(mode="json", by_alias=True, exclude_none=True),
            "output": [{"kind": "call" if isinstance(o, OutputCall) else "message", **vars(o)}
                       for o in record.output],
            "conversation": [*turn.conversation, answer.model_dump(exclude_none=True)],
            "usage": {"prompt_tokens": record.usage.prompt_tokens,
                      "completion_tokens": record.usage.completion_tokens},
        })


# ---- conversions -------------------------------------------------------------------------------------------------

def _owner(principal: Principal | None) -> str | None:
    return principal.user.id if principal is not None else None


def _response_id(call_id: str) -> str:
    return "resp_" + call_id.removeprefix("chatcmpl-")


def _message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _messages(items: str | list[InputItem]) -> list[ChatMessage]:
    """Input items as chat messages; consecutive function calls become one assistant message."""
    if isinstance(items, str):
        return [ChatMessage(role="user", content=items)]
    out: list[ChatMessage] = []
    for item in items:
        if isinstance(item, MessageItem):
            out.append(ChatMessage(role=item.role, content=item.text()))
        elif isinstance(item, FunctionCallItem):
            call = WireToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments))
            if out and out[-1].role == "assistant" and out[-1].tool_calls:
                out[-1].tool_calls.append(call)
            else:
                out.append(ChatMessage(role="assistant", tool_calls=[call]))
        else:
            out.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=item.output))
    return out


def _chat_request(body: ResponsesRequest, messages: list[ChatMessage]) -> ChatCompletionRequest:
    fmt = body.text.format
    response_format = None
    if fmt.type == "json_schema":
        if fmt.schema_ is None:
            raise InvalidRequest("text.format of type 'json_schema' needs a 'schema'", extra={"param": "text.format"})
        response_format = ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(
            name=fmt.name, description=fmt.description, schema=fmt.schema_, strict=fmt.strict))
    elif fmt.type == "json_object":
        response_format = ResponseFormat(type="json_object")
    tools = [ToolDef(type="function", function=FunctionDef(name=t.name, description=t.description,
                                                           parameters=t.parameters)) for t in body.tools or []]
    choice = body.tool_choice
    tool_choice = NamedToolChoice(type="function", function=NamedFunction(name=choice.name)) \
        if isinstance(choice, FunctionChoice) else choice
    return ChatCompletionRequest(
        model=body.model, messages=messages, max_tokens=body.max_output_tokens, temperature=body.temperature,
        top_p=body.top_p, seed=body.seed, stream=body.stream, response_format=response_format,
        tools=tools or None, tool_choice=tool_choice if tools else None,
        parallel_tool_calls=body.parallel_tool_calls, user=body.user)


def _record(body: ResponsesRequest, response_id: str, created_at: int, message_id: str, result: ChatResult
            ) -> ResponseRecord:
    cut = result.finish_reason == "length"
    status = "incomplete" if cut else "completed"
    output: list[OutputItem] = []
    if result.text or not result.tool_calls:
        output.append(OutputMessage(message_id, result.text, status))
    output.extend(OutputCall(call_item_id(c), c.id, c.name, c.arguments, status) for c in result.tool_calls)
    return ResponseRecord(response_id, created_at, body.model, status, "max_output_tokens" if cut else None, output,
                          result.usage, body, result.route.evidence_id, result.route)


def _from_row(row: dict[str, Any]) -> ResponseRecord:
    output: list[OutputItem] = []
    for item in row["output"]:
        kind = item.pop("kind")
        output.append(OutputCall(**item) if kind == "call" else OutputMessage(**item))
    usage = Usage(row["usage"]["prompt_tokens"], row["usage"]["completion_tokens"])
    return ResponseRecord(row["id"], row["created_at"], row["model"], row["status"], row["incomplete_reason"],
                          output, usage, ResponsesRequest.model_validate(row["request"]), row["evidence_id"])
