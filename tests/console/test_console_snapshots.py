"""Snapshots of the console against a fresh runtime, in a fixed 120x36 terminal, with the test configuration
(`stable`) hiding generated ids, times and ports. Update with `pytest tests/console --snapshot-update`."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from conftest import Runtime
from support.console import SIZE, settled, snapshot_app, wait_for
from tarx_console.screens.dialogs import FormDialog, HelpDialog


@pytest.fixture(scope="module")
def fresh(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    # No in-process node: nothing on screen depends on when it registered.
    return make_runtime_module({"TARX_LOCAL_NODE": "false"}, name="snapshots")


def test_dashboard(snap_compare, fresh: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(fresh), terminal_size=SIZE, run_before=settled())


def test_keys_view(snap_compare, fresh: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(fresh), terminal_size=SIZE, run_before=settled("keys"))


def test_new_key_dialog(snap_compare, fresh: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def new_key(pilot: Pilot) -> None:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FormDialog))

    assert snap_compare(snapshot_app(fresh), terminal_size=SIZE, run_before=settled("keys", new_key))


def test_command_line_completes_views(snap_compare, fresh: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def type_colon(pilot: Pilot) -> None:
        await pilot.press("colon", "n", "o")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(fresh), terminal_size=SIZE, run_before=settled("projects", type_colon))


def test_bindings_help(snap_compare, fresh: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def help_panel(pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpDialog))

    assert snap_compare(snapshot_app(fresh), terminal_size=SIZE, run_before=settled("jobs", help_panel))
