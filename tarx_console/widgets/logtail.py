"""A log that follows like `tail -f`, pauses while the user reads further up, and counts what arrived since."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Log, Static


class TailLog(Log):
    """The log itself: End (which a plain Log takes to scroll without following) and G resume following."""

    BINDINGS = [Binding("end,G", "follow", "Follow", id="log.follow", key_display="End/G")]

    def action_follow(self) -> None:
        if isinstance(self.parent, LogTail):
            self.parent.action_follow()


class LogTail(Vertical):
    BINDINGS = [Binding("end,G", "follow", "Follow", id="log.follow", key_display="End/G")]
    DEFAULT_CSS = """
    LogTail { height: 1fr; }
    LogTail Log { height: 1fr; border: round $panel; }
    LogTail #log-status { height: 1; color: $text-muted; }
    LogTail.-paused #log-status { color: $warning; text-style: bold; }
    """
    following: reactive[bool] = reactive(True)
    new_lines: reactive[int] = reactive(0)

    def compose(self) -> ComposeResult:
        yield TailLog(max_lines=50_000, auto_scroll=False, id="log")
        yield Static(id="log-status")

    @property
    def log_widget(self) -> Log:
        return self.query_one(Log)

    def on_mount(self) -> None:
        self.watch(self.log_widget, "scroll_y", self._scrolled)
        self._status()

    def write(self, lines: list[str]) -> None:
        log = self.log_widget
        at_end = log.is_vertical_scroll_end
        log.write_lines(lines, scroll_end=at_end)
        if not at_end:
            self.new_lines += len(lines)
        self.following = at_end

    def _scrolled(self, _: float) -> None:
        if self.log_widget.is_vertical_scroll_end:
            self.following = True
            self.new_lines = 0
        else:
            self.following = False

    def watch_following(self) -> None:
        self._status()

    def watch_new_lines(self) -> None:
        self._status()

    def _status(self) -> None:
        if not self.is_mounted:
            return
        self.set_class(not self.following, "-paused")
        if self.following:
            text = "following (tail -f)"
        else:
            text = f"paused: scrolled up · {self.new_lines} new lines · End to follow"
        self.query_one("#log-status", Static).update(text)

    def action_follow(self) -> None:
        self.log_widget.scroll_end(animate=False, immediate=True)
        self.following = True
        self.new_lines = 0
