"""What a newcomer hit in the console's first version, each fixed and pinned here against a real runtime: keys
typed fast after `:`, confirmations, the prompt after a command, a second project, End on a paused log, the
console's own key revoked, forms that check as you type, help, `q`, the footer's Enter, and the jobs table's
paging, sorting, state filter and marks."""

from __future__ import annotations

import httpx
import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input

from conftest import Runtime
from support.console import attached, console_config, drive, open_view, rows, screen_text, select_row, wait_for
from support.identity import bearer, owner_key
from tarx_console.screens.dashboard import DashboardScreen
from tarx_console.screens.dialogs import ConfirmDialog, FormDialog, HelpDialog, SignInDialog
from tarx_console.screens.jobs import JobsScreen
from tarx_console.screens.keys import KeysScreen
from tarx_console.screens.nodes import NodesScreen
from tarx_console.screens.projects import ProjectsScreen
from tarx_console.widgets.commandbar import CommandBar

CHARS = {"colon": ":", "slash": "/", "enter": "\r", "space": " "}


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    return make_runtime_module(name="newcomer")


def api(rt: Runtime, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=rt.url, headers={**bearer(key or owner_key(rt)), "X-Project-Slug": "default"},
                        timeout=30)


def submit(rt: Runtime, command: str, **body: object) -> dict:
    with api(rt) as c:
        r = c.post("/v0/jobs", json={"command": command, **body})
        assert r.status_code == 201, r.text
        return r.json()


def wait_state(rt: Runtime, job_id: str, state: str) -> dict:
    import time

    deadline = time.monotonic() + 30
    with api(rt) as c:
        while True:
            job = c.get(f"/v0/jobs/{job_id}").json()
            if job["state"] == state or time.monotonic() > deadline:
                assert job["state"] == state, job
                return job
            time.sleep(0.1)


def type_at_once(pilot: Pilot, *keys: str) -> None:
    """Queue every key before the app handles the first, as a paste or a laggy SSH link delivers them."""
    for key in keys:
        pilot.app.post_message(events.Key(key, CHARS.get(key, key if len(key) == 1 else None)))


def test_keys_typed_fast_after_colon_belong_to_the_prompt(rt: Runtime) -> None:
    failed = submit(rt, "echo nc-failed; exit 3")
    wait_state(rt, failed["id"], "FAILED")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        await select_row(pilot, "nc-failed")
        type_at_once(pilot, "colon", *"projects", "enter")  # `r` retried and `s`+⏎ submitted an empty job
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), what="the projects view")
        await pilot.pause(0.5)
        assert isinstance(app.screen, ProjectsScreen) and len(app.screen_stack) == 1  # no dialog opened
        app.post_message(events.Paste(":jobs\n"))  # a bracketed paste over the table does the same
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), what="the pasted view")
        app.post_message(events.Paste("/nc-failed"))
        await wait_for(pilot, lambda: app.screen.filter_text == "nc-failed", what="the pasted filter")

    drive(attached(rt), scenario)
    with api(rt) as c:
        after = c.get(f"/v0/jobs/{failed['id']}").json()
        listed = c.get("/v0/jobs", params={"pageSize": 500}).json()["items"]
    assert after["state"] == "FAILED" and after["attempt"] == failed["attempt"]  # not retried
    assert all(j["command"].strip() for j in listed)  # and no empty job submitted


def test_the_prompt_keeps_opening_after_each_command(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        for view, screen in (("jobs", JobsScreen), ("dashboard", DashboardScreen), ("keys", KeysScreen),
                             ("dashboard", DashboardScreen), ("nodes", NodesScreen), ("jobs", JobsScreen)):
            type_at_once(pilot, "colon", *view, "enter")
            await wait_for(pilot, lambda s=screen: isinstance(app.screen, s), what=view)  # type: ignore[misc]
            assert not isinstance(app.focused, CommandBar)  # a hidden prompt keeping focus swallowed the next `:`
        assert not any("No view named" in str(n.message) for n in app._notifications)

    drive(attached(rt), scenario)


def test_a_second_project_keeps_the_views_updating(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        assert app.client.http.headers.get("X-Project-ID")  # named even while there is only one project
        with api(rt) as c:
            assert c.post("/api/v1/projects", json={"name": "Newcomer Two"}).status_code == 201
        job = submit(rt, "echo after-the-second-project")
        await wait_for(pilot, lambda: any("after-the-second" in r for r in rows(app)), 20, "the new job")
        await pilot.pause(1.0)  # a few more refreshes and health checks
        assert app.connection.state == "ok" and app.connection.project == "default", app.connection
        assert "project default" in screen_text(app) and "specify" not in screen_text(app)
        assert not [n for n in app._notifications if n.severity == "error"]
        await open_view(pilot, "dashboard")
        await wait_for(pilot, lambda: app.screen.refreshes > 1, what="dashboard refreshes")
        assert job["id"]

    drive(attached(rt), scenario)


def test_end_and_g_resume_a_paused_log(rt: Runtime) -> None:
    job = submit(rt, "echo nc-log; seq 1 150")
    wait_state(rt, job["id"], "SUCCEEDED")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        await select_row(pilot, "nc-log")
        await pilot.press("enter")
        tail = await wait_for(pilot, lambda: app.screen.query("LogTail").first() if app.screen.query("LogTail")
                              else None)
        await wait_for(pilot, lambda: tail.log_widget.line_count > 100, what="the log")
        for key in ("end", "G"):
            tail.log_widget.scroll_home(animate=False, immediate=True)
            await wait_for(pilot, lambda: not tail.following, what="paused")
            assert "End to follow" in screen_text(app)
            await pilot.press(key)
            await wait_for(pilot, lambda: tail.following and tail.log_widget.is_vertical_scroll_end, what=key)

    drive(attached(rt), scenario)


def test_revoking_the_consoles_own_key_warns_and_offers_to_sign_in_again(rt: Runtime) -> None:
    with api(rt) as c:
        made = c.post("/api/v1/platform-keys", json={"name": "console-own"}).json()

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "keys")
        await select_row(pilot, "console-own")
        await pilot.press("d")
        dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ConfirmDialog) else None)
        assert "THIS CONSOLE" in dialog.question and app.screen.focused.id == "no"  # the safe answer is the default
        await pilot.press("enter")  # a stray Enter keeps the key
        await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen))
        with api(rt, made["key"]) as c:
            assert c.get("/api/v1/auth/me").status_code == 200
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        sign_in = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, SignInDialog) else None, 20)
        sign_in.query_one("#f-key", Input).value = made["key"]  # the revoked one is refused, the dialog stays
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "refused" in str(sign_in.query_one("#e-key").render()), what="refusal")
        assert isinstance(app.screen, SignInDialog)
        sign_in.query_one("#f-key", Input).value = owner_key(rt)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen), what="signed in again")
        await wait_for(pilot, lambda: app.connection.state == "ok", 20, "healthy again")
        await wait_for(pilot, lambda: any("console-own" in r and "revoked" in r for r in rows(app)), 20)

    drive(attached(rt, key=made["key"]), scenario)


def test_forms_check_as_you_type_and_keep_their_choices(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "keys")
        await pilot.press("n")
        form = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, FormDialog) else None)
        form.query_one("#f-kind").value = "compute"  # a choice made before the mistake
        await pilot.press("ctrl+s")  # an empty name: said under the field, and the dialog stays
        error = form.query_one("#e-name")
        await wait_for(pilot, lambda: "required" in str(error.render()), what="the inline error")
        assert app.screen is form and form.query_one("#f-kind").value == "compute"
        assert app.focused is form.query_one("#f-name")
        placeholder = form.query_one("#f-name", Input).placeholder
        assert placeholder.startswith("e.g. ")  # reads as an example, not a value
        await pilot.press(*"ci-runner")
        await wait_for(pilot, lambda: not error.has_class("-shown"), what="the error cleared as typed")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen))
        await open_view(pilot, "jobs")
        await pilot.press("s")
        form = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, FormDialog) else None)
        await pilot.press("enter")  # Enter on an empty command submits nothing
        await wait_for(pilot, lambda: form.query_one("#e-command").has_class("-shown"))
        await pilot.press("tab", *"gpu")  # labels are checked while typed
        await wait_for(pilot, lambda: "key=value" in str(form.query_one("#e-labels").render()))
        await pilot.press(*"=a100")
        await wait_for(pilot, lambda: not form.query_one("#e-labels").has_class("-shown"))
        assert app.screen is form
        await pilot.press("escape")

    drive(attached(rt), scenario)


def test_help_lists_the_views_and_this_views_keys_first_f1_too_and_q_quits(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        assert app.screen.active_bindings["enter"].binding.description == "Logs"  # the footer says what ⏎ does
        for key in ("question_mark", "f1"):
            await pilot.press(key)
            dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, HelpDialog) else None)
            titles = [title for title, _ in dialog.sections]
            assert titles[0].startswith("Jobs") and titles[1].startswith("Views")
            first = dict((text, k) for k, text in dialog.sections[0][1])
            assert first["Retry"] == "r" and first["Mark"] == "space" and first["Logs"] == "⏎"
            assert {":jobs", ":keys", ":projects", ":nodes", ":dashboard"} <= {k for k, _ in dialog.sections[1][1]}
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("q")
        await wait_for(pilot, lambda: app.quitting, what="q to quit")

    drive(attached(rt), scenario)


def test_jobs_pages_sorts_filters_by_state_and_marks_for_bulk_cancel(rt: Runtime) -> None:
    made = [submit(rt, f"echo bulk-{i}; sleep 60", labels={"pool": "nobody"}) for i in range(5)]  # stay QUEUED

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        view: JobsScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: view.total >= 5 and len(rows(app)) == 3, what="a page of 3")
        first_page = rows(app)
        assert "of" in view.table.border_subtitle and "page 1/" in view.table.border_subtitle
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: view.page == 1 and rows(app) and rows(app)[0] != first_page[0], what="page 2")
        assert not set(rows(app)) & set(first_page)
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: view.page == 0 and rows(app) == first_page, what="page 1 again")
        await pilot.press("f")  # QUEUED only
        await wait_for(pilot, lambda: view.state_filter == "QUEUED" and rows(app) and all(
            "QUEUED" in r for r in rows(app)), what="queued only")
        assert "state QUEUED" in view.table.border_subtitle
        await pilot.press("o")  # sort by the first column (id): ascending ids
        await wait_for(pilot, lambda: view.sort_column == "id")
        shown = [view.table.get_row_at(i) for i in range(view.table.row_count)]
        keys = [view.table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(len(shown))]
        assert keys == sorted(keys)
        await pilot.press("O")
        await wait_for(pilot, lambda: [view.table.coordinate_to_cell_key((i, 0)).row_key.value
                                       for i in range(view.table.row_count)] == sorted(keys, reverse=True))
        # Mark two rows with space, then cancel both at once; it asks first.
        view.table.focus()
        view.table.move_cursor(row=0)
        await pilot.press("space", "space")
        await wait_for(pilot, lambda: len(view.marked) == 2, what="two marks")
        marked = set(view.marked)
        assert sum(r.startswith("✓") for r in rows(app)) == 2 and "2 marked" in view.table.border_subtitle
        await pilot.press("c")
        dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ConfirmDialog) else None)
        assert "Cancel 2 marked jobs?" in dialog.question
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and not view.marked, what="done")
        return marked

    box: dict[str, set[str]] = {}

    async def run(pilot: Pilot) -> None:
        box["marked"] = await scenario(pilot)

    drive(attached(rt, console_config(jobs_limit=3)), run)
    with api(rt) as c:
        states = {j["id"]: c.get(f"/v0/jobs/{j['id']}").json()["state"] for j in made}
        for j in made:
            c.post(f"/v0/jobs/{j['id']}:cancel")
    cancelled = {k for k, v in states.items() if v == "CANCELLED"}
    assert cancelled == box["marked"] & set(states), (states, box)
