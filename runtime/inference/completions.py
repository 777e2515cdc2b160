"""Legacy text completions (`POST /v1/completions`): the request body, and each prompt as a call on the chat seam.

A prompt is evaluated as written, with no chat template (llama-server's behaviour): it travels as the one user
message of a `RawPromptRequest`, which `constraints.for_request` marks so `prompts.render` skips the template. On
a hosted or enterprise plane it arrives as an ordinary chat message. `logprobs: n` asks the chat seam for the
sampled tokens' logprobs and n alternatives (runtime/api/completions_v1.py writes them in the legacy shape).
`n` choices per prompt run as the chat seam's choices (sharing the prompt's KV); as at OpenAI, choice `j` of
prompt `p` has index `p * n + j`.
Options this runtime cannot honour (`echo`, `suffix`, `best_of`, token-id prompts) are refused with a 400 naming
them, never ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt, StrictStr, TypeAdapter

from runtime.auth.principal import Principal
from runtime.errors import InvalidRequest
from runtime.inference.chat import ChatService
from runtime.inference.constraints import RawPromptRequest
from runtime.inference.planes import Plan
from runtime.inference.results import ChatResult, Final, TextDelta
from runtime.inference.schemas import SAMPLING_FIELDS, ChatMessage, Sampling, Text

StrictFloat = Annotated[float, Field(strict=True)]
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions
MAX_PROMPTS = 16  # prompts in one request (each is its own call), and choices in all (prompts times n)


class CompletionRequest(Sampling):
    prompt: Text | list[Any]  # a string, or a list of them (one choice each); token-id prompts refused in `check`
    max_tokens: Annotated[StrictInt, Field(ge=1)] = DEFAULT_MAX_TOKENS
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None  # the sampled token's, and this many more
    # Accepted only at their no-op values (see `check`).
    echo: StrictBool = False
    suffix: StrictStr | None = None
    best_of: Annotated[StrictInt, Field(ge=1)] | None = None

    def check(self) -> None:
        """400 naming what this runtime cannot honour, rather than answering as if it had."""
        refused = [name for name, on in (("echo", self.echo), ("suffix", bool(self.suffix)),
                                         ("best_of", (self.best_of or 1) > 1)) if on]
        if refused:
            raise InvalidRequest(f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not supported by "
                                 "this runtime's /v1/completions; leave it unset", code="unsupported_parameter",
                                 extra={"param": refused[0]})
        if isinstance(self.prompt, list):
            if not all(isinstance(p, str) for p in self.prompt):
                raise InvalidRequest("prompt must be a string or a list of strings; token-id prompts are not "
                                     "supported", code="unsupported_parameter", extra={"param": "prompt"})
            if not 1 <= len(self.prompt) <= MAX_PROMPTS:
                raise InvalidRequest(f"prompt must list 1 to {MAX_PROMPTS} strings", code="invalid_prompt",
                                     extra={"param": "prompt"})
            for p in self.prompt:
                if not p.isascii():
                    TypeAdapter(Text).validate_python(p)  # unpaired surrogates cannot be tokenized
        if not all(self.prompts):
            raise InvalidRequest("prompt must not be empty", code="invalid_prompt", extra={"param": "prompt"})
        if len(self.prompts) * self.n > MAX_PROMPTS:
            raise InvalidRequest(f"n={self.n} choices for each of {len(self.prompts)} prompts is "
                                 f"{len(self.prompts) * self.n} choices; at most {MAX_PROMPTS} in one request",
                                 code="invalid_value", extra={"param": "n"})

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def chat_request(self, prompt: str) -> RawPromptRequest:
        """One prompt as a call on the chat seam."""
        return RawPromptRequest(
            messages=[ChatMessage(role="user", content=prompt)], max_tokens=self.max_tokens,
            logprobs=self.logprobs is not None, top_logprobs=self.logprobs or None,
            **self.model_dump(include=SAMPLING_FIELDS - {"stream_options"}))


@dataclass(frozen=True)
class Completed:
    """One choice's finished call (`index` is its place in the response: prompt * n + choice)."""

    index: int
    result: ChatResult


@dataclass(frozen=True)
class Piece:
    """Streamed text of choice `index`, with its tokens' logprobs entries when the request asked."""

    index: int
    text: str
    logprobs: list[dict[str, Any]] | None = None


CompletionEvent = Piece | Completed


async def complete(chat: ChatService, body: CompletionRequest, principal: Principal | None,
                   headers: Mapping[str, str]) -> tuple[str, list[ChatResult]]:
    """Every prompt run to its end; returns the completion id and one result per choice, in index order. Each
    prompt's choices are calls on the chat seam (each its own log row and route evidence)."""
    body.check()
    plans = [await chat.plan(principal, headers) for _ in body.prompts]
    try:
        async with asyncio.TaskGroup() as group:  # one failure stops the other prompts' calls
            tasks = [group.create_task(chat.choices(body.chat_request(p), plan))
                     for p, plan in zip(body.prompts, plans, strict=True)]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return _completion_id(plans[0]), [r for task in tasks for r in task.result()]


async def stream(chat: ChatService, body: CompletionRequest, principal: Principal | None,
                 headers: Mapping[str, str]) -> tuple[str, str, AsyncIterator[CompletionEvent]]:
    """Start the first prompt's call (so a refusal is still an error status) and return the completion id, the
    first call's evidence id and the events of every prompt, one after the other (a prompt's choices together)."""
    body.check()
    plan = await chat.plan(principal, headers)
    first = await chat.stream(body.chat_request(body.prompts[0]), plan)

    async def events() -> AsyncIterator[CompletionEvent]:
        for index, prompt in enumerate(body.prompts):
            source = first if index == 0 else await chat.stream(body.chat_request(prompt),
                                                                 await chat.plan(principal, headers))
            async with aclosing(source):
                async for event in source:
                    if isinstance(event, TextDelta) and (event.text or event.logprobs):
                        yield Piece(index * body.n + event.index, event.text, event.logprobs)
                    elif isinstance(event, Final):
                        yield Completed(index * body.n + event.index, event.result)

    return _completion_id(plan), plan.evidence_id, events()


def _completion_id(plan: Plan) -> str:
    return "cmpl-" + plan.call_id.removeprefix("chatcmpl-")
