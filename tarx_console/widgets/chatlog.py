"""A conversation with an agent, as oterm shows one: your messages, the agent's answers rendered as Markdown while
their tokens stream in, and its tool calls and their results inline, in the order they happened."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from rich.markup import escape
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownStream

EntryKind = Literal["user", "assistant", "tool_call", "tool_result", "note", "error"]
RESULT_CHARS = 400  # a tool result longer than this is cut in the log (the model saw all of it)


@dataclass
class Entry:
    """One thing shown in the log; a conversation is a list of them, kept to show it again later."""

    kind: EntryKind
    text: str
    ok: bool = True


def args_text(args: dict[str, Any] | str) -> str:
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, separators=(", ", ": "))


def short(text: str, limit: int = RESULT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ChatLog(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    ChatLog { height: 1fr; padding: 0 1; }
    ChatLog > .user { margin: 1 0 0 8; padding: 0 1; background: $boost; border-left: thick $accent; }
    ChatLog > Markdown { margin: 1 0 0 0; padding: 0 1; border-left: thick $success; }
    ChatLog > Markdown > *:last-child { margin-bottom: 0; }
    ChatLog > .tool { color: $text-muted; padding: 0 1; margin: 1 0 0 0; }
    ChatLog > .result { margin: 0; }
    ChatLog > .tool-failed { color: $warning; }
    ChatLog > .note { color: $text-muted; text-style: italic; padding: 0 1; }
    ChatLog > .error { color: $error; text-style: bold; padding: 0 1; margin-top: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[Entry] = []
        self._reply: Markdown | None = None
        self._stream: MarkdownStream | None = None
        self._reply_text = ""

    # ---- what the screen calls ---------------------------------------------------------------------------------

    async def replay(self, entries: list[Entry]) -> None:
        """Show an earlier conversation again (the log was closed and opened)."""
        for entry in entries:
            if entry.kind == "assistant":
                await self.mount(Markdown(entry.text))
                self.entries.append(entry)
            else:
                await self._line(entry)
        self.scroll_end(animate=False)

    async def user(self, text: str) -> None:
        await self._line(Entry("user", text))

    async def delta(self, fragment: str) -> None:
        """Append a piece of the answer; it is rendered as Markdown as it grows."""
        if self._stream is None:
            self._reply = Markdown()
            await self.mount(self._reply)
            self._stream = Markdown.get_stream(self._reply)
            self._reply_text = ""
        self._reply_text += fragment
        await self._stream.write(fragment)
        self.scroll_end(animate=False)

    async def tool_call(self, name: str, args: dict[str, Any] | str) -> None:
        await self.end_reply()  # a tool row splits the answer: what follows it comes after it
        await self._line(Entry("tool_call", f"⚙ {name}({args_text(args)})"))

    async def tool_result(self, name: str, result: str, success: bool) -> None:
        mark = "↳" if success else "✗"
        await self._line(Entry("tool_result", f"{mark} {name}: {short(result)}", ok=success))

    async def note(self, text: str) -> None:
        await self._line(Entry("note", text))

    async def error(self, text: str) -> None:
        await self.end_reply()
        await self._line(Entry("error", text))

    async def end_reply(self) -> str:
        """Finish the answer being streamed (all of it rendered); its text, '' when none was streaming."""
        stream, self._stream = self._stream, None
        if stream is None:
            return ""
        await stream.stop()
        text, self._reply_text = self._reply_text, ""
        self.entries.append(Entry("assistant", text))
        self.scroll_end(animate=False)
        return text

    @property
    def streaming_text(self) -> str:
        return self._reply_text

    # ---- inside ------------------------------------------------------------------------------------------------

    async def _line(self, entry: Entry) -> None:
        classes = {"user": "user", "tool_call": "tool", "note": "note", "error": "error",
                   "tool_result": "tool result" if entry.ok else "tool result tool-failed"}.get(entry.kind, "note")
        await self.mount(Static(escape(entry.text), classes=classes))
        self.entries.append(entry)
        self.scroll_end(animate=False)
