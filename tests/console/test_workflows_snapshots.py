"""Snapshots of the workflow diagram (120x36 and 80x24) and of a live execution mid-run, on the demo project
(`tarx demo`) of a fresh runtime. The execution is held where nothing moves: waiting for approval after its
agent drafted. Update with `pytest tests/console --snapshot-update`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from conftest import Runtime
from support.console import SIZE, attached, console_config, open_view, ready, rows, select_row, wait_for
from support.identity import owner_key
from tarx_console.client.api import TarxClient
from tarx_console.demo import WORKFLOW_NAME, create_demo
from tarx_console.screens.dialogs import FormDialog
from tarx_console.screens.executions import ExecutionLiveScreen
from tarx_console.screens.workflows import WorkflowEditScreen
from tarx_console.widgets.graph import WorkflowGraph

SMALL = (80, 24)


@pytest.fixture(scope="module")
def demo(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    """A runtime holding the demo project, with one run of its workflow waiting for approval."""
    rt = make_runtime_module({"TARX_LOCAL_NODE": "false"}, name="workflow-snapshots")

    async def build() -> str:
        async with TarxClient.over_http(rt.url, owner_key(rt)) as client:
            made = await create_demo(client, jobs=False)
            started = await client.execute_workflow(made.workflow_id, "Say hello in five words.")
            deadline = time.monotonic() + 240
            while (await client.execution(started["execution_id"]))["status"] != "waiting_approval":
                assert time.monotonic() < deadline, "the demo run never reached its approval"
                await asyncio.sleep(0.2)
            return started["execution_id"]

    asyncio.run(build())
    return rt


def app(rt: Runtime):  # type: ignore[no-untyped-def]
    return attached(rt, console_config(stable=True, refresh_seconds=60, project="demo"))


def graph_view(then: Callable[[Pilot], object] | None = None) -> Callable:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, "workflows")
        await select_row(pilot, WORKFLOW_NAME)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, WorkflowEditScreen)
                       and pilot.app.screen.wf is not None, what="the editor")
        await wait_for(pilot, lambda: pilot.app.screen.query_one(WorkflowGraph).selected == "trigger")
        await pilot.pause(0.3)

    return run_before


def test_workflow_graph(snap_compare, demo: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(demo), terminal_size=SIZE, run_before=graph_view())


def test_workflow_graph_small_terminal(snap_compare, demo: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app(demo), terminal_size=SMALL, run_before=graph_view())


def test_execution_live_waiting_for_approval(snap_compare, demo: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, "executions")
        await wait_for(pilot, lambda: any("waiting_approval" in r for r in rows(pilot.app)))
        await select_row(pilot, "waiting_approval")
        await pilot.press("enter")
        live = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, ExecutionLiveScreen)
                              else None)
        await wait_for(pilot, lambda: live.query_one("#approval").has_class("-on"), what="the approval prompt")
        await wait_for(pilot, lambda: live.graph.states.get("skip") == "skipped")
        await pilot.pause(0.3)

    assert snap_compare(app(demo), terminal_size=SIZE, run_before=run_before)


def test_execution_live_small_terminal(snap_compare, demo: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, "executions")
        await wait_for(pilot, lambda: any("waiting_approval" in r for r in rows(pilot.app)))
        await select_row(pilot, "waiting_approval")
        await pilot.press("enter")
        live = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, ExecutionLiveScreen)
                              else None)
        await wait_for(pilot, lambda: live.query_one("#approval").has_class("-on"), what="the approval prompt")
        await wait_for(pilot, lambda: live.graph.states.get("skip") == "skipped")
        await pilot.pause(0.3)

    assert snap_compare(app(demo), terminal_size=SMALL, run_before=run_before)


@pytest.mark.parametrize("size", [SIZE, SMALL], ids=["120x36", "80x24"])
@pytest.mark.parametrize("view", ["workflows", "executions"])
def test_tables(snap_compare, demo: Runtime, view: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, view)
        await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0 and len(rows(pilot.app)) == 1)
        await pilot.pause(0.3)

    assert snap_compare(app(demo), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("key", ["a", "t"])
def test_editor_dialogs_small_terminal(snap_compare, demo: Runtime, key: str) -> None:  # type: ignore[no-untyped-def]
    async def open_dialog(pilot: Pilot) -> None:
        await graph_view()(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FormDialog), what="the dialog")
        await pilot.pause(0.3)

    assert snap_compare(app(demo), terminal_size=SMALL, run_before=open_dialog)
