"""Helpers for console tests: a TarxApp attached to a real runtime, and waiting on what the screen shows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from conftest import Runtime
from runtime.config import Settings
from support.identity import owner_key
from tarx_console.app import Launch, TarxApp
from tarx_console.client.api import TarxClient
from tarx_console.client.connect import Target
from tarx_console.config import ConsoleConfig
from tarx_console.demo import Demo, create_demo
from tarx_console.widgets.difftable import DiffTable

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
SIZE = (120, 36)


def console_config(tmp: Path | None = None, **kw: Any) -> ConsoleConfig:
    """A test configuration: no file watching, quick refreshes; `stable=True` for snapshots."""
    defaults: dict[str, Any] = {"watch_themes": False, "refresh_seconds": 0.3, "path": None}
    if tmp is not None:
        defaults |= {"path": tmp / "config.toml", "themes_dir": tmp / "themes"}
    return ConsoleConfig(**(defaults | kw))


def attached(rt: Runtime, config: ConsoleConfig | None = None, key: str | None = None) -> TarxApp:
    """The console attached to `rt` as `tarx --remote URL --key KEY` would be."""
    return TarxApp(config or console_config(), Launch(Target("test", rt.url, key or owner_key(rt)),
                                                      Settings(data_dir=rt.data_dir)))


async def wait_for(pilot: Pilot, check: Callable[[], Any], seconds: float = 15, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}; screen: {screen_text(pilot.app)[:2000]}")
        await pilot.pause(0.05)


async def ready(pilot: Pilot) -> None:
    await wait_for(pilot, pilot.app.connected.is_set, 30, "the console to connect")  # type: ignore[attr-defined]


def table(app: TarxApp) -> DiffTable:
    return app.screen.query_one(DiffTable)


def rows(app: TarxApp) -> list[str]:
    """The table's rows in display order, each as its cells joined by two spaces."""
    t = table(app)
    return ["  ".join(str(c) for c in t.get_row_at(i)) for i in range(t.row_count)]


def screen_text(app: TarxApp) -> str:
    """Everything the current screen's static text and tables show."""
    parts = [str(w.render()) for w in app.screen.query(Static)]
    for t in app.screen.query(DiffTable):
        parts += [" ".join(str(c) for c in t.get_row_at(i)) for i in range(t.row_count)]
    return "\n".join(parts)


async def open_view(pilot: Pilot, name: str) -> None:
    await pilot.press("colon", *name, "enter")
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__.lower().startswith(name[:3]), what=name)


async def select_row(pilot: Pilot, contains: str) -> None:
    """Move the cursor to the first row that shows `contains`."""
    t = await wait_for(pilot, lambda: table(pilot.app) if any(contains in r for r in rows(pilot.app)) else None,
                       what=f"a row with {contains!r}")
    index = next(i for i, r in enumerate(rows(pilot.app)) if contains in r)
    t.focus()
    t.move_cursor(row=index)
    await pilot.pause()


def snapshot_app(rt: Runtime, **config: Any) -> TarxApp:
    """The console for a snapshot: `stable` hides generated ids, times and ports, and no refresh comes mid-shot."""
    return attached(rt, console_config(**({"stable": True, "refresh_seconds": 60} | config)))


def settled(view: str | None = None, then: Callable[[Pilot], object] | None = None) -> Callable:
    """A snapshot's run_before: connected, `view` (else the dashboard) refreshed once, then `then(pilot)`."""

    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        if view:
            await open_view(pilot, view)
            await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0 and rows(pilot.app) is not None)
        else:
            await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0, what="the dashboard's first refresh")
        if then is not None:
            result = then(pilot)
            if hasattr(result, "__await__"):
                await result  # type: ignore[misc]
        await pilot.pause(0.3)

    return run_before


async def view_settled(pilot: Pilot, view: str, until: Callable[[], Any] | None = None) -> None:
    """Connect, open `view` and wait for its first refresh (and `until`, when given), then a moment to paint."""
    await ready(pilot)
    await open_view(pilot, view)
    await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0 and (until is None or until()),  # type: ignore[attr-defined]
                   30, f"{view} to show its data")
    await pilot.pause(0.3)


def with_demo(rt: Runtime, jobs: bool = False) -> Demo:
    """`tarx demo` on `rt` (the demo project, its agent, RAG source and workflow), as the console would run it."""

    async def build() -> Demo:
        async with TarxClient.over_http(rt.url, owner_key(rt)) as client:
            return await create_demo(client, jobs=jobs)

    return asyncio.run(build())


def drive(app: TarxApp, scenario: Callable[[Pilot], Any], connect: bool = True) -> None:
    """Run `scenario(pilot)` against the app in a headless terminal of fixed size, then quit it cleanly."""

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            if connect:
                await ready(pilot)
            await scenario(pilot)
            await app.action_quit()

    asyncio.run(main())
