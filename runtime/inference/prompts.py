"""Chat turns to prompt tokens, in a model's runner: the model's own chat template, or the Gemma 3 turn format.

The bundled Gemma GGUF carries no chat template, and llama-cpp-python would then fall back to a format the model
was never trained on, so Gemma's turns are written here by hand.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from runtime.errors import InvalidRequest

if TYPE_CHECKING:
    from runtime.inference.registry import PromptFormat
    from runtime.inference.weights import Weights

# Used when a GGUF has no template of its own and is not a model we know: ChatML, the commonest format.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Prompt:
    tokens: list[int]
    stop_token_ids: set[int] = field(default_factory=set)


def gemma3_text(messages: list[dict[str, str]]) -> str:
    """Gemma 3 turns: `<start_of_turn>user … <end_of_turn>`, the system text folded into the first user turn."""
    system = ""
    turns: list[str] = []
    for msg in messages:
        if msg["role"] == "system":
            system = msg["content"]
            continue
        content = msg["content"]
        if system and msg["role"] == "user":
            content, system = f"{system}\n\n{content}", ""
        role = "model" if msg["role"] == "assistant" else "user"
        turns.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    return "".join(turns) + "<start_of_turn>model\n"


class _GenerationTag(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}` tag (it marks assistant text for training): rendered as its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> NoReturn:
    raise InvalidRequest(f"the model's chat template refused the messages: {message}", code="invalid_messages")


@functools.lru_cache(maxsize=16)
def _compiled(template: str) -> jinja2.Template:
    """A GGUF chat template in the environment Hugging Face's transformers renders them in (sandboxed, trimmed
    blocks, loop controls, JSON as it writes it). Compiling costs milliseconds: once per model, not per request.
    llama-cpp-python's formatter does the same, but its module imports the whole high-level package (see binding.py)."""
    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    return env.from_string(template)


def template_text(llm: Weights, messages: list[dict[str, str]]) -> str:
    eos, bos = llm.token_eos(), llm.token_bos()
    try:
        return _compiled(llm.chat_template() or CHATML_TEMPLATE).render(
            messages=messages, add_generation_prompt=True, raise_exception=_raise_exception,
            eos_token=llm.token_get_text(eos) if eos != -1 else "",
            bos_token=llm.token_get_text(bos) if bos != -1 else "",
            strftime_now=lambda fmt: datetime.now().strftime(fmt), tools=None, tool_choice=None, functions=None,
            function_call=None)
    except jinja2.TemplateError as exc:  # e.g. a template that wants roles to alternate: this request's fault
        raise InvalidRequest(f"the model's chat template could not render the messages: {exc}",
                             code="invalid_messages") from None


def render(llm: Weights, fmt: PromptFormat, plain: list[dict[str, str]], raw_prompt: bool) -> Prompt:
    """Prompt tokens for turns made by runtime/inference/turns.py."""
    if raw_prompt:
        return raw(llm, plain[0]["content"])
    if fmt == "gemma3":
        text = gemma3_text(plain)
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        end_of_turn = llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)
        stop_ids = set(end_of_turn) if len(end_of_turn) == 1 else set()
        return Prompt(tokens, stop_ids)
    text = template_text(llm, plain)
    # The template writes its own special tokens; add BOS only when the model wants one and it is missing.
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    bos = llm.token_bos()
    if llm.add_bos_token() and bos != -1 and tokens[:1] != [bos]:
        tokens.insert(0, bos)
    return Prompt(tokens, {llm.token_eos()})


def raw(llm: Weights, text: str) -> Prompt:
    """A legacy completion's prompt, as written (no chat template), as llama-server evaluates it: special tokens
    in the text are parsed, BOS added when the model wants one, generation ends at end-of-generation tokens."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    bos = llm.token_bos()
    if llm.add_bos_token() and bos != -1 and tokens[:1] != [bos]:
        tokens.insert(0, bos)
    if not tokens:
        raise InvalidRequest("the prompt is empty", code="invalid_prompt")
    return Prompt(tokens, {llm.token_eos()})
