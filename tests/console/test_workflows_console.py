"""Pilot tests of the workflow and execution views against a real runtime: build a workflow in the editor (with
the runtime's validation errors shown on the nodes at fault) and run it; approve a waiting execution; cancel one;
a live view whose stream is cut mid-run reconnects with Last-Event-ID and misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook
from textual.pilot import Pilot
from textual.widgets import Select, Static

from conftest import Runtime
from runtime.config import Settings
from support.console import attached, console_config, drive, open_view, rows, select_row, wait_for
from support.identity import bearer, owner_key
from tarx_console.app import Launch, TarxApp
from tarx_console.client.api import TarxClient
from tarx_console.client.connect import Target
from tarx_console.screens.dialogs import ConfirmDialog, FormDialog
from tarx_console.screens.executions import ExecutionLiveScreen, ExecutionsScreen
from tarx_console.screens.workflows import ScheduleDialog, WebhookDialog, WorkflowEditScreen
from tarx_console.widgets.graph import WorkflowGraph

APPROVAL = {
    "nodes": [{"id": "start", "type": "trigger", "config": {}},
              {"id": "gate", "type": "humanInLoopNode", "config": {"message": "Ship {{ input }}?"}},
              {"id": "shipped", "type": "outputNode", "config": {"template": "shipped {{ input }}"}}],
    "edges": [{"source": "start", "target": "gate"}, {"source": "gate", "target": "shipped"}],
}


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    # The tests refresh the console every 0.3 s and poll beside it with the same key: off with /api/v1's
    # 30-requests-in-5-seconds burst limit, which is not what these tests are about.
    return make_runtime_module({"TARX_LOCAL_NODE": "false", "TARX_RATE_LIMITS": "false"}, name="workflows-console")


def api(rt: Runtime) -> httpx.Client:
    return httpx.Client(base_url=rt.url, headers=bearer(owner_key(rt)), timeout=30)


def approval_workflow(rt: Runtime, name: str) -> str:
    with api(rt) as c:
        r = c.post("/api/v1/workflows", json={"name": name, **APPROVAL})
        assert r.status_code == 201, r.text
        return r.json()["id"]


def start(rt: Runtime, workflow_id: str, text: str) -> str:
    with api(rt) as c:
        r = c.post(f"/api/v1/workflows/{workflow_id}/execute", json={"input": text})
        assert r.status_code == 202, r.text
        return r.json()["execution_id"]


def execution(rt: Runtime, execution_id: str) -> dict:
    with api(rt) as c:
        return c.get(f"/api/v1/executions/{execution_id}").json()


async def until_status(rt: Runtime, execution_id: str, status: str, pilot: Pilot) -> dict:
    async def check() -> dict | None:
        ex = await asyncio.to_thread(execution, rt, execution_id)
        return ex if ex["status"] == status else None

    deadline = asyncio.get_running_loop().time() + 30
    while (ex := await check()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"{execution_id} never became {status}"
        await pilot.pause(0.25)
    return ex


def graph(pilot: Pilot) -> WorkflowGraph:
    return pilot.app.screen.query_one(WorkflowGraph)


async def submit_form(pilot: Pilot, **values: str) -> None:
    """Fill the open FormDialog's inputs (typing, as a person would) and submit it."""
    dialog = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, FormDialog) else None,
                            what="a form")
    for name, value in values.items():
        field = dialog.query_one(f"#f-{name}")
        if isinstance(field, Select):
            field.value = value
            continue
        field.value = value  # a value set as a paste would set it
    await pilot.press("ctrl+s")
    if isinstance(dialog, ScheduleDialog):  # it stays open with the saved schedule's next runs; Esc closes it
        await wait_for(pilot, lambda: "Saved" in str(dialog.query_one("#runs", Static).render()), what="the save")
        await pilot.press("escape")
    await wait_for(pilot, lambda: pilot.app.screen is not dialog, what="the form to close")


async def select_node(pilot: Pilot, node_id: str) -> None:
    g = graph(pilot)
    g.focus()
    for key in ("left",) * 6 + ("up",) * 6:  # to the first column, then walk to the node with the arrows
        await pilot.press(key)
    for _ in range(40):
        if g.selected == node_id:
            return
        column = next(c for c in g.drawing.columns if g.selected in c)  # type: ignore[union-attr]
        target_col = next(c for c in g.drawing.columns if node_id in c)  # type: ignore[union-attr]
        here, there = g.drawing.columns.index(column), g.drawing.columns.index(target_col)  # type: ignore[union-attr]
        await pilot.press("right" if there > here else "down" if there == here else "left")
    raise AssertionError(f"could not reach {node_id}; at {g.selected}")


def test_build_a_three_node_workflow_in_the_editor_and_run_it(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "workflows")
        await pilot.press("n")
        await submit_form(pilot, name="built by keys", description="three nodes")
        edit = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, WorkflowEditScreen)
                              and app.screen.wf is not None else None, what="the editor")
        await wait_for(pilot, lambda: graph(pilot).selected == "trigger", what="the trigger selected")

        # a node the runtime will refuse: an LLM node without its prompt
        await pilot.press("a")
        await submit_form(pilot, type="llmNode")
        await submit_form(pilot, id="wordy", config="{}")
        await select_node(pilot, "trigger")
        await pilot.press("c")
        await select_node(pilot, "wordy")
        await pilot.press("c")
        await submit_form(pilot, label="")
        assert {(e["source"], e["target"]) for e in edit.edges} == {("trigger", "wordy")}
        await pilot.press("s")
        await wait_for(pilot, lambda: "wordy" in edit.errors, what="the rejection shown on the node")
        assert graph(pilot).states.get("wordy") == "invalid" and "trigger" not in edit.errors
        assert "prompt" in edit.errors["wordy"]
        assert "✖" in str(app.screen.query_one("#inspector").render())
        with api(rt) as c:  # nothing reached the runtime
            assert len(c.get(f"/api/v1/workflows/{edit.workflow_id}").json()["nodes"]) == 1
        await pilot.press("escape")  # leaving with unsaved changes asks first
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the question")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is edit and edit.node("wordy") is not None)

        # replace it: delete, then a transform and an output, connected by keys
        await select_node(pilot, "wordy")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: edit.node("wordy") is None and not edit.errors)
        await pilot.press("a")
        await submit_form(pilot, type="transformNode")
        await submit_form(pilot, id="shout", config='{"template": "{{ input | upper }}!"}')
        await pilot.press("a")
        await submit_form(pilot, type="outputNode")
        await submit_form(pilot, id="result", config='{"template": "got {{ prev }}"}')
        for source, target in (("trigger", "shout"), ("shout", "result")):
            await select_node(pilot, source)
            await pilot.press("c")
            await select_node(pilot, target)
            await pilot.press("c")
            await submit_form(pilot, label="")
        await pilot.press("s")
        await wait_for(pilot, lambda: not edit.dirty, what="the save")
        with api(rt) as c:
            saved = c.get(f"/api/v1/workflows/{edit.workflow_id}").json()
        assert {n["id"]: n["type"] for n in saved["nodes"]} == {"trigger": "trigger", "shout": "transformNode",
                                                                 "result": "outputNode"}
        assert {(e["source"], e["target"]) for e in saved["edges"]} == {("trigger", "shout"), ("shout", "result")}
        # the diagram draws the saved graph: three boxes in three layers
        assert [len(c) for c in graph(pilot).drawing.columns] == [1, 1, 1]  # type: ignore[union-attr]

        await pilot.press("x")
        await submit_form(pilot, input="hello")
        live = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionLiveScreen) else None)
        await wait_for(pilot, lambda: live.status == "completed", what="the run to complete")
        assert graph(pilot).states == {"trigger": "completed", "shout": "completed", "result": "completed"}
        await select_node(pilot, "result")
        await wait_for(pilot, lambda: "got HELLO!" in str(app.screen.query_one("#output").render()))
        assert execution(rt, live.execution_id)["output"] == "got HELLO!"

    drive(attached(rt), scenario)


def test_approve_a_waiting_execution_from_the_executions_view(rt: Runtime) -> None:
    wf = approval_workflow(rt, "approve me")
    ex = start(rt, wf, "v1")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await until_status(rt, ex, "waiting_approval", pilot)
        await open_view(pilot, "executions")
        await wait_for(pilot, lambda: any("waiting_approval" in r for r in rows(app)), what="the waiting row")
        await select_row(pilot, "waiting_approval")
        await pilot.press("enter")
        live = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionLiveScreen) else None)
        await wait_for(pilot, lambda: app.screen.query_one("#approval").has_class("-on"), what="the prompt")
        assert "Ship v1?" in str(app.screen.query_one("#approval-text").render())
        assert graph(pilot).states["gate"] == "waiting_approval" and graph(pilot).states["start"] == "completed"
        await pilot.press("y")
        await wait_for(pilot, lambda: live.status == "completed", what="the approved run to finish")
        assert not app.screen.query_one("#approval").has_class("-on")
        assert graph(pilot).states["shipped"] == "completed"
        done = execution(rt, ex)
        assert done["status"] == "completed" and done["output"] == "shipped v1"
        assert done["node_results"]["gate"]["output"]["approved"] is True
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ExecutionsScreen))
        await wait_for(pilot, lambda: not any("waiting_approval" in r for r in rows(app)), what="the table to follow")

    drive(attached(rt), scenario)


def test_cancel_an_execution_and_filter_the_table_by_state(rt: Runtime) -> None:
    wf = approval_workflow(rt, "cancel me")
    ex = start(rt, wf, "v2")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await until_status(rt, ex, "waiting_approval", pilot)
        await open_view(pilot, "workflows")
        await select_row(pilot, "cancel me")
        await pilot.press("e")  # this workflow's executions
        screen = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionsScreen) else None)
        await wait_for(pilot, lambda: len(rows(app)) == 1 and "waiting_approval" in rows(app)[0])
        await select_row(pilot, "waiting_approval")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until_status(rt, ex, "cancelled", pilot)
        await wait_for(pilot, lambda: "cancelled" in rows(app)[0], what="the row to show it")
        for _ in range(2):  # any → pending → running: nothing of this workflow
            await pilot.press("f")
        await wait_for(pilot, lambda: screen.status == "running" and rows(app) == [], what="the state filter")
        for _ in range(4):  # → waiting_approval → completed → failed → cancelled
            await pilot.press("f")
        await wait_for(pilot, lambda: screen.status == "cancelled" and len(rows(app)) == 1)

    drive(attached(rt), scenario)


class Proxy:
    """A TCP relay in front of the runtime whose connections the test can cut, as a dropped network does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.conns += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for w in self.conns:
            w.transport.abort()
        self.conns.clear()


def test_a_dropped_stream_reconnects_and_misses_nothing(rt: Runtime) -> None:
    wf = approval_workflow(rt, "flaky network")

    async def main() -> None:
        proxy = Proxy(rt.port)
        url = await proxy.start()
        # only the stream may bring news: no periodic refresh
        app = TarxApp(console_config(refresh_seconds=3600),
                      Launch(Target("test", url, owner_key(rt)), Settings(data_dir=rt.data_dir)))
        async with app.run_test() as pilot:
            await wait_for(pilot, app.connected.is_set, 30)
            ex = start(rt, wf, "v3")
            app.push_screen(ExecutionLiveScreen(ex))
            live = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionLiveScreen) else None)
            await wait_for(pilot, lambda: live.status == "waiting_approval", what="the wait")
            seen = live.seq
            proxy.cut()  # the stream drops; the approval below happens while it is down
            async with TarxClient.over_http(rt.url, owner_key(rt)) as direct:
                await direct.approve_execution(ex, True, "approved elsewhere")
            await wait_for(pilot, lambda: live.status == "completed", what="the reconnected stream to finish")
            async with TarxClient.over_http(rt.url, owner_key(rt)) as direct:
                logs = await direct.execution_logs(ex)
            # every event, once, in order: the view applied exactly the stored stream
            assert live.applied == len(logs["events"]) and live.seq == logs["events"][-1]["seq"] > seen
            assert graph(pilot).states == {"start": "completed", "gate": "completed", "shipped": "completed"}
            await app.action_quit()
        proxy.server.close()  # type: ignore[union-attr]

    asyncio.run(main())


def test_follow_resumes_after_the_last_event_id(rt: Runtime) -> None:
    wf = approval_workflow(rt, "resume")
    ex = start(rt, wf, "v4")

    async def main() -> None:
        async with TarxClient.over_http(rt.url, owner_key(rt)) as client:
            first = []
            async for event in client.follow_execution(ex):
                first.append(event)
                if event.name == "approval_required":
                    break  # leave the stream, as a closed laptop lid would
            await client.approve_execution(ex, False, "not today")
            rest = [e async for e in client.follow_execution(ex, after=first[-1].seq)]
            seqs = [e.seq for e in first + rest]
            assert seqs == list(range(1, len(seqs) + 1))
            assert rest[-1].final and rest[-1].execution_state == "rejected"
            replay = [e async for e in client.follow_execution(ex)]  # a finished execution replays, then ends
            assert [e.seq for e in replay] == seqs

    asyncio.run(main())


def test_schedule_shows_next_runs_and_webhook_secret_is_shown_once(rt: Runtime) -> None:
    wf = approval_workflow(rt, "scheduled and hooked")
    shown: dict[str, str] = {}

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "workflows")
        await select_row(pilot, "scheduled and hooked")
        await pilot.press("enter")
        edit = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, WorkflowEditScreen)
                              and app.screen.wf is not None else None, what="the editor")
        await pilot.press("t")
        await submit_form(pilot, enabled="yes", cron="30 6 * * *", timezone="Europe/Madrid")
        await wait_for(pilot, lambda: edit.schedule_info and edit.schedule_info.get("enabled"), what="the schedule")
        summary = str(app.screen.query_one("#wf-summary").render())
        assert "schedule 30 6 * * * Europe/Madrid: next" in summary
        runs = edit.schedule_info["next_run_times"]  # type: ignore[index]
        assert len(runs) == 5 and all(t.endswith(("04:30:00.000Z", "05:30:00.000Z")) for t in runs)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        dialog = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, WebhookDialog) else None)
        shown["url"], shown["secret"] = dialog.url, dialog.secret
        assert dialog.secret.startswith("whsec_") and dialog.secret in str(dialog.query_one("#secret").render())
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is edit)

    drive(attached(rt), scenario)
    # the URL and secret shown are the ones the runtime checks: a delivery signed with them starts a run
    body = b'{"ticket": 42}'
    now = datetime.now(UTC)
    signature = Webhook(shown["secret"]).sign("msg_console_1", now, body.decode())
    r = httpx.post(shown["url"], content=body, headers={
        "webhook-id": "msg_console_1", "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature, "content-type": "application/json"})
    assert r.status_code == 202, r.text
    with api(rt) as c:
        assert c.get(f"/api/v1/workflows/{wf}/schedule").json()["cron"] == "30 6 * * *"
        assert c.get(f"/api/v1/executions/{r.json()['execution_id']}").json()["trigger"] == "webhook"


def test_dashboard_counts_executions_by_state(rt: Runtime) -> None:
    wf = approval_workflow(rt, "counted")

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await until_status(rt, start(rt, wf, "c"), "waiting_approval", pilot)
        with api(rt) as c:
            listed = c.get("/api/v1/executions", params={"limit": 200}).json()["items"]
        expected = {state: sum(1 for ex in listed if ex["status"] == state)
                    for state in ("waiting_approval", "completed", "cancelled", "rejected")}
        assert expected["waiting_approval"] >= 1 and expected["completed"] >= 1
        await open_view(pilot, "dashboard")
        shown = app.screen.query_one("#executions")
        await wait_for(pilot, lambda: all(f"{state.split('_')[0]}\u00a0{n}" in str(shown.render())
                                          for state, n in expected.items()), what="the execution counts")

    drive(attached(rt), scenario)
