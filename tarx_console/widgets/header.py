"""The console's header: where it is attached, the runtime's health and version, the view and its filter."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True)
class Connection:
    where: str = "connecting…"  # e.g. "local · in-process · 127.0.0.1:11440"
    state: str = "connecting"  # connecting | ok | unavailable | lost
    version: str = ""
    detail: str = ""
    project: str = ""  # the project views act in (slug)


STATE_COLOUR = {"ok": "success", "unavailable": "warning", "lost": "error", "connecting": "secondary"}
STATE_MARK = {"ok": "● healthy", "unavailable": "● degraded", "lost": "✖ connection lost", "connecting": "… connecting"}


class ConsoleHeader(Static):
    DEFAULT_CSS = """
    ConsoleHeader { dock: top; height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def __init__(self, title: str) -> None:
        super().__init__(id="header")
        self.view_title = title
        self.filter_text = ""

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self.show, init=True)
        self.watch(self.app, "theme", lambda _: self.show(self.app.connection), init=False)  # type: ignore[attr-defined]

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.show(self.app.connection)  # type: ignore[attr-defined]

    def show(self, conn: Connection) -> None:
        """One line, most important first, so a narrow terminal cuts only the tail: the view and its filter, the
        state, the project, then what went wrong, the version and where the runtime is."""
        colour = getattr(self.app.current_theme, STATE_COLOUR.get(conn.state, "secondary"), None) or ""
        state_style = f"bold {colour}".strip()
        text = Text.assemble(("tarx", "bold"), " │ ", (self.view_title, "bold"))
        if self.filter_text:
            text.append(f" /{self.filter_text}", style="reverse")
        text.append(" │ ")
        text.append(STATE_MARK.get(conn.state, conn.state), style=state_style)
        if conn.project:
            text.append(f"  project {conn.project}", style="bold")
        if conn.detail:
            text.append(f"  {conn.detail}", style="italic")
        if conn.version:
            text.append(f"  v{conn.version}")
        text.append(f"  {conn.where}", style="dim")
        text.truncate(max(self.size.width - 2, 20) if self.size.width else 400, overflow="ellipsis")
        self.update(text)

    def on_resize(self) -> None:
        self.show(self.app.connection)  # type: ignore[attr-defined]
