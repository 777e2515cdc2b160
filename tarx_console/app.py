"""The console: a Textual app that starts the runtime in its own process (or attaches to one) and manages it.

It reaches the runtime only through TarxClient over HTTP, also when the runtime runs on its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import LoadingIndicator, Static

from runtime import __version__
from runtime.config import Settings
from runtime.release import CONSOLE_AGENT
from tarx_console.client.api import TarxClient
from tarx_console.client.connect import PortState, Target, owner_key, probe
from tarx_console.client.errors import ClientError, KeyRevoked, Refused, Unreachable
from tarx_console.config import ConsoleConfig
from tarx_console.host import EmbeddedRuntime, free_port
from tarx_console.metrics import Rates
from tarx_console.screens import ALIASES, VIEWS, resolve_view
from tarx_console.screens.dialogs import PortTakenDialog, SignInDialog
from tarx_console.terminal import HangupSafeDriver
from tarx_console.theming import load_themes, theme_dirs
from tarx_console.widgets.header import Connection

DEFAULT_THEME = "tarx-dark"


@dataclass
class Launch:
    """What the console connects to: `target.url` set means a remote runtime, else this machine's."""

    target: Target
    settings: Settings


class StartingScreen(ModalScreen[None]):
    """Shown while the console finds, starts or reaches its runtime."""

    DEFAULT_CSS = """
    StartingScreen { align: center middle; }
    StartingScreen > Vertical { width: 72; height: 9; border: thick $accent; background: $surface; padding: 1 2; }
    StartingScreen LoadingIndicator { height: 1; }
    """
    BINDINGS = [Binding("q", "app.quit", "Quit", id="starting.quit")]
    message: reactive[str] = reactive("starting…")
    problem: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.message, id="step")
            yield LoadingIndicator()
            yield Static("", id="problem")

    def watch_message(self, text: str) -> None:
        for step in self.query("#step").results(Static):
            step.update(text)

    def watch_problem(self, text: str) -> None:
        for widget in self.query("#problem").results(Static):
            widget.update(f"[b red]{text}[/]\nq quits.")
        for indicator in self.query(LoadingIndicator):
            indicator.display = not text


class TarxApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "tarx"
    MODES = VIEWS
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("ctrl+p", "command_palette", "Palette", id="app.palette", show=False),
    ]
    connection: reactive[Connection] = reactive(Connection())

    def __init__(self, config: ConsoleConfig, launch: Launch) -> None:
        super().__init__(driver_class=HangupSafeDriver if sys.platform != "win32" else None)
        self.config = config
        self.launch = launch
        self.client: TarxClient | None = None
        self.connected = asyncio.Event()
        self.runtime: EmbeddedRuntime | None = None
        self.rates = Rates()
        self.last_health: dict[str, Any] | None = None
        self.last_counts: dict[str, int] | None = None
        self.history: list[str] = []
        self.project = ""
        self._last_error = ""
        self.declined_sign_in = False  # the user closed the sign-in dialog: only ctrl+k opens it again
        self.quitting = False
        self.terminal_gone = False
        self.theme_errors: list[str] = []

    # ---- start -----------------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.load_themes()
        self.theme = self.config.theme if self.config.theme in self.available_themes else DEFAULT_THEME
        self.theme_changed_signal.subscribe(self, lambda theme: self._persist_theme(theme.name))
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        self.switch_mode("dashboard")
        self.history.append("dashboard")
        self.push_screen(StartingScreen())
        self.connect()
        if self.config.watch_themes:
            self.watch_themes()
        if not self.is_headless:
            # A dropped SSH session: the terminal hangs up (SIGHUP) and stdin stops being a TTY. Leave cleanly.
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self.terminal_lost)
            loop.add_signal_handler(signal.SIGTERM, self.quit_soon)
            self.set_interval(1.0, self._check_terminal)

    def _check_terminal(self) -> None:
        try:
            attached = os.isatty(sys.__stdin__.fileno()) if sys.__stdin__ else False
        except (OSError, ValueError):
            attached = False
        if not attached:
            self.terminal_lost()

    def terminal_lost(self) -> None:
        """The terminal is gone (a dropped SSH session): stop the runtime cleanly and leave."""
        if self.terminal_gone:
            return
        self.terminal_gone = True
        self.quit_soon()
        # HangupSafeDriver keeps the exit from waiting on the dead terminal; should anything else hang, end the
        # process once the runtime had its time to stop rather than leave it spinning.
        watchdog = threading.Timer(30, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()

    @property
    def starting(self) -> StartingScreen | None:
        found = [s for s in self.screen_stack if isinstance(s, StartingScreen)]
        return found[0] if found else None

    def _step(self, text: str) -> None:
        if self.starting is not None:
            self.starting.message = text

    @work(group="connect", exclusive=True)
    async def connect(self) -> None:
        try:
            where, client = await self._open()
        except (OSError, RuntimeError, ClientError) as exc:
            if self.starting is not None:
                self.starting.problem = str(exc) or type(exc).__name__
            return
        if client is None:
            return
        self.client = client
        self.connection = Connection(where, "connecting")
        while True:
            try:
                await self.choose_project(client)
                break
            except Unreachable as exc:  # not up yet, or unreachable for now: keep trying, as k9s does
                self._step(f"cannot reach {where}: {exc.message}; retrying…")
                await asyncio.sleep(max(self.config.refresh_seconds, 0.5))
            except Refused as exc:
                if self.starting is not None:
                    hint = " (it keeps its data elsewhere: pass its key with --key)" if "attached" in where else ""
                    self.starting.problem = f"the runtime refused the console: {exc.message} ({exc.status}){hint}"
                return
            except ClientError as exc:
                if self.starting is not None:
                    self.starting.problem = f"{where} does not answer as a tarx runtime: {exc.message}"
                return
        await self.poll_once()
        if self.starting is not None:
            self.starting.dismiss()
        self.connected.set()
        # Everything loaded so far (textual, the runtime's modules, the first screens) lives as long as the console:
        # out of the collector's sight, full collections stop taking up to a second between two key presses.
        gc.freeze()

    async def _open(self) -> tuple[str, TarxClient | None]:
        target, settings = self.launch.target, self.launch.settings
        stable = self.config.stable
        if target.url is not None:
            self._step(f"connecting to {target.url}…")
            shown = "•••" if stable else target.url
            return f"{target.name} · {shown}", self._client(target.url, target.key)
        self._step(f"checking {settings.host}:{settings.port}…")
        state = await probe(settings.host, settings.port)
        if state is PortState.TARX:
            where = "attached"
        else:
            if state is PortState.OTHER:
                port = free_port(settings.host)
                if not await self.push_screen_wait(PortTakenDialog(settings.host, settings.port, port)):
                    await self.action_quit()
                    return "", None
                settings = settings.model_copy(update={"port": port})
            self._step(f"starting the runtime on {settings.host}:{settings.port} (data in {settings.data_dir})…")
            self.runtime = EmbeddedRuntime(settings)
            await self.runtime.start()
            where = "in-process"
        key = target.key or owner_key(settings)
        port = "•••" if stable else str(settings.port)
        return f"local · {where} · {settings.host}:{port}", self._client(settings.base_url, key)

    @staticmethod
    def _client(url: str, key: str | None) -> TarxClient:
        # The agent lets the runtime leave the console's periodic reads out of its access log.
        return TarxClient.over_http(url, key, timeout=30, user_agent=f"{CONSOLE_AGENT}{__version__}")

    async def choose_project(self, client: TarxClient, project: dict[str, Any] | None = None) -> None:
        """The project the views act in: `project`, else the configured slug, `default`, or the first."""
        if project is None:
            projects = await client.list_projects()
            wanted = self.config.project or "default"
            project = next((p for p in projects if p["slug"] == wanted), projects[0] if projects else None)
        # Always named (X-Project-ID), also when the key reaches one project: a second one made later (here or
        # elsewhere) must not turn every request into "specify one", nor the views away from what the header shows.
        client.use_project(project["id"] if project else None)
        self.project = project["slug"] if project else ""
        self.connection = replace(self.connection, project=self.project)

    # ---- health, rates, the header -------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """One health check; never two at once, and the next one is scheduled when this one ends."""
        client = self.client
        if client is None:
            return
        where = self.connection.where
        try:
            health, counts = await asyncio.gather(client.health(), client.job_counts())
        except Unreachable:
            stopped = self.runtime is not None and self.runtime.stopped
            detail = "the runtime stopped; see its log" if stopped else (
                f"retrying every {self.config.refresh_seconds:g}s")
            self.last_health = self.last_counts = None
            self.connection = Connection(where, "lost", self.connection.version, detail, self.project)
        except KeyRevoked:
            self.connection = Connection(where, "unavailable", self.connection.version,
                                         "this console's API key was revoked: ctrl+k signs in again", self.project)
            if not self.declined_sign_in:
                self.sign_in_again()
        except ClientError as exc:  # refused, or an answer that makes no sense
            self.connection = Connection(where, "unavailable", self.connection.version, exc.message, self.project)
        else:
            self.last_health, self.last_counts = health, counts
            self.rates.sample(health, counts)
            state = "ok" if health.get("status") == "ok" else "unavailable"
            self.connection = Connection(where, state, health.get("version", ""), health.get("error", ""),
                                         self.project)
        if not self.quitting:
            self.set_timer(max(self.config.refresh_seconds, 0.01), self._poll)  # Textual's Timer divides by it

    @work(group="health", exclusive=True)
    async def _poll(self) -> None:
        await self.poll_once()

    @work(group="sign-in", exclusive=True)
    async def sign_in_again(self) -> None:
        """Ask for another key once this one is revoked; the views carry on with it (ctrl+k asks again)."""
        client = self.client
        if client is None or any(isinstance(s, SignInDialog) for s in self.screen_stack):
            return
        old = client.http.headers.get("Authorization")

        async def check(key: str) -> str | None:
            client.use_key(key)
            try:
                await client.me()
            except ClientError as exc:
                client.http.headers["Authorization"] = old or ""
                return str(exc)
            return None

        key = await self.push_screen_wait(SignInDialog(self.connection.where, check))
        self.declined_sign_in = key is None
        if key:
            self.launch.target.key = key
            await self.choose_project(client)
            self.notify("Signed in with the new key.")

    def report(self, exc: ClientError, always: bool = False) -> None:
        """Show a runtime's refusal; a refresh repeating the same one does not pile up notifications."""
        text = str(exc)
        if always or text != self._last_error:
            self.notify(text, title="The runtime refused", severity="error")
        self._last_error = text

    # ---- views -----------------------------------------------------------------------------------------------

    def prompt_words(self) -> list[str]:
        return [*VIEWS, *sorted(ALIASES)]  # completion offers a view's full name before its aliases

    def open_view(self, name: str) -> None:
        view = resolve_view(name)
        if view is None:
            self.notify(f"No view named '{name}'. Try {', '.join(':' + v for v in VIEWS)}.",
                        severity="error")
            return
        if self.history[-1:] != [view]:
            self.history.append(view)
        self.switch_mode(view)

    def go_back(self) -> None:
        if len(self.history) > 1:
            self.history.pop()
            self.switch_mode(self.history[-1])

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Everything the console can do, for the palette: views, themes, and the current view's actions."""
        yield from super().get_system_commands(screen)
        for name in VIEWS:
            yield SystemCommand(f"View: {name}", f"Switch to the {name} view (:{name})", partial(self.open_view, name))
        for name in sorted(self.available_themes):
            yield SystemCommand(f"Theme: {name}", "Switch theme (saved in config.toml)",
                                partial(setattr, self, "theme", name))
        title = getattr(screen, "VIEW_TITLE", "") or "Console"
        seen = set()
        for cls in type(screen).__mro__:  # the view's own actions and the shared ones, not its widgets' cursor keys
            for binding in cls.__dict__.get("BINDINGS", []):
                if isinstance(binding, Binding) and binding.description and binding.action not in seen:
                    seen.add(binding.action)
                    yield SystemCommand(f"{title}: {binding.description}", f"key {binding.key_display or binding.key}",
                                        partial(screen.run_action, binding.action))

    # ---- themes ----------------------------------------------------------------------------------------------

    def load_themes(self) -> list[str]:
        themes, self.theme_errors = load_themes(theme_dirs(self.config.themes_dir))
        for theme in themes:
            self.register_theme(theme)
        for problem in self.theme_errors:
            self.notify(problem, severity="warning")
        return [t.name for t in themes]

    def _persist_theme(self, name: str) -> None:
        if name != self.config.theme:
            self.config.save_theme(name)

    @work(group="themes", exclusive=True)
    async def watch_themes(self) -> None:
        import watchfiles

        dirs = theme_dirs(self.config.themes_dir)
        async for _ in watchfiles.awatch(*dirs, debounce=200, step=50):
            names = self.load_themes()
            if self.theme in names:
                self.mutate_reactive(TarxApp.theme)  # same name, new colours: apply them again

    # ---- stop ------------------------------------------------------------------------------------------------

    def quit_soon(self) -> None:
        self.run_worker(self.action_quit, group="quit")  # not exclusive: a second request must not cancel the first

    async def action_quit(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        for worker in list(self.workers):  # refreshes in flight must not render into screens being torn down
            if worker.group != "quit":
                worker.cancel()
        client, self.client = self.client, None  # timers that still fire find nothing to call
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        if self.runtime is not None:
            await self.runtime.stop()
        self.exit()
