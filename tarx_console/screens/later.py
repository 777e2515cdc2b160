"""Views named in the command line whose runtime side does not exist yet."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from tarx_console.screens.base import ViewScreen


class NotYetScreen(ViewScreen):
    DEFAULT_CSS = "NotYetScreen #not-yet { padding: 1 2; }"

    def __init__(self, title: str) -> None:
        super().__init__()
        self.VIEW_TITLE = title

    def compose_body(self) -> ComposeResult:
        yield Static(f"{self.VIEW_TITLE}: this runtime has no {self.VIEW_TITLE.lower()} API yet. They arrive with "
                     "the agents and workflows work; `:jobs` and `:nodes` cover what runs today.", id="not-yet")
