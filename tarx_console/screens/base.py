"""What every view shares: the header, the `:`/`/` prompt, k9s keys, and a refresh cycle that never overlaps.

A view's `load()` fetches and renders once; the next refresh is scheduled only after it finishes, so a slow
runtime stretches the interval instead of stacking requests. Only the visible view refreshes.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input

from tarx_console.client.api import TarxClient
from tarx_console.client.errors import ClientError, Unreachable
from tarx_console.widgets.commandbar import CommandBar
from tarx_console.widgets.difftable import DiffTable, Row
from tarx_console.widgets.header import ConsoleHeader

if TYPE_CHECKING:
    from tarx_console.app import TarxApp

T = TypeVar("T")


class ViewScreen(Screen):
    VIEW_TITLE: ClassVar[str] = ""
    BINDINGS = [
        Binding("colon", "prompt(':')", "View", id="view.command", key_display=":"),
        Binding("slash", "prompt('/')", "Filter", id="view.filter", key_display="/"),
        Binding("question_mark", "help", "Keys", id="view.help", key_display="?"),
        Binding("escape", "back", "Back", id="view.back", key_display="esc"),
        Binding("ctrl+r", "refresh_now", "Refresh", id="view.refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._timer: Timer | None = None
        self.refreshes = 0  # refreshes ended (answered or not): 0 until the view has tried once

    @property
    def tarx(self) -> TarxApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield ConsoleHeader(self.VIEW_TITLE)
        yield from self.compose_body()
        yield CommandBar(self.tarx.prompt_words())
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    async def load(self, client: TarxClient) -> None:
        """Fetch this view's data and render it."""

    # ---- refresh cycle -------------------------------------------------------------------------------------------

    def on_screen_resume(self) -> None:
        self.schedule_refresh(0)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    def schedule_refresh(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if delay <= 0:
            self.call_later(self._start_refresh)
        else:
            self._timer = self.set_timer(delay, self._start_refresh)

    def _start_refresh(self) -> None:
        # exclusive: a manual refresh replaces one in flight instead of running beside it
        self.run_worker(self._refresh, group="refresh", exclusive=True)

    async def _refresh(self) -> None:
        client = self.tarx.client
        if client is not None:
            try:
                await self.load(client)
            except Unreachable:
                pass  # the header shows the lost connection; the next refresh retries
            except ClientError as exc:
                self.tarx.report(exc)
            finally:
                self.refreshes += 1
        if self.is_current and not self.tarx.quitting:
            self.schedule_refresh(self.tarx.config.refresh_seconds if client is not None else 0.2)

    async def attempt(self, call: Callable[[TarxClient], Awaitable[T]]) -> T | None:
        """Run one user action against the runtime; a refusal is shown, not raised. None: it did not happen."""
        client = self.tarx.client
        if client is None:
            self.notify("Not connected to a runtime yet.", severity="warning")
            return None
        try:
            return await call(client)
        except Unreachable as exc:
            self.notify(f"The runtime did not answer: {exc.message}", severity="error")
        except ClientError as exc:
            self.tarx.report(exc, always=True)
        return None

    def action_refresh_now(self) -> None:
        self.schedule_refresh(0)

    # ---- prompt, filter, back, help ------------------------------------------------------------------------------

    @property
    def prompt(self) -> CommandBar:
        return self.query_one(CommandBar)

    def action_prompt(self, mode: str) -> None:
        self.prompt.open(mode, self.filter_text if mode == "/" else "")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.prompt and self.prompt.mode == "/":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.prompt:
            return
        event.stop()
        self.prompt.close()
        if self.prompt.mode == ":" and event.value.strip():
            self.tarx.open_view(event.value.strip())

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.query_one(ConsoleHeader).set_filter(text)
        self.render_rows()

    def render_rows(self) -> None:
        """Re-render from the last fetched data (after a filter change)."""

    def visible(self, rows: list[Row]) -> list[Row]:
        needle = self.filter_text.strip().lower()
        if not needle:
            return rows
        return [r for r in rows if needle in " ".join(r.values).lower()]

    def action_back(self) -> None:
        if self.prompt.is_open:
            self.prompt.close()
            if self.prompt.mode == "/":
                self.set_filter("")
            self.focus_main()
        elif self.filter_text:
            self.set_filter("")
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.tarx.go_back()

    def focus_main(self) -> None:
        tables = self.query(DiffTable)
        if tables:
            tables.first().focus()

    def action_help(self) -> None:
        if self.query("HelpPanel"):
            self.app.action_hide_help_panel()
        else:
            self.app.action_show_help_panel()


class TableView(ViewScreen):
    """A view that is one DiffTable of rows fetched by `fetch()`."""

    COLUMNS: ClassVar[list[tuple[str, str]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self.items: dict[str, dict[str, Any]] = {}
        self._row_cache: dict[str, tuple[Any, Row]] = {}

    def compose_body(self) -> ComposeResult:
        yield DiffTable(self.COLUMNS, id="table")

    @property
    def table(self) -> DiffTable:
        return self.query_one(DiffTable)

    @abstractmethod
    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        """The view's items, each with an "id"."""

    @abstractmethod
    def row(self, item: dict[str, Any]) -> Row:
        """How one item is shown."""

    def version(self, item: dict[str, Any]) -> Any:
        """What changes whenever the item's row would; None: format the row on every refresh."""
        return None

    def take(self, items: list[dict[str, Any]]) -> None:
        """Adopt freshly fetched items; rows of unchanged items are reused, not formatted again."""
        cache, fresh = self._row_cache, {}
        rows = []
        for item in items:
            version = self.version(item)
            hit = cache.get(item["id"]) if version is not None else None
            row = hit[1] if hit is not None and hit[0] == version else self.row(item)
            fresh[item["id"]] = (version, row)
            rows.append(row)
        self._row_cache = fresh
        self.items = {item["id"]: item for item in items}
        self.rows = rows

    async def load(self, client: TarxClient) -> None:
        self.take(await self.fetch(client))
        self.render_rows()

    def render_rows(self) -> None:
        self.table.sync(self.visible(self.rows))

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row drills down: it runs the view's own `enter` binding (the table claims the key first)."""
        event.stop()
        action = next((b.action for b in self.BINDINGS if isinstance(b, Binding) and b.key == "enter"), None)
        if action:
            await self.run_action(action)

    @property
    def selected(self) -> dict[str, Any] | None:
        key = self.table.current_key
        return self.items.get(key) if key else None

    def require_selection(self) -> dict[str, Any] | None:
        item = self.selected
        if item is None:
            self.notify("Nothing selected.", severity="warning")
        return item
