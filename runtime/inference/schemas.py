"""OpenAI-compatible request bodies. Scalars are strict: a string where a number belongs is a 400, not a guess.

These are also the typed inputs of the chat seam (runtime/inference/chat.py): agents and workflows build a
`ChatCompletionRequest` in Python rather than JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

StrictFloat = Annotated[float, Field(strict=True)]
# Choices one request may ask for (`n`). OpenAI allows 128; here every choice is a generation of its own that takes
# a decode slot, so the bound stays near the slots a runner has (settings `parallel`, default 4) times two.
MAX_CHOICES = 8


def _encodable(text: str) -> str:
    # JSON can carry lone surrogates ("\ud800"); they cannot be encoded for the tokenizer.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holds an unpaired UTF-16 surrogate; send valid Unicode") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class OpenAIBody(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do: SDKs send fields we need not act on. `null`
    for an optional field means its default, as in the OpenAI API (SDKs and proxies send explicit nulls)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: v for k, v in data.items() if v is not None or (k in fields and fields[k].is_required())}


class TextPart(OpenAIBody):
    type: Literal["text"]
    text: Text


class FunctionCall(OpenAIBody):
    name: StrictStr
    arguments: StrictStr


class ToolCall(OpenAIBody):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a '{self.role}' message needs content")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDef(OpenAIBody):
    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(OpenAIBody):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(OpenAIBody):
    name: StrictStr


class NamedToolChoice(OpenAIBody):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(OpenAIBody):
    name: StrictStr = "response"
    description: StrictStr | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class StreamOptions(OpenAIBody):
    include_usage: StrictBool = False


class Sampling(OpenAIBody):
    """What chat and legacy completions requests share: the model and how to sample from it."""

    model: StrictStr
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[StrictFloat, Field(gt=0, le=1)] = 1.0
    seed: StrictInt | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_CHOICES)] = 1  # choices; the chat seam runs one generation each
    frequency_penalty: Annotated[StrictFloat, Field(ge=-2, le=2)] = 0.0
    presence_penalty: Annotated[StrictFloat, Field(ge=-2, le=2)] = 0.0
    user: StrictStr | None = None
    # The sampling surface (issue 16): OpenAI's logit_bias (token id -> bias), and llama-server's extras that
    # clients send through the SDK's extra_body.
    logit_bias: dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")],
                     Annotated[StrictFloat, Field(ge=-100, le=100)]] | None = None
    top_k: Annotated[StrictInt, Field(ge=0)] = 0
    min_p: Annotated[StrictFloat, Field(ge=0, le=1)] = 0.0
    repeat_penalty: Annotated[StrictFloat, Field(gt=0, le=10)] = 1.0

    def choice(self, index: int) -> Self:
        """The request for choice `index` of `n`: one generation, seeded `seed + index` when a seed is given, so
        choices differ when sampling and a request is reproducible (at temperature 0 every choice is the same)."""
        seed = None if self.seed is None else self.seed + index
        return self.model_copy(update={"n": 1, "seed": seed})

    @property
    def token_bias(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


SAMPLING_FIELDS = frozenset(Sampling.model_fields)


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names '{self.tool_choice.function.name}', which is not in tools")
        elif self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs at least one tool")
        if self.tools and self.response_format and self.response_format.type != "text":
            raise ValueError("tools and a JSON response_format cannot be combined")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


NonEmptyText = Annotated[Text, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class EmbeddingRequest(OpenAIBody):
    """`input` is a string, a list of strings, or token ids (one list, or a list of lists) in the model's own
    vocabulary, as llama-server takes them. Empty input is refused, as OpenAI does. Without `model`, the
    runtime's embedding model (settings `embedding_model`, tarx-embed) is used."""

    model: StrictStr | None = None
    input: (NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=2048)] | TokenIds
            | Annotated[list[TokenIds], Field(min_length=1, max_length=2048)])
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None

    @property
    def inputs(self) -> list[str | list[int]]:
        """One entry per vector to return: text, or token ids."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [list(value)]  # type: ignore[arg-type]
        return list(value)  # type: ignore[arg-type]
