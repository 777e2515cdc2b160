"""Templates and conditions: Jinja2's sandboxed environment, never Python `eval`.

A template sees `input` (the execution's input), `trigger`, `prev` (the output of the node's one predecessor, or
a dict of them by node id when it has several), `nodes` (every finished node by id: `nodes["n-1"].output`) and
each finished node whose id is a Python identifier by name (`{{ node_1.output }}`). Undefined names fail loudly
(StrictUndefined), so does anything the sandbox refuses (`().__class__...`), and so do operations that would build
huge values (`"x" * 10**9`)."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MAX_SIZE = 1_000_000  # the longest string or list one operation may build
MAX_EXPONENT = 256
MAX_RENDER_SECONDS = 2.0  # a template runs on the event loop: one that loops for longer fails instead


class TemplateFailure(Exception):
    """A template or condition that does not compile or render; the message says where and why."""


class _Env(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise TemplateFailure(f"exponent {right} is above the limit of {MAX_EXPONENT}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_SIZE:
                    raise TemplateFailure(f"a repetition would build {len(seq) * n} items, above {MAX_SIZE}")
        return super().call_binop(context, operator, left, right)


ENV = _Env(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _too_long(signum: int, frame: Any) -> None:
    raise TemplateFailure(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


@contextlib.contextmanager
def _deadline() -> Iterator[None]:
    """Interrupt a runaway template (nested loops the sandbox cannot bound) with SIGALRM. Signals reach the main
    thread only, where the runtime's event loop runs; elsewhere (a test harness thread) there is no deadline."""
    if threading.current_thread() is not threading.main_thread() or not _own_alarm():
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, MAX_RENDER_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _own_alarm() -> bool:
    """SIGALRM is ours to use: nobody else handles it or has a timer running (pytest-timeout, when the runtime
    runs inside a test process, does both: then templates go without a deadline rather than break it)."""
    handler = signal.getsignal(signal.SIGALRM)
    if handler is _too_long:  # installed by us and nobody since: no one else expects the alarm
        return True
    if handler not in (signal.SIG_DFL, None) or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        return False
    signal.signal(signal.SIGALRM, _too_long)
    return True


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> Any:
    return ENV.from_string(source)


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        # A condition written as a template (`{{ x > 1 }}`, as in every other config field) means its expression;
        # Jinja alone would answer "expected token ':', got '}'" (it reads `{` as a dict literal).
        source = stripped[2:-2]
    return ENV.compile_expression(source, undefined_to_none=False)


def check_template(source: str) -> None:
    """Compile `source`; TemplateFailure says why it does not."""
    try:
        _template(source)
    except TemplateError as err:
        raise TemplateFailure(_describe(err)) from err


def check_expression(source: str) -> None:
    try:
        _expression(source)
    except TemplateError as err:
        raise TemplateFailure(_describe(err)) from err


def render(source: str, context: Mapping[str, Any]) -> str:
    """The template rendered as text."""
    try:
        with _deadline():
            return _template(source).render(context)
    except TemplateFailure:
        raise
    except Exception as err:  # the sandbox's SecurityError, StrictUndefined's errors, a filter's TypeError, ...
        raise TemplateFailure(_describe(err)) from err


def render_value(source: str, context: Mapping[str, Any]) -> Any:
    """A template that is exactly one `{{ expression }}` keeps the expression's value (a dict stays a dict);
    anything else renders as text."""
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        try:
            _expression(stripped[2:-2])
        except TemplateError:  # not a plain expression (whitespace control, ...): render it as text
            return render(source, context)
        return evaluate(stripped[2:-2], context)
    return render(source, context)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """A condition or expression's value."""
    try:
        with _deadline():
            value = _expression(source)(**context)
    except TemplateFailure:
        raise
    except Exception as err:
        raise TemplateFailure(_describe(err)) from err
    if isinstance(value, StrictUndefined):
        raise TemplateFailure(f"'{source.strip()}' is undefined")
    return value


def truthy(source: str, context: Mapping[str, Any]) -> bool:
    return bool(evaluate(source, context))


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


__all__ = ["ENV", "TemplateFailure", "check_expression", "check_template", "evaluate", "render", "render_value",
           "truthy"]
