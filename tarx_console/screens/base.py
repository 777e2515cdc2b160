"""What every view shares: the header, the `:`/`/` prompt, k9s keys, and a refresh cycle that never overlaps.

A view's `load()` fetches and renders once; the next refresh is scheduled only after it finishes, so a slow
runtime stretches the interval instead of stacking requests. Only the visible view refreshes.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input

from tarx_console.client.api import TarxClient
from tarx_console.client.errors import ClientError, Unreachable
from tarx_console.screens.dialogs import HelpDialog
from tarx_console.widgets.commandbar import CommandBar
from tarx_console.widgets.difftable import DiffTable, Row
from tarx_console.widgets.header import ConsoleHeader

if TYPE_CHECKING:
    from tarx_console.app import TarxApp

T = TypeVar("T")
INPUT_QUIET = 0.4  # seconds without a key press before a refresh redraws
INPUT_PATIENCE = 10.0  # but never more than this late (a key held down for long)


class ViewScreen(Screen):
    VIEW_TITLE: ClassVar[str] = ""
    # `:` and `/` are priority bindings: the app runs them as it reads the key, before it hands the next keys
    # out, so keys typed right after them reach the prompt and never the table (where `r` would retry a job).
    BINDINGS = [
        Binding("colon", "prompt(':')", "View", id="view.command", key_display=":", priority=True),
        Binding("slash", "prompt('/')", "Filter", id="view.filter", key_display="/", priority=True),
        Binding("question_mark,f1", "help", "Help", id="view.help", key_display="?"),
        Binding("escape", "back", "Back", id="view.back", key_display="esc"),
        Binding("q", "app.quit", "Quit", id="view.quit", show=False),
        Binding("ctrl+r", "refresh_now", "Refresh", id="view.refresh", show=False),
        Binding("ctrl+k", "sign_in", "Sign in with another key", id="view.signin", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._timer: Timer | None = None
        self.refreshes = 0  # refreshes ended (answered or not): 0 until the view has tried once
        self.last_input = 0.0  # when the user last pressed a key on this view (time.monotonic)

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

    def on_key(self, event: events.Key) -> None:
        self.last_input = time.monotonic()  # seen on the way up; the key is handled as usual

    async def input_quiet(self) -> None:
        """Return once the user paused typing for INPUT_QUIET seconds (at most after INPUT_PATIENCE).

        Redrawing a big table takes the event loop for a moment (DataTable renders every visible cell again after
        rows move); done between key presses, it delays them. Refreshes run in workers and wait here instead, so
        keys are handled at once while the user types or scrolls, and the table catches up when they pause."""
        give_up = time.monotonic() + INPUT_PATIENCE
        while True:  # last_input moves on with every key, so the wait is measured again after each sleep
            wait = min(self.last_input + INPUT_QUIET, give_up) - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _refresh(self) -> None:
        client = self.tarx.client
        if client is not None:
            try:
                await self.input_quiet()
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

    def action_sign_in(self) -> None:
        self.tarx.declined_sign_in = False
        self.tarx.sign_in_again()

    # ---- prompt, filter, back, help ------------------------------------------------------------------------------

    @property
    def prompt(self) -> CommandBar:
        return self.query_one(CommandBar)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "prompt" and isinstance(self.focused, Input):
            return False  # `:` or `/` typed into a field (the prompt itself, a chat input) is text
        return True

    def action_prompt(self, mode: str) -> None:
        self.prompt.open(mode, self.filter_text if mode == "/" else "")

    def close_prompt(self) -> None:
        """Hide the prompt and take the focus from it: a hidden input that kept it would swallow the next `:`."""
        self.prompt.close()
        self.focus_main()

    def on_paste(self, event: events.Paste) -> None:
        """A paste of `:view⏎` or `/text` outside any field works as typing it would."""
        if isinstance(self.focused, Input) or event.text[:1] not in (":", "/"):
            return
        event.stop()
        line, newline, _ = event.text[1:].partition("\n")
        self.action_prompt(event.text[0])
        self.prompt.value = line.strip()
        self.prompt.cursor_position = len(self.prompt.value)
        if newline:
            self.prompt.post_message(Input.Submitted(self.prompt, self.prompt.value))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self.prompt and self.prompt.mode == "/":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self.prompt:
            return
        event.stop()
        self.close_prompt()
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
            self.close_prompt()
            if self.prompt.mode == "/":
                self.set_filter("")
        elif self.filter_text:
            self.set_filter("")
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        else:
            self.tarx.go_back()

    def focus_main(self) -> None:
        """Give the focus to the view's main widget (its table), or to nothing."""
        tables = self.query(DiffTable)
        self.set_focus(tables.first() if tables else None)

    def action_help(self) -> None:
        self.app.push_screen(HelpDialog(self.help_sections()))

    def key_of(self, binding: Binding) -> str:
        """How a binding's key is shown, after the user's keymap."""
        remapped = self.app._keymap.get(binding.id) if binding.id else None
        if remapped:
            return self.app.get_key_display(Binding(remapped.split(",")[0].strip(), binding.action))
        return binding.key_display or self.app.get_key_display(Binding(binding.key.split(",")[0], binding.action))

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """What `?` lists: this view's keys first, then the views `:` opens, then the keys every view has."""
        from tarx_console.screens import ALIASES, VIEWS  # here: the registry imports the views, which import this

        own: list[tuple[str, str]] = []
        for cls in type(self).__mro__:
            if cls is ViewScreen:
                break
            for binding in cls.__dict__.get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.description:
                    own.append((self.key_of(binding), binding.description))
        own += self.extra_help()
        aliases: dict[str, list[str]] = {}
        for alias, view in ALIASES.items():
            aliases.setdefault(view, []).append(alias)
        views = [(f":{name}", "also " + ", ".join(f":{a}" for a in sorted(aliases[name])) if aliases.get(name)
                  else "") for name in VIEWS]
        common = [(self.key_of(b), b.description) for b in ViewScreen.BINDINGS if isinstance(b, Binding)]
        common += [("ctrl+p", "Palette: every action, view and theme"), ("ctrl+q", "Quit")]
        title = self.VIEW_TITLE or "This view"
        return [(f"{title}: keys", own or [("", "(none of its own)")]), ("Views (type : and the name)", views),
                ("Everywhere", common)]

    def extra_help(self) -> list[tuple[str, str]]:
        """Keys of the view's widgets worth listing beside its own (e.g. space to mark a row)."""
        return []


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

    def on_mount(self) -> None:
        # The table claims Enter (to select a row), which hides the view's own Enter binding from the footer:
        # give the table's binding the view's description, so the footer says what Enter does here.
        enter = next((b for b in self.BINDINGS if isinstance(b, Binding) and b.key == "enter"), None)
        if enter is not None:
            self.table._bindings.key_to_bindings["enter"] = [
                Binding("enter", "select_cursor", enter.description, key_display="⏎")]

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
        await self.input_quiet()  # keys pressed while the fetch was out come first
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
