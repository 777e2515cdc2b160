"""Starting the console: the runtime in-process, attaching when the port holds a tarx runtime, asking when it
holds something else; a lost connection shown and retried; themes as data, persisted and reloaded live."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from pathlib import Path

import httpx
from textual.pilot import Pilot

from conftest import Runtime, free_port
from runtime.config import Settings
from support.console import attached, console_config, drive, ready, wait_for
from tarx_console.app import Launch, TarxApp
from tarx_console.client.connect import Target
from tarx_console.config import ConsoleConfig
from tarx_console.screens.dialogs import PortTakenDialog
from tarx_console.theming import bundled_dir


def local(settings: Settings, config: ConsoleConfig | None = None) -> TarxApp:
    """The console as plain `tarx` starts it: this machine's runtime."""
    return TarxApp(config or console_config(), Launch(Target("local", None, None), settings))


def quiet(tmp: Path, port: int) -> Settings:
    return Settings(data_dir=tmp / "data", port=port, local_node=False)


def test_console_starts_the_runtime_in_process_and_others_can_use_it(tmp_path: Path) -> None:
    port = free_port()

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        assert "in-process" in app.connection.where and f":{port}" in app.connection.where
        await wait_for(pilot, lambda: app.connection.state == "ok", what="healthy")
        async with httpx.AsyncClient() as other:  # another local program, while the console is open
            r = await other.get(f"http://127.0.0.1:{port}/v1/models")
        assert r.status_code == 200 and any(m["id"] == "tarx-local" for m in r.json()["data"])

    drive(local(quiet(tmp_path, port)), scenario)
    with socket.socket() as s:  # quitting the console stopped the runtime and freed the port
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert (tmp_path / "data" / "owner.key").exists()
    log = (tmp_path / "data" / "logs" / "runtime.log").read_text()
    assert "GET /v1/models" in log and "GET /v1/health" not in log  # the console's own polling stays out


def test_console_attaches_when_the_port_holds_a_tarx_runtime(runtime: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        assert "attached" in pilot.app.connection.where
        await wait_for(pilot, lambda: pilot.app.connection.state == "ok", what="healthy")
        assert pilot.app.runtime is None

    drive(local(Settings(data_dir=runtime.data_dir, port=runtime.port)), scenario)
    assert runtime.health()["status"] == "ok"  # untouched by the console quitting


def test_console_offers_a_free_port_when_something_else_holds_it(tmp_path: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    stop = threading.Event()

    def answer_garbage() -> None:
        squatter.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = squatter.accept()
            except TimeoutError:
                continue
            conn.sendall(b"SSH-2.0-not-http\r\n")
            conn.close()

    answering = threading.Thread(target=answer_garbage, daemon=True)
    answering.start()

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, PortTakenDialog) else None)
        assert f"Port {taken}" in str(dialog.query_one(".title").render())
        await pilot.press("enter")
        await ready(pilot)
        assert "in-process" in app.connection.where and f":{dialog.free}" in app.connection.where
        async with httpx.AsyncClient() as other:
            assert (await other.get(f"http://127.0.0.1:{dialog.free}/api/version")).status_code == 200

    try:
        drive(local(quiet(tmp_path, taken)), scenario, connect=False)
    finally:
        stop.set()
        answering.join()
        squatter.close()


def test_lost_connection_is_shown_and_retried(tmp_path: Path) -> None:
    port = free_port()
    rt = Runtime(tmp_path / "data", {"TARX_LOCAL_NODE": "false"}, port=port)
    try:
        async def scenario(pilot: Pilot) -> None:
            app = pilot.app
            await wait_for(pilot, lambda: app.connection.state == "ok", what="healthy")
            await asyncio.to_thread(rt.stop)
            await wait_for(pilot, lambda: app.connection.state == "lost", what="lost")
            assert "connection lost" in str(app.screen.query_one("#header").render())
            await pilot.press("colon", *"jobs", "enter")  # views keep working (empty) while disconnected
            await pilot.pause(0.5)
            back = await asyncio.to_thread(Runtime, tmp_path / "data", {"TARX_LOCAL_NODE": "false"}, None, port)
            try:
                await wait_for(pilot, lambda: app.connection.state == "ok", 20, "reconnected")
            finally:
                await asyncio.to_thread(back.stop)

        drive(attached(rt), scenario)
    finally:
        rt.stop()


def test_themes_are_data_switchable_persisted_and_reloaded_live(tmp_path: Path) -> None:
    user_themes = tmp_path / "themes"
    user_themes.mkdir()
    shutil.copy(bundled_dir() / "nord.toml", user_themes / "mine.toml")
    mine = user_themes / "mine.toml"
    mine.write_text(mine.read_text().replace('name = "nord"', 'name = "mine"'))
    config_file = tmp_path / "config.toml"
    config_file.write_text('# my settings\nport = 11440\n\n[console]\ntheme = "tarx-light"\nrefresh_seconds = 0.3\n')
    config = ConsoleConfig.load(config_file)
    config.watch_themes = True
    config.themes_dir = user_themes

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        bundled = {p.stem for p in bundled_dir().glob("*.toml")}
        assert len(bundled) >= 3 and bundled <= set(app.available_themes)
        assert app.theme == "tarx-light"  # from config
        cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Theme: mine")
        cmd.callback()
        await wait_for(pilot, lambda: 'theme = "mine"' in config_file.read_text(), what="the choice saved")
        assert str(app.current_theme.primary).upper() == "#88C0D0"
        await pilot.pause(0.5)  # let the watcher settle before the edit
        mine.write_text(mine.read_text().replace("#88C0D0", "#FF0000"))
        await wait_for(pilot, lambda: str(app.current_theme.primary).upper() == "#FF0000", 15, "the edit applied")
        assert app.get_css_variables()["primary"].upper() in ("#FF0000", "#FE0000")  # after colour rounding

    drive(local(Settings(data_dir=tmp_path / "data", port=free_port(), local_node=False), config), scenario)
    text = config_file.read_text()
    assert text.startswith("# my settings\nport = 11440\n") and 'theme = "mine"' in text and "refresh_seconds" in text
    assert ConsoleConfig.load(config_file).theme == "mine"  # the next start uses it


def test_a_refused_key_is_shown_not_crashed_on(runtime: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        starting = await wait_for(pilot, lambda: app.starting if app.starting and app.starting.problem else None,
                                  what="the problem shown")
        assert "refused" in starting.problem and app.client is not None and not app.connected.is_set()

    drive(attached(runtime, key="sk-tarx-" + "0" * 40), scenario, connect=False)
