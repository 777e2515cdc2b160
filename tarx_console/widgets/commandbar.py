"""The k9s-style prompt at the bottom: `:view` with completion, or `/filter` for the current table."""

from __future__ import annotations

from textual.binding import Binding
from textual.suggester import SuggestFromList
from textual.widgets import Input


class CommandBar(Input):
    BINDINGS = [Binding("tab", "complete", "Complete", show=False, id="prompt.complete")]
    DEFAULT_CSS = """
    CommandBar { dock: bottom; height: 3; display: none; border: tall $accent; }
    CommandBar.-open { display: block; }
    """

    def __init__(self, words: list[str]) -> None:
        super().__init__(id="prompt", suggester=None)
        self.words = words
        self.mode = ":"

    def on_mount(self) -> None:
        self.cursor_blink = not self.app.config.stable  # type: ignore[attr-defined]  # a blinking cursor makes snapshots flaky

    def open(self, mode: str, value: str = "") -> None:
        self.mode = mode
        self.suggester = SuggestFromList(self.words, case_sensitive=False) if mode == ":" else None
        self.placeholder = "view: jobs, keys, projects, nodes, dashboard…" if mode == ":" else "filter rows"
        self.border_title = mode
        self.value = value
        self.add_class("-open")
        # At once, not on the next message (Widget.focus): keys already typed after `:` (a paste, a laggy SSH
        # link) are dispatched next and must land here, not on the table behind.
        self.screen.set_focus(self)
        self.cursor_position = len(value)

    def close(self) -> None:
        self.remove_class("-open")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def action_complete(self) -> None:
        if self._suggestion:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
