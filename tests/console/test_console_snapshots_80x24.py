"""Every view and dialog at 80x24, the default size of an SSH terminal: the dialogs' buttons stay on screen, the
header keeps the view's name, the jobs table keeps its key columns. Against a runtime holding a few jobs (no node
runs them), with `stable` hiding generated ids, times and ports. Update with `--snapshot-update`."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from textual.pilot import Pilot

from conftest import Runtime
from support.console import select_row, settled, snapshot_app, wait_for
from support.identity import bearer, owner_key
from tarx_console.screens.dialogs import ConfirmDialog, FormDialog, HelpDialog, SecretDialog, SignInDialog
from tarx_console.screens.jobs import JobDetailScreen
from tarx_console.screens.projects import MembersScreen

SMALL = (80, 24)


@pytest.fixture(scope="module")
def small(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    rt = make_runtime_module({"TARX_LOCAL_NODE": "false"}, name="snapshots-80x24")
    with httpx.Client(base_url=rt.url, headers=bearer(owner_key(rt)), timeout=30) as c:
        for command, labels in (("echo hello", {}), ("python train.py --epochs 40 --data /srv/datasets/imagenet-21k "
                                                     "--checkpoint-every 500", {"gpu": "a100", "pool": "research"}),
                                ("make -j8 test", {"arch": "arm64"})):
            assert c.post("/v0/jobs", json={"command": command, "labels": labels}).status_code == 201
    return rt


def press_for(key: str, screen: type, *, row: str | None = None) -> Callable[[Pilot], object]:
    async def go(pilot: Pilot) -> None:
        if row is not None:
            await select_row(pilot, row)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen), what=screen.__name__)
        if isinstance(pilot.app.screen, (JobDetailScreen, MembersScreen)):
            await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0, what="the view's first refresh")

    return go


@pytest.mark.parametrize("view", ["jobs", "keys", "projects", "nodes"])
def test_view(snap_compare, small: Runtime, view: str) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled(view))


def test_dashboard(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled())


def test_job_detail(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(small), terminal_size=SMALL,
                        run_before=settled("jobs", press_for("enter", JobDetailScreen, row="train.py")))


def test_members(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(snapshot_app(small), terminal_size=SMALL,
                        run_before=settled("projects", press_for("enter", MembersScreen, row="default")))


@pytest.mark.parametrize(("view", "key", "dialog"), [
    ("keys", "n", FormDialog),  # New key
    ("jobs", "s", FormDialog),  # Submit a job
    ("jobs", "c", ConfirmDialog),  # Cancel a job
    ("jobs", "r", ConfirmDialog),  # Retry a job
    ("projects", "n", FormDialog),  # New project
    ("nodes", "question_mark", HelpDialog),
    ("keys", "enter", None),  # Describe
])
def test_dialog(snap_compare, small: Runtime, view: str, key: str, dialog: type | None) -> None:  # type: ignore[no-untyped-def]
    async def open_dialog(pilot: Pilot) -> None:
        if view == "jobs":
            await select_row(pilot, "echo hello")
        await pilot.press(key)
        await wait_for(pilot, lambda: len(pilot.app.screen_stack) > 1 and (
            dialog is None or isinstance(pilot.app.screen, dialog)), what=f"the dialog behind {key}")

    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled(view, open_dialog))


def test_add_member_dialog(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def add(pilot: Pilot) -> None:
        await press_for("enter", MembersScreen, row="default")(pilot)  # type: ignore[misc]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FormDialog))

    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled("projects", add))


def test_form_shows_what_is_wrong(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def submit_empty(pilot: Pilot) -> None:
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FormDialog))
        await pilot.press("tab", *"novalue", "ctrl+s")
        await wait_for(pilot, lambda: "required" in str(pilot.app.screen.query_one("#e-command").render()))

    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled("jobs", submit_empty))


def test_secret_and_sign_in_dialogs(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def secret(pilot: Pilot) -> None:
        pilot.app.push_screen(SecretDialog("New platform key 'laptop'", "sk-tarx-" + "Ab3d" * 9 + "xy"))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SecretDialog))

    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled("keys", secret))


def test_sign_in_dialog(snap_compare, small: Runtime) -> None:  # type: ignore[no-untyped-def]
    async def sign_in(pilot: Pilot) -> None:
        async def never(key: str) -> str | None:
            return "no"

        pilot.app.push_screen(SignInDialog("test · •••", never))
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SignInDialog))

    assert snap_compare(snapshot_app(small), terminal_size=SMALL, run_before=settled("keys", sign_in))
