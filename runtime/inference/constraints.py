"""Constrained decoding: response_format and tool calling compiled to llama.cpp GBNF grammars.

llama-cpp-python ignores `json_schema` response formats and only returns tool calls when one function is forced,
so both are compiled here. Tool calls use `<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`, the format
SmolLM2 was tuned on; with `auto`, the grammar lets the model either write a call or
plain text that does not start with `<`, so whatever it picks is well-formed.

llama-cpp-python's JSON-schema converter lets raw control characters (and, through patterns, quotes and
backslashes) into strings, which is not JSON; `json_safe` closes those character classes the way llama.cpp's own
converter writes them. The model's runner parses every grammar before the request takes a slot
(runtime/inference/batcher.py), so a schema the converter turns into a broken grammar is a 400.

This module runs in the API process, which never loads llama.cpp: the converter is a pure-Python module of
llama-cpp-python, loaded here without its package, whose `__init__` would map libllama and numpy (29 MiB).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.errors import InvalidRequest
from runtime.inference.results import ToolCall
from runtime.inference.schemas import ChatCompletionRequest, NamedToolChoice, ToolDef

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL_RE = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)


@dataclass(frozen=True)
class Constraint:
    grammar: str | None  # GBNF text, or None for free generation
    tools: list[ToolDef]  # tools offered to the model (empty: no tool prompt)
    tool_mode: str  # "none", "auto", "required" or "named"
    # True for legacy text completions (/v1/completions): the one user message is the prompt as written, with no
    # chat template around it (prompts.render).
    raw_prompt: bool = False


# Bounds checked before a schema is compiled: llama.cpp expands repetition counts into grammar rules, and a
# schema past these sizes made it crash the process (SIGSEGV) rather than fail the request.
SCHEMA_LIMITS = {"bytes": 64_000, "depth": 24, "maxLength": 2_000, "minLength": 2_000, "maxItems": 200,
                 "minItems": 200, "maxProperties": 200, "enum": 500}


def check_schema_bounds(schema: Any) -> None:
    """400 naming the limit when a JSON schema is too large to compile safely."""
    if len(json.dumps(schema, ensure_ascii=False)) > SCHEMA_LIMITS["bytes"]:
        raise InvalidRequest(f"the JSON schema exceeds {SCHEMA_LIMITS['bytes']} bytes", code="json_schema_too_large")
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > SCHEMA_LIMITS["depth"]:
            raise InvalidRequest(f"the JSON schema nests deeper than {SCHEMA_LIMITS['depth']} levels",
                                 code="json_schema_too_large")
        if isinstance(node, dict):
            for key in ("maxLength", "minLength", "maxItems", "minItems", "maxProperties"):
                value = node.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > SCHEMA_LIMITS[key]:
                    raise InvalidRequest(f"'{key}' may be at most {SCHEMA_LIMITS[key]} in a JSON schema",
                                         code="json_schema_too_large")
            if isinstance(node.get("enum"), list) and len(node["enum"]) > SCHEMA_LIMITS["enum"]:
                raise InvalidRequest(f"an enum may list at most {SCHEMA_LIMITS['enum']} values",
                                     code="json_schema_too_large")
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


# What a JSON string may hold unescaped (RFC 8259: no quote, no backslash, no U+0000..U+001F), as llama.cpp's own
# converter writes it; DEL is left out as llama.cpp does, since models only emit it in garbage.
_JSON_UNSAFE = r'"\\\x7F\x00-\x1F'
_JSON_CHAR_CLASS = f"[^{_JSON_UNSAFE}]"
_DOTALL = r"[\U00000000-\U0010FFFF]"  # the converter's `.` for dotall patterns


def json_safe(gbnf: str) -> str:
    """`gbnf` with every negated character class also excluding what JSON strings may not hold raw.

    In the converter's output, negated classes only occur inside JSON strings (its `char` rule and the `.` and
    `[^...]` of `pattern`s), so closing them there keeps every string valid JSON and still within the schema.
    """
    out: list[str] = []
    i, n = 0, len(gbnf)
    while i < n:
        c = gbnf[i]
        if c == "#":  # a comment runs to the end of the line
            end = gbnf.find("\n", i)
            end = n if end < 0 else end
            out.append(gbnf[i:end])
            i = end
        elif c == '"':  # a literal: copied as is
            j = i + 1
            while j < n and gbnf[j] != '"':
                j += 2 if gbnf[j] == "\\" else 1
            out.append(gbnf[i : j + 1])
            i = j + 1
        elif c == "[":
            j = i + 1
            while j < n and gbnf[j] != "]":
                j += 2 if gbnf[j] == "\\" else 1
            cls = gbnf[i : j + 1]
            if cls == _DOTALL:
                cls = _JSON_CHAR_CLASS
            elif cls.startswith("[^"):
                cls = f"[^{_JSON_UNSAFE}{cls[2:]}"
            out.append(cls)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@functools.cache
def _converter() -> ModuleType:
    """llama-cpp-python's `llama_grammar` (standard library only), without running `llama_cpp/__init__`."""
    if "llama_cpp.llama_grammar" in sys.modules:  # a runner, which has llama.cpp loaded anyway
        return sys.modules["llama_cpp.llama_grammar"]
    package = importlib.util.find_spec("llama_cpp")  # finds the package without importing it
    assert package is not None and package.submodule_search_locations, "llama-cpp-python is not installed"
    spec = importlib.util.spec_from_file_location(
        "tarx_llama_grammar", Path(package.submodule_search_locations[0]) / "llama_grammar.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _schema_grammar(schema: dict[str, Any], rule: str) -> str:
    """A GBNF for `schema` whose entry rule is `rule` instead of `root`, so grammars can be composed."""
    check_schema_bounds(schema)
    try:
        gbnf = json_safe(_converter().json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises bare exceptions on unsupported schema features
        raise InvalidRequest(f"unsupported JSON schema: {exc}", code="invalid_json_schema") from exc
    return re.sub(r"^root(\s*::=)", rf"{rule}\1", gbnf, flags=re.MULTILINE)


def _call_schema(tools: list[ToolDef]) -> dict[str, Any]:
    """One schema for `{"name": ..., "arguments": ...}` over the offered tools. Each tool's `$defs`/`definitions`
    (pydantic writes them) move to the root, where `#/$defs/...` references resolve, renamed per tool so two
    tools' definitions of the same name cannot clash."""
    defs: dict[str, Any] = {}
    variants = []
    for i, t in enumerate(tools):
        params = dict(t.function.parameters or {"type": "object"})
        renames: dict[str, str] = {}
        for key in ("$defs", "definitions"):
            for name, sub in (params.pop(key, None) or {}).items():
                renames[f"#/{key}/{name}"] = f"#/$defs/t{i}-{name}"
                defs[f"t{i}-{name}"] = sub
        variants.append({
            "type": "object",
            "properties": {"name": {"const": t.function.name}, "arguments": _renamed_refs(params, renames)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
        defs.update({k: _renamed_refs(v, renames) for k, v in defs.items() if k.startswith(f"t{i}-")})
    schema: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {**schema, "$defs": defs} if defs else schema


def _renamed_refs(node: Any, renames: dict[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        return {k: renames.get(v, v) if k == "$ref" and isinstance(v, str) else _renamed_refs(v, renames)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_renamed_refs(v, renames) for v in node]
    return node


class RawPromptRequest(ChatCompletionRequest):
    """A chat request whose one user message is a legacy completion's prompt (runtime/inference/completions.py),
    to be evaluated as written, without a chat template."""


def for_request(req: ChatCompletionRequest) -> Constraint:
    if isinstance(req, RawPromptRequest):
        return Constraint(None, [], "none", raw_prompt=True)
    tools = req.tools or []
    choice = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
    if tools and choice != "none":
        if isinstance(choice, NamedToolChoice):
            offered = [t for t in tools if t.function.name == choice.function.name]
            mode = "named"
        else:
            offered, mode = tools, choice
        # Own rule names the converter never writes (it names rules after schema keys, prefixed by their parents'),
        # so a parameter or $defs entry called `call` or `ws` cannot redefine them.
        call_rules = _schema_grammar(_call_schema(offered), "tarx-call")
        # Tiny models repeat a call they just made; several calls only when the caller asks for them.
        more = ' ("," tarx-ws tarx-call)*' if req.parallel_tool_calls else ""
        calls = f'"{CALL_OPEN}[" tarx-ws tarx-call{more} tarx-ws "]{CALL_CLOSE}"'
        ws = 'tarx-ws ::= [ \\t\\n]{0,8}'
        if mode == "auto":
            # Either a call, or text whose first character rules one out.
            root = f"root ::= {calls} | [^<\\x00] [^\\x00]*"
        else:
            root = f"root ::= {calls}"
        grammar = f"{root}\n{ws}\n{call_rules}"
        return Constraint(grammar, offered, mode)

    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return Constraint(None, [], "none")
    if fmt.type == "json_object":
        return Constraint(_converter().JSON_GBNF, [], "none")
    assert fmt.json_schema is not None
    return Constraint(_schema_grammar(fmt.json_schema.schema_, "root"), [], "none")


def tool_prompt(tools: list[ToolDef], mode: str) -> str:
    """System text naming the functions and the call format (the one SmolLM2 was tuned on)."""
    listing = json.dumps(
        [{"name": t.function.name, "description": t.function.description or "",
          "parameters": t.function.parameters} for t in tools],
        ensure_ascii=False,
    )
    must = (
        "You must call one of these functions."
        if mode in ("required", "named")
        else "If none of the functions can be used, answer in plain text instead."
    )
    return (
        "You are an expert in composing functions. You are given a question and a set of possible functions. "
        "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
        f"{must}\n\nYou have access to the following tools:\n<tools>{listing}</tools>\n\n"
        "To call functions, the output MUST strictly adhere to the following format, and NO other text MUST be "
        f"included:\n{CALL_OPEN}[\n{{\"name\": \"func_name1\", \"arguments\": "
        f"{{\"argument1\": \"value1\", \"argument2\": \"value2\"}}}}\n]{CALL_CLOSE}"
    )


def render_calls(calls: list[dict[str, Any]]) -> str:
    """An assistant message's past tool calls, written back in the format the model produces."""
    out = []
    for call in calls:
        fn = call["function"]
        try:
            args = json.loads(fn["arguments"])
        except (ValueError, TypeError):
            args = fn["arguments"]
        out.append({"name": fn["name"], "arguments": args})
    return f"{CALL_OPEN}{json.dumps(out, ensure_ascii=False)}{CALL_CLOSE}"


def looks_like_call(text: str) -> bool:
    """True once the first characters of an output can only be a tool call (auto mode forbids '<' for text)."""
    return text.lstrip().startswith("<")


def parse_calls(text: str) -> list[ToolCall]:
    """The tool calls in generated text; [] when it holds none.

    A call cut short (the output hit max_tokens inside the markup) comes back as far as it was written, as OpenAI
    returns a truncated call: its name, and its arguments as the partial JSON text; the markup itself never does.
    """
    objs: list[Any] = []
    for m in _CALL_RE.finditer(text):
        try:
            found = json.loads(m.group(1))
        except ValueError:
            continue
        objs.extend(found if isinstance(found, list) else [found])
    calls = [ToolCall(_call_id(), str(obj["name"]), json.dumps(obj.get("arguments", {}), ensure_ascii=False))
             for obj in objs if isinstance(obj, dict) and "name" in obj]
    if calls:
        return calls
    start = text.find(CALL_OPEN)
    if start < 0:
        return []
    return [ToolCall(_call_id(), name, args) for name, args in _partial_calls(text[start + len(CALL_OPEN):])]


def _call_id() -> str:
    return "call_" + secrets.token_hex(12)


_NAME_RE = re.compile(r'^\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*(?:,\s*"arguments"\s*:\s*)?', re.DOTALL)


def _partial_calls(body: str) -> list[tuple[str, str]]:
    """(name, arguments text) of each call object in a truncated `[{"name": ..., "arguments": ...}, ...`: the
    grammar writes `name` first, so a call counts once its name is complete."""
    objects: list[str] = []
    depth, in_string, escaped, begin = 0, False, False, -1
    for i, ch in enumerate(body):
        if in_string:
            if ch == '"' and not escaped:
                in_string = False
            escaped = not escaped and ch == "\\"
            continue
        if ch == '"':
            in_string, escaped = True, False
        elif ch in "{[":
            depth += 1
            if depth == 2 and ch == "{":
                begin = i
        elif ch in "}]":
            if depth == 2 and begin >= 0:
                objects.append(body[begin : i + 1])
                begin = -1
            depth -= 1
    if begin >= 0:
        objects.append(body[begin:])
    out: list[tuple[str, str]] = []
    for obj in objects:
        try:
            whole = json.loads(obj)
            out.append((str(whole["name"]), json.dumps(whole.get("arguments", {}), ensure_ascii=False)))
            continue
        except (ValueError, KeyError, TypeError):
            pass
        m = _NAME_RE.match(obj)
        if m is None:
            continue
        try:
            name = json.loads(f'"{m.group(1)}"')
        except ValueError:
            continue
        out.append((name, obj[m.end():] if "arguments" in m.group(0) else ""))
    return out


def settle(held: str, finish_reason: str) -> tuple[str, list[ToolCall], str]:
    """What output held back as a possible tool call becomes: (content, calls, finish_reason).

    The markup never becomes content: a call cut by max_tokens is returned as far as it was written with
    finish_reason `length`, as OpenAI returns a truncated call, and markup cut before a call's name was complete
    is dropped. Held text that is no call at all is content.
    """
    calls = parse_calls(held)
    if calls:
        return "", calls, "length" if finish_reason == "length" else "tool_calls"
    if looks_like_call(held):
        return "", [], finish_reason
    return held, [], finish_reason
