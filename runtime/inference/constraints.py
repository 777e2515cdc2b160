"""Constrained decoding: response_format and tool calling compiled to llama.cpp GBNF grammars.

llama-cpp-python ignores `json_schema` response formats and only returns tool calls when one function is forced,
so both are compiled here. Tool calls use `<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>`, the format
SmolLM2 was tuned on; with `auto`, the grammar lets the model either write a call or
plain text that does not start with `<`, so whatever it picks is well-formed.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

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


def _schema_grammar(schema: dict[str, Any], rule: str) -> str:
    """A GBNF for `schema` whose entry rule is `rule` instead of `root`, so grammars can be composed."""
    check_schema_bounds(schema)
    try:
        gbnf = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare exceptions on unsupported schema features
        raise InvalidRequest(f"unsupported JSON schema: {exc}", code="invalid_json_schema") from exc
    return re.sub(r"^root(\s*::=)", rf"{rule}\1", gbnf, flags=re.MULTILINE)


def _call_schema(tools: list[ToolDef]) -> dict[str, Any]:
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def for_request(req: ChatCompletionRequest) -> Constraint:
    tools = req.tools or []
    choice = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
    if tools and choice != "none":
        if isinstance(choice, NamedToolChoice):
            offered = [t for t in tools if t.function.name == choice.function.name]
            mode = "named"
        else:
            offered, mode = tools, choice
        call_rules = _schema_grammar(_call_schema(offered), "call")
        # Tiny models repeat a call they just made; several calls only when the caller asks for them.
        more = ' ("," ws call)*' if req.parallel_tool_calls else ""
        calls = f'"{CALL_OPEN}[" ws call{more} ws "]{CALL_CLOSE}"'
        ws = 'ws ::= [ \\t\\n]{0,8}'
        if mode == "auto":
            # Either a call, or text whose first character rules one out.
            root = f"root ::= {calls} | [^<\\x00] [^\\x00]*"
        else:
            root = f"root ::= {calls}"
        return Constraint(f"{root}\n{ws}\n{call_rules}", offered, mode)

    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return Constraint(None, [], "none")
    if fmt.type == "json_object":
        return Constraint(JSON_GBNF, [], "none")
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
    """The tool calls in generated text; [] when the text holds no complete call."""
    objs: list[Any] = []
    for m in _CALL_RE.finditer(text):
        try:
            found = json.loads(m.group(1))
        except ValueError:
            continue
        objs.extend(found if isinstance(found, list) else [found])
    return [ToolCall("call_" + secrets.token_hex(12), str(obj["name"]),
                     json.dumps(obj.get("arguments", {}), ensure_ascii=False))
            for obj in objs if isinstance(obj, dict) and "name" in obj]
