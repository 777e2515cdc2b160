"""Chat turns to prompt tokens, in a model's runner: the model's own chat template, or the Gemma 3 turn format.

The bundled Gemma GGUF carries no chat template, and llama-cpp-python would then fall back to a format the model
was never trained on, so Gemma's turns are written here by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import llama_cpp
from llama_cpp._internals import LlamaModel
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from runtime.errors import InvalidRequest

if TYPE_CHECKING:
    from runtime.inference.registry import PromptFormat

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


@functools.lru_cache(maxsize=16)
def _formatter(template: str, eos_token: str, bos_token: str) -> Jinja2ChatFormatter:
    # Compiling the Jinja template costs milliseconds; do it once per model, not per request.
    return Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)


def template_text(llm: LlamaModel, messages: list[dict[str, str]]) -> str:
    template = llama_cpp.llama_model_chat_template(llm.model, None)
    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = _formatter(
        template.decode("utf-8") if template else CHATML_TEMPLATE,
        llm.token_get_text(eos) if eos != -1 else "",
        llm.token_get_text(bos) if bos != -1 else "",
    )
    return formatter(messages=messages).prompt


def render(llm: LlamaModel, fmt: PromptFormat, plain: list[dict[str, str]], raw_prompt: bool) -> Prompt:
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


def raw(llm: LlamaModel, text: str) -> Prompt:
    """A legacy completion's prompt, as written (no chat template), as llama-server evaluates it: special tokens
    in the text are parsed, BOS added when the model wants one, generation ends at end-of-generation tokens."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    bos = llm.token_bos()
    if llm.add_bos_token() and bos != -1 and tokens[:1] != [bos]:
        tokens.insert(0, bos)
    if not tokens:
        raise InvalidRequest("the prompt is empty", code="invalid_prompt")
    return Prompt(tokens, {llm.token_eos()})
