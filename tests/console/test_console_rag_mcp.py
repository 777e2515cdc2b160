"""The RAG and MCP views and their dialogs on the demo project (`tarx demo`), at 120x36 and 80x24 (snapshots); the
forms checked as they are typed (a missing name, a bad URL, a relative directory, a command that does not parse)
and kept open with their choices on a submit with errors; the schedule editor's checks and next run times; the
jobs table sorted by the runtime over every job, not one page, with the state filter and marks still working.
Against a real runtime; no node runs the jobs. Update the snapshots with `--snapshot-update`."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from conftest import REPO, Runtime
from support.console import (
    SIZE,
    drive,
    open_view,
    ready,
    rows,
    select_row,
    snapshot_app,
    view_settled,
    wait_for,
    with_demo,
)
from support.identity import bearer, owner_key
from tarx_console import fmt
from tarx_console.demo import RAG_NAME, WORKFLOW_NAME
from tarx_console.screens.dialogs import FormDialog
from tarx_console.screens.jobs import JobsScreen
from tarx_console.screens.mcp import McpScreen
from tarx_console.screens.rag import RagScreen
from tarx_console.screens.workflows import ScheduleDialog, WorkflowEditScreen

SMALL = (80, 24)
SIZES = pytest.mark.parametrize("size", [SIZE, SMALL], ids=["120x36", "80x24"])
VIEWS = pytest.mark.parametrize(("view", "row"), [("rags", RAG_NAME), ("mcp", "calc")], ids=["rags", "mcp"])
MCP_SERVER = str(REPO / "tests" / "support" / "mcp_server.py")
# Sorted, these are not in the order they are submitted in: a page of the newest is not the first page sorted.
COMMANDS = ["echo kilo", "echo alpha", "echo mike", "echo delta", "echo bravo", "echo lima", "echo charlie"]


@pytest.fixture(scope="module")
def demo(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    """The demo project, its RAG source indexed, an MCP server connected (the test server over stdio, started by
    `sh` so the command shown is the same on every machine), and a few queued jobs."""
    rt = make_runtime_module({"TARX_LOCAL_NODE": "false"}, name="rag-mcp")
    made = with_demo(rt)
    headers = {**bearer(owner_key(rt)), "X-Project-ID": made.project["id"]}
    with httpx.Client(base_url=rt.url, headers=headers, timeout=60) as c:
        r = c.post("/api/v1/mcp", json={"name": "calc", "transport": "stdio", "command": "sh",
                                         "args": ["-c", 'exec "$PY" "$SERVER"'],
                                         "env": {"PY": sys.executable, "SERVER": MCP_SERVER}})
        assert r.status_code == 201 and r.json()["status"] == "connected", r.text
        for command in COMMANDS:
            assert c.post("/v0/jobs", json={"command": command}).status_code == 201
        deadline = time.monotonic() + 120
        while c.get(f"/api/v1/rags/{made.rag_id}").json()["state"] != "ready":
            assert time.monotonic() < deadline, "the demo's RAG source never finished indexing"
            time.sleep(0.2)
    return rt


def app(rt: Runtime, **config: Any):  # type: ignore[no-untyped-def]
    return snapshot_app(rt, project="demo", **config)


def has_row(pilot: Pilot, text: str) -> bool:
    return any(text in r for r in rows(pilot.app))


def problem(form: FormDialog, name: str) -> str:
    """What the form shows beside field `name` ("" when nothing is wrong with it)."""
    error = form.query_one(f"#e-{name}", Static)
    return str(error.render()) if error.has_class("-shown") else ""


async def open_form(pilot: Pilot, view: str, until: str, key: str = "n") -> FormDialog:
    await view_settled(pilot, view, lambda: has_row(pilot, until))
    await pilot.press(key)
    return await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, FormDialog)
                          and pilot.app.screen.query("#submit") else None, what="the form")


async def type_into(pilot: Pilot, form: FormDialog, name: str, text: str) -> None:
    """Clear field `name` and type `text` into it key by key, as a person would."""
    field = form.query_one(f"#f-{name}", Input)
    field.focus()
    field.value = ""
    await pilot.press(*text) if text else await pilot.pause()
    await pilot.pause()


async def choose(pilot: Pilot, form: FormDialog, name: str, value: str) -> None:
    form.query_one(f"#f-{name}", Select).value = value
    await pilot.pause()


# ---- snapshots ----------------------------------------------------------------------------------------------------

@SIZES
@VIEWS
def test_view(snap_compare, demo: Runtime, view: str, row: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await view_settled(pilot, view, lambda: has_row(pilot, row))

    assert snap_compare(app(demo), terminal_size=size, run_before=run_before)


@SIZES
@VIEWS
def test_create_dialog(snap_compare, demo: Runtime, view: str, row: str, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await open_form(pilot, view, row)
        await pilot.pause(0.3)

    assert snap_compare(app(demo), terminal_size=size, run_before=run_before)


@VIEWS
def test_create_dialog_says_what_is_wrong(snap_compare, demo: Runtime, view: str, row: str) -> None:  # type: ignore[no-untyped-def]
    """At 80x24, after a submit with a name typed and erased and a URL that is not one: both problems beside their
    fields, the buttons still on screen."""
    async def run_before(pilot: Pilot) -> None:
        form = await open_form(pilot, view, row)
        await type_into(pilot, form, "name", "x")
        await type_into(pilot, form, "name", "")
        await choose(pilot, form, "kind" if view == "rags" else "transport", "url" if view == "rags"
                     else "streamable_http")
        await type_into(pilot, form, "source" if view == "rags" else "target", "example.com/docs")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(pilot.app.screen, FormDialog)

    assert snap_compare(app(demo), terminal_size=SMALL, run_before=run_before)


# ---- the forms check themselves as they are typed -----------------------------------------------------------------

def test_rag_form_checks_as_typed_and_keeps_its_choices(demo: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        form = await open_form(pilot, "rags", RAG_NAME)
        await type_into(pilot, form, "name", "notes")
        await type_into(pilot, form, "name", "")
        assert "required" in problem(form, "name")  # before any submit
        await choose(pilot, form, "kind", "url")
        await type_into(pilot, form, "source", "ftp://example.com/notes")
        assert "http" in problem(form, "source")
        await type_into(pilot, form, "source", "https://example.com/notes")
        assert problem(form, "source") == ""
        await choose(pilot, form, "kind", "directory")  # the same text read as a directory: no longer right
        assert "absolute path" in problem(form, "source")
        await type_into(pilot, form, "source", "docs/notes")
        assert "absolute path" in problem(form, "source")
        await pilot.press("ctrl+s")  # with errors: stays open, choices kept, the first bad field focused
        await pilot.pause(0.2)
        assert pilot.app.screen is form
        assert form.values() == {"name": "", "kind": "directory", "source": "docs/notes", "description": ""}
        assert form.focused is form.query_one("#f-name", Input)
        await type_into(pilot, form, "name", "Quick notes")
        await choose(pilot, form, "kind", "text")
        assert problem(form, "source") == "" and problem(form, "name") == ""
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RagScreen), what="the form to close")
        await wait_for(pilot, lambda: has_row(pilot, "Quick notes"), 30, "the new source")

    drive(app(demo, refresh_seconds=0.3), scenario)


def test_mcp_form_checks_as_typed_and_keeps_its_choices(demo: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        form = await open_form(pilot, "mcp", "calc")
        await type_into(pilot, form, "target", 'python "server.py')
        assert "does not parse" in problem(form, "target")
        await choose(pilot, form, "transport", "streamable_http")
        await type_into(pilot, form, "target", "localhost:8080/mcp")
        assert "http:// or https://" in problem(form, "target")
        await type_into(pilot, form, "target", "http:///mcp")
        assert "host" in problem(form, "target")
        await choose(pilot, form, "transport", "stdio")  # as a command, the same text is fine
        assert problem(form, "target") == ""
        await pilot.press("ctrl+s")  # no name
        await pilot.pause(0.2)
        assert pilot.app.screen is form and "required" in problem(form, "name")
        assert form.values() == {"name": "", "transport": "stdio", "target": "http:///mcp"}
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, McpScreen))
        assert not has_row(pilot, "http:///mcp")

    drive(app(demo), scenario)


# ---- the schedule editor -------------------------------------------------------------------------------------------

def test_schedule_editor_checks_the_cron_and_shows_the_next_runs(demo: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        await view_settled(pilot, "workflows", lambda: has_row(pilot, WORKFLOW_NAME))
        await select_row(pilot, WORKFLOW_NAME)
        await pilot.press("enter")
        editor = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, WorkflowEditScreen)
                                and pilot.app.screen.fetched else None, what="the editor")
        await pilot.press("t")
        form = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, ScheduleDialog)
                              and pilot.app.screen.query("#runs") else None, what="the schedule editor")

        def runs() -> str:
            return str(form.query_one("#runs", Static).render())

        assert "off" in runs()
        await type_into(pilot, form, "cron", "0 9 *")
        assert "3 fields" in problem(form, "cron")  # as typed, before any save
        await type_into(pilot, form, "timezone", "Mars/Olympus")
        assert "IANA" in problem(form, "timezone")
        await type_into(pilot, form, "timezone", "Europe/Paris")
        await type_into(pilot, form, "cron", "0 61 * * *")  # well formed, but no hour 61: the runtime says so
        await wait_for(pilot, lambda: problem(form, "cron"), what="the runtime's refusal of the preview")
        assert "61" in problem(form, "cron") and "not valid" in runs()  # before any save
        await choose(pilot, form, "enabled", "yes")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Not saved" in runs(), what="the runtime's refusal")
        assert "61" in problem(form, "cron") and pilot.app.screen is form
        await type_into(pilot, form, "cron", "30 7 * * 1-5")
        await wait_for(pilot, lambda: "once saved:" in runs(), what="the preview of the unsaved cron")
        previewed = runs()
        assert problem(form, "cron") == ""
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Saved" in runs(), what="the saved schedule's next runs")
        assert pilot.app.screen is form  # the next runs are shown in the dialog itself
        client = pilot.app.client  # type: ignore[attr-defined]
        saved = await client.schedule(editor.workflow_id)  # the runtime's own answer
        assert saved["enabled"] and saved["cron"] == "30 7 * * 1-5" and saved["timezone"] == "Europe/Paris"
        assert len(saved["next_run_times"]) == 5
        for when in saved["next_run_times"]:
            assert fmt.when(when) in runs() and fmt.when(when) in previewed  # the preview showed what was saved
        await pilot.click("#cancel")  # closing it by its button, too, hands the saved schedule to the editor
        await wait_for(pilot, lambda: pilot.app.screen is editor)
        assert editor.schedule_info == saved
        await client.set_schedule(editor.workflow_id, False, saved["cron"], saved["timezone"])  # leave it off

    drive(app(demo, stable=False), scenario)  # times shown, not hidden


# ---- jobs sorted by the runtime --------------------------------------------------------------------------------------

def test_jobs_sort_orders_every_job_and_keeps_the_filter_and_marks(demo: Runtime) -> None:
    ordered = sorted(COMMANDS)

    async def scenario(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, "jobs")
        view: JobsScreen = pilot.app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: view.total == len(COMMANDS) and len(rows(pilot.app)) == 3)
        assert "echo alpha" not in " ".join(rows(pilot.app))  # the newest page lacks the first of them sorted
        await select_row(pilot, "echo charlie")
        await pilot.press("space")  # mark one
        view.table.focus()
        await pilot.press("o", "o", "o")  # sort by id, by state, by command
        assert view.sort_column == "command"
        await wait_for(pilot, lambda: view.fetched_sort == ("command", False), what="the sorted fetch")
        await wait_for(pilot, lambda: [r.split("  ")[2] for r in rows(pilot.app)] == ordered[:3],
                       what="the first page of every job, sorted")
        assert view.marked and "1 marked" in str(view.table.border_subtitle)
        charlie = next(r for r in rows(pilot.app) if "charlie" in r)
        assert charlie.startswith("✓")  # the mark survives the sort
        await pilot.press("O")  # reversed: the last of them all first
        await wait_for(pilot, lambda: [r.split("  ")[2] for r in rows(pilot.app)] == ordered[::-1][:3])
        await pilot.press("right_square_bracket")  # the next page of the same order
        await wait_for(pilot, lambda: [r.split("  ")[2] for r in rows(pilot.app)] == ordered[::-1][3:6])
        await pilot.press("f")  # only QUEUED (all of them here), still sorted
        await wait_for(pilot, lambda: view.state_filter == "QUEUED" and view.fetched_sort == ("command", True)
                       and [r.split("  ")[2] for r in rows(pilot.app)] == ordered[::-1][:3])
        await pilot.press("f")  # ASSIGNED: none
        await wait_for(pilot, lambda: view.state_filter == "ASSIGNED" and rows(pilot.app) == [])

    drive(app(demo, refresh_seconds=0.3, stable=False, jobs_limit=3), scenario)
