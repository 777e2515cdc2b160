"""An execution keeps the graph of the workflow version that ran: `GET /api/v1/executions/{id}` carries it (lists
and action answers do not), and the console's live view draws it, not the workflow as it is after an edit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from textual.pilot import Pilot

from conftest import Runtime
from support.console import attached, drive, open_view, select_row, wait_for
from support.identity import bearer, owner_key
from support.workflows import chain, create, execute, wait
from tarx_console.screens.executions import ExecutionLiveScreen
from tarx_console.widgets.graph import WorkflowGraph

OLD = chain(("old_step", "transformNode", {"template": "{{ input | upper }}"}),
            ("out", "outputNode", {"template": "old {{ prev }}"}))
NEW = chain(("new_step", "transformNode", {"template": "{{ input | lower }}"}),
            ("out", "outputNode", {"template": "new {{ prev }}"}))


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    return make_runtime_module({"TARX_LOCAL_NODE": "false", "TARX_RATE_LIMITS": "false"}, name="executions-graph")


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return bearer(owner_key(rt))


@pytest.fixture(scope="module")
def runs(rt: Runtime, owner: dict[str, str]) -> dict[str, Any]:
    """A workflow run at version 1, then edited (a different middle node) and run again at version 2."""
    wf = create(rt, owner, *OLD, name="edited after its run")
    old = wait(rt, owner, execute(rt, owner, wf["id"], "Hello"))
    assert old["status"] == "completed" and old["output"] == "old HELLO", old
    nodes, edges = NEW
    r = httpx.put(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner, json={"nodes": nodes, "edges": edges})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == wf["version"] + 1
    new = wait(rt, owner, execute(rt, owner, wf["id"], "Hello"))
    assert new["status"] == "completed" and new["output"] == "new hello", new
    return {"workflow": wf, "old": old["id"], "new": new["id"]}


def drawn(g: WorkflowGraph) -> str:
    return "\n".join(g.render_line(y).text for y in range(g.size.height))


def ids(graph: dict[str, Any]) -> list[str]:
    return [n["id"] for n in graph["nodes"]]


def test_the_execution_carries_the_graph_of_the_version_that_ran(rt: Runtime, owner: dict[str, str],
                                                                 runs: dict[str, Any]) -> None:
    wf = runs["workflow"]
    now = httpx.get(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner).json()
    assert ids(now) == ["t", "new_step", "out"]

    old = httpx.get(f"{rt.url}/api/v1/executions/{runs['old']}", headers=owner).json()
    assert old["workflow_version"] == wf["version"]
    assert ids(old["graph"]) == ["t", "old_step", "out"] and set(old["graph"]) == {"nodes", "edges"}
    assert old["graph"]["nodes"][1]["config"] == {"template": "{{ input | upper }}"}
    assert {(e["source"], e["target"]) for e in old["graph"]["edges"]} == {("t", "old_step"), ("old_step", "out")}
    assert set(old["node_results"]) == {"t", "old_step", "out"}  # the results match the graph drawn

    new = httpx.get(f"{rt.url}/api/v1/executions/{runs['new']}", headers=owner).json()
    assert new["workflow_version"] == now["version"] and ids(new["graph"]) == ids(now)
    assert new["graph"]["edges"] == now["edges"]

    # lists stay small: no graph per row, in either list (the workflow's is a bare array, seed 002)
    for path in ("/api/v1/executions", f"/api/v1/workflows/{wf['id']}/executions"):
        r = httpx.get(rt.url + path, headers=owner)
        assert r.status_code == 200, r.text
        items = r.json() if path.startswith("/api/v1/workflows/") else r.json()["items"]
        assert {runs["old"], runs["new"]} <= {ex["id"] for ex in items}
        assert all("graph" not in ex for ex in items), path

    r = httpx.get(f"{rt.url}/api/v1/executions/exec_nope", headers=owner)
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", r.text


def test_the_live_view_draws_the_graph_that_ran(rt: Runtime, runs: dict[str, Any]) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "executions")
        await select_row(pilot, runs["old"])
        await pilot.press("enter")
        live = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionLiveScreen) else None)
        await wait_for(pilot, lambda: live.status == "completed", what="the finished run")
        g = app.screen.query_one(WorkflowGraph)
        await wait_for(pilot, lambda: g.states.get("old_step") == "completed", what="the old node, completed")
        assert g.drawing is not None and set(g.drawing.boxes) == {"t", "old_step", "out"}
        assert "new_step" not in g.states
        assert live.VIEW_TITLE.startswith("Executions > edited after its run > ")
        assert "old_step" in drawn(g) and "new_step" not in drawn(g)  # on screen, not only in the model
        await pilot.press("escape")

        # the run after the edit draws the new node
        await select_row(pilot, runs["new"])
        await pilot.press("enter")
        live = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, ExecutionLiveScreen)
                              and app.screen.execution_id == runs["new"] else None)
        g = app.screen.query_one(WorkflowGraph)
        await wait_for(pilot, lambda: g.states.get("new_step") == "completed", what="the new node, completed")
        assert g.drawing is not None and set(g.drawing.boxes) == {"t", "new_step", "out"}

    drive(attached(rt), scenario)
