"""Pilot tests of the console's flows against a real runtime: views, filter, keys, projects, jobs, nodes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from conftest import Runtime
from support.compute import Node
from support.console import attached, console_config, drive, open_view, rows, screen_text, select_row, wait_for
from support.identity import bearer, owner_key
from tarx_console.client.api import TarxClient
from tarx_console.screens.dialogs import ConfirmDialog, FormDialog, SecretDialog
from tarx_console.screens.jobs import JobDetailScreen, JobsScreen
from tarx_console.screens.keys import KeysScreen
from tarx_console.screens.nodes import NodesScreen
from tarx_console.screens.projects import MembersScreen, ProjectsScreen
from tarx_console.widgets.logtail import LogTail


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    return make_runtime_module(name="console")


def api(rt: Runtime, key: str | None = None) -> httpx.Client:
    # The tests create projects, so the owner names one, as the console does.
    return httpx.Client(base_url=rt.url, headers={**bearer(key or owner_key(rt)), "X-Project-Slug": "default"},
                        timeout=30)


def test_colon_switches_views_with_completion_and_esc_goes_back(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await pilot.press("colon", "j", "o")
        prompt = app.screen.query_one("#prompt", Input)
        await wait_for(pilot, lambda: prompt._suggestion == "jobs", what="completion")
        await pilot.press("tab")
        assert prompt.value == "jobs"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("colon", *"proj", "enter")  # an alias
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))
        await pilot.press("colon", *"nope", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ProjectsScreen)
        assert any("No view named 'nope'" in str(n.message) for n in app._notifications)
        await pilot.press("escape")  # back to where we were
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen))

    drive(attached(rt), scenario)


def test_slash_filters_the_table_and_esc_clears_it(rt: Runtime) -> None:
    with api(rt) as c:
        for name in ("alpha-filter", "beta-filter"):
            assert c.post("/api/v1/projects", json={"name": name}).status_code == 201

    async def scenario(pilot: Pilot) -> None:
        await open_view(pilot, "projects")
        await wait_for(pilot, lambda: len(rows(pilot.app)) >= 3, what="projects")
        before = len(rows(pilot.app))
        await pilot.press("slash", *"beta")
        await wait_for(pilot, lambda: len(rows(pilot.app)) == 1)
        assert "beta-filter" in rows(pilot.app)[0]
        await pilot.press("enter")  # keep the filter; refreshes keep applying it
        await pilot.pause(0.8)
        assert len(rows(pilot.app)) == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(rows(pilot.app)) == before)

    drive(attached(rt), scenario)


def test_create_a_key_see_it_once_then_revoke_it(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "keys")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#f-name", Input).value = "console-made"
        await pilot.press("ctrl+s")
        dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, SecretDialog) else None)
        secret = dialog.secret
        assert secret.startswith("sk-tarx-")  # the default kind is a platform key
        assert "Copy it now" in screen_text(app) and secret in screen_text(app)
        with api(rt, secret) as c:
            assert c.get("/api/v1/auth/me").status_code == 200
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, KeysScreen))
        await select_row(pilot, "console-made")
        assert secret not in screen_text(app) and secret not in app.export_screenshot()  # shown once only
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: any("console-made" in r and "revoked" in r for r in rows(app)), what="revoked")
        with api(rt, secret) as c:
            r = c.get("/api/v1/auth/me")
        assert r.status_code == 401

    drive(attached(rt), scenario)


def test_projects_create_and_members(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "projects")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#f-name", Input).value = "Made In Console"
        await pilot.press("ctrl+s")
        await select_row(pilot, "made-in-console")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MembersScreen))
        await wait_for(pilot, lambda: any("owner" in r for r in rows(app)), what="the owner as a member")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#f-email", Input).value = "pat@example.com"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("pat@example.com" in r for r in rows(app)), what="the new member")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen))

    drive(attached(rt), scenario)
    with api(rt) as c:
        project = next(p for p in c.get("/api/v1/projects").json()["items"] if p["slug"] == "made-in-console")
        members = c.get(f"/api/v1/projects/{project['id']}/members").json()["items"]
    assert {m["email"]: m["role"] for m in members}.get("pat@example.com") == "member"


def test_submit_a_job_and_follow_its_log_like_tail_f(rt: Runtime) -> None:
    command = "for i in $(seq 1 80); do echo line-$i; sleep 0.04; done"

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))
        app.screen.query_one("#f-command", Input).value = command
        await pilot.press("ctrl+s")
        await select_row(pilot, "seq 1 80")  # the table clips long commands
        await pilot.press("enter")
        detail = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, JobDetailScreen) else None)
        tail = detail.query_one(LogTail)
        log = tail.log_widget
        await wait_for(pilot, lambda: log.line_count > 40, 30, "forty lines")
        log.scroll_home(animate=False, immediate=True)  # the user reads further up: following pauses
        await wait_for(pilot, lambda: tail.new_lines > 0, 10, "lines counted while paused")
        assert not tail.following and "new lines" in screen_text(app)
        assert log.scroll_y == 0
        await wait_for(pilot, lambda: any("end: SUCCEEDED" in line for line in log.lines), 30, "the end")
        await pilot.press("end")
        await wait_for(pilot, lambda: tail.following and tail.new_lines == 0, what="following again")
        lines = [line for line in log.lines if line.startswith("line-")]
        assert lines == [f"line-{i}" for i in range(1, 81)]  # every line once, in order
        assert "SUCCEEDED" in screen_text(app)

    drive(attached(rt), scenario)


def test_cancel_and_retry_a_job_from_the_table(rt: Runtime) -> None:
    with api(rt) as c:
        r = c.post("/v0/jobs", json={"command": "sleep 30 # cancel-me"})
        assert r.status_code == 201, r.text
        job = r.json()

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        await select_row(pilot, "cancel-me")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: any("cancel-me" in r and "CANCELLED" in r for r in rows(app)), 20)
        await pilot.press("r")  # a retry asks first: "n" (or esc) leaves the job as it is
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.pause(0.5)
        assert any("cancel-me" in r and "CANCELLED" in r for r in rows(app))
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: any("cancel-me" in r and "CANCELLED" not in r for r in rows(app)), 20)

    drive(attached(rt), scenario)
    with api(rt) as c:
        after = c.get(f"/v0/jobs/{job['id']}").json()
        assert [t["state"] for t in after["transitions"]].count("CANCELLED") == 1
        assert after["state"] != "CANCELLED"
        c.post(f"/v0/jobs/{job['id']}:cancel")


def test_drain_a_node(rt: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with api(rt) as c:
        node_key = c.post("/api/compute/api-keys/create", json={"name": "node-reg"}).json()["payload"]["key"]
    node = Node(rt, node_key, tmp_path, "drain-me", {"pool": "console"})
    try:
        async def scenario(pilot: Pilot) -> None:
            app = pilot.app
            await open_view(pilot, "nodes")
            await select_row(pilot, "drain-me")
            node = next(n for n in app.screen.items.values() if n["name"] == "drain-me")
            assert node["labels"]["pool"] == "console"  # (the table clips a long label list)
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, NodesScreen))
            await wait_for(pilot, lambda: any("drain-me" in r and "drain" in r.split("drain-me", 1)[1]
                                              for r in rows(app)), 20, "the node draining")

        drive(attached(rt), scenario)
        with api(rt) as c:
            assert c.get(f"/v0/agents/{node.id}").json()["state"] in ("draining", "offline")
    finally:
        node.stop()


def test_the_palette_offers_every_action_of_the_view(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        for view in ("jobs", "keys", "nodes", "projects"):
            await open_view(pilot, view)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            for binding in type(app.screen).BINDINGS:
                assert f"{app.screen.VIEW_TITLE}: {binding.description}" in titles, (view, binding)
            assert {"View: jobs", "View: nodes", "Theme: nord", "Theme: tarx-light"} <= titles
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"View: nodes")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodesScreen), what="the palette's view switch")

    drive(attached(rt), scenario)


def test_keymap_in_config_remaps_a_binding(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "jobs")
        await pilot.press("s")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, FormDialog)  # `s` no longer submits
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, FormDialog))

    drive(attached(rt, console_config(keymap={"jobs.submit": "x"})), scenario)


def test_refreshes_never_overlap(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no pause between refreshes, each one still starts only after the one before it ended."""
    seen = {"now": 0, "most": 0, "finished": 0}
    load = JobsScreen.load

    async def counted(self: JobsScreen, client: TarxClient) -> None:  # wraps every refresh of the jobs view
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        try:
            await asyncio.sleep(0.02)  # a slow runtime: a refresh started beside this one would be counted
            await load(self, client)
        finally:
            seen["now"] -= 1
            seen["finished"] += 1

    monkeypatch.setattr(JobsScreen, "load", counted)

    async def scenario(pilot: Pilot) -> None:
        await open_view(pilot, "jobs")
        await wait_for(pilot, lambda: seen["finished"] >= 15, 20, "refreshes")

    drive(attached(rt, console_config(refresh_seconds=0.0)), scenario)
    assert seen["finished"] >= 15 and seen["most"] == 1, seen
