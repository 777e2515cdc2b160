"""Workflows (issue 14): records, versions and validation, seed 001 and 002's examples as written, branching,
parallel branches, retry, timeout, the template sandbox, RBAC and project isolation. One runtime for the module;
httpNode calls go to a local server (`agent_http_allow_private` on for this runtime)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Runtime
from support.identity import bearer, owner_in_default_project, owner_key, user_key
from support.workflows import Server, chain, create, execute, get, run, wait

# The request rate limiter (seed 001: 30 requests in 5 s) is not under test here; polling would trip it.
ENV = {"TARX_AGENT_HTTP_ALLOW_PRIVATE": "true", "TARX_LOCAL_NODE": "false", "TARX_RATE_LIMITS": "false"}


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module(ENV)


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return owner_in_default_project(rt)


@pytest.fixture(scope="module")
def project_id(owner: dict[str, str]) -> str:
    return owner["X-Project-ID"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


LLM = {"prompt": "Write one word about: {{ input }}", "max_tokens": 6}


# ---- records and validation ------------------------------------------------------------------------------------

def test_crud_versions_and_executions_record_their_version(rt: Runtime, owner: dict[str, str],
                                                           project_id: str) -> None:
    nodes, edges = chain(("x", "transformNode", {"template": "v1:{{ input }}"}), ("out", "outputNode", {}))
    nodes[1]["position"] = {"x": 10, "y": 20}
    wf = create(rt, owner, nodes, edges, name="versions")
    assert wf["id"].startswith("wf_") and wf["project_id"] == project_id and wf["version"] == 1
    got = httpx.get(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner).json()
    assert [n["id"] for n in got["nodes"]] == ["t", "x", "out"] and got["nodes"][1]["position"] == {"x": 10, "y": 20}
    assert [(e["source"], e["target"]) for e in got["edges"]] == [("t", "x"), ("x", "out")]
    assert "schedule" in got
    first = wait(rt, owner, execute(rt, owner, wf["id"], "a"))
    assert first["output"] == "v1:a" and first["workflow_version"] == 1
    nodes[1]["config"] = {"template": "v2:{{ input }}"}
    r = httpx.put(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner, json={"nodes": nodes})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    r = httpx.put(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner, json={"name": "renamed"})
    assert r.json()["version"] == 3 and r.json()["name"] == "renamed"
    second = wait(rt, owner, execute(rt, owner, wf["id"], "b"))
    assert second["output"] == "v2:b" and second["workflow_version"] == 3
    assert get(rt, owner, first["id"])["output"] == "v1:a"  # an edit never changes a past run
    listed = httpx.get(rt.url + "/api/v1/workflows", headers=owner).json()
    assert wf["id"] in [w["id"] for w in listed["items"]] and "total" in listed
    paged = httpx.get(rt.url + "/api/v1/workflows", headers=owner, params={"per_page": 1, "page": 2}).json()
    assert (paged["page"], paged["per_page"], paged["total"]) == (2, 1, listed["total"])
    assert len(paged["items"]) == min(1, max(listed["total"] - 1, 0))
    r = httpx.delete(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner)
    assert r.status_code == 204
    assert httpx.get(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=owner).status_code == 404
    assert httpx.get(f"{rt.url}/api/v1/executions/{first['id']}", headers=owner).status_code == 404


@pytest.mark.parametrize(("nodes", "edges", "named", "words"), [
    ([{"id": "t", "type": "trigger"}, {"id": "z9", "type": "magicNode"}], [{"source": "t", "target": "z9"}],
     ["z9"], "unknown node type"),
    ([{"id": "t", "type": "trigger"}, {"id": "llm1", "type": "llmNode", "config": {"max_tokens": 5}}],
     [{"source": "t", "target": "llm1"}], ["llm1"], "bad config"),
    ([{"id": "t", "type": "trigger"}, {"id": "h1", "type": "httpNode", "config": {"url": "x", "verb": "GET"}}],
     [{"source": "t", "target": "h1"}], ["h1"], "bad config"),
    ([{"id": "t", "type": "trigger"}, {"id": "tx", "type": "transformNode", "config": {"template": "{{ a"}}],
     [{"source": "t", "target": "tx"}], ["tx"], "bad template"),
    ([{"id": "t", "type": "trigger"}, {"id": "a", "type": "outputNode"}],
     [{"source": "t", "target": "a"}, {"source": "a", "target": "ghost"}], ["ghost"], "do not exist"),
    ([{"id": "t", "type": "trigger"}, {"id": "a", "type": "transformNode", "config": {"template": "x"}},
      {"id": "b", "type": "transformNode", "config": {"template": "y"}}],
     [{"source": "t", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
     ["a", "b"], "cycle"),
    ([{"id": "t", "type": "trigger"}, {"id": "a", "type": "outputNode"}, {"id": "lost", "type": "outputNode"}],
     [{"source": "t", "target": "a"}], ["lost"], "not reachable"),
    ([{"id": "a", "type": "outputNode"}], [], [], "trigger"),
])
def test_invalid_graphs_are_422_naming_the_nodes(rt: Runtime, owner: dict[str, str], nodes: list[dict[str, Any]],
                                                 edges: list[dict[str, Any]], named: list[str], words: str) -> None:
    r = httpx.post(rt.url + "/api/v1/workflows", headers=owner, json={"name": "bad", "nodes": nodes, "edges": edges})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error_code"] == "VALIDATION_ERROR" and body["status"] == 422
    assert words in body["detail"], body
    for node_id in named:
        assert f"{node_id}" in body["detail"], body
    assert set(named) <= set(body["node_ids"]), body  # the console marks these nodes red
    # the same graph refused on update, and the stored workflow stays as it was
    good = create(rt, owner, *chain(("o", "outputNode", {})))
    r = httpx.put(f"{rt.url}/api/v1/workflows/{good['id']}", headers=owner, json={"nodes": nodes, "edges": edges})
    assert r.status_code == 422
    assert httpx.get(f"{rt.url}/api/v1/workflows/{good['id']}", headers=owner).json()["version"] == 1


def test_hostile_bodies(rt: Runtime, owner: dict[str, str]) -> None:
    for body in ({"name": "x"}, {"name": "x", "nodes": "nope"}, {"name": "", "nodes": []},
                 {"name": "x", "nodes": [{"id": "a b", "type": "trigger"}]},
                 {"name": "x", "nodes": [{"id": "t", "type": "trigger"}], "extra": 1},
                 {"name": "x", "nodes": [{"id": f"n{i}", "type": "trigger"} for i in range(201)]}):
        r = httpx.post(rt.url + "/api/v1/workflows", headers=owner, json=body)
        assert r.status_code == 422 and r.json()["error_code"] == "VALIDATION_ERROR", r.text
    wf = create(rt, owner, *chain(("o", "outputNode", {})))
    r = httpx.post(f"{rt.url}/api/v1/workflows/{wf['id']}/execute", headers=owner, content=b"{not json")
    assert r.status_code == 422, r.text
    r = httpx.get(rt.url + "/api/v1/executions", headers=owner, params={"status": "bogus"})
    assert r.status_code == 422, r.text
    r = httpx.get(f"{rt.url}/api/v1/executions/{'x' * 50}/stream", headers={**owner, "Last-Event-ID": "abc"})
    assert r.status_code in (400, 404), r.text


# ---- seed 001 and 002 examples, as written (only the base URL, key, project and workflow changed) --------------

def test_seed_examples(rt: Runtime, owner: dict[str, str], project_id: str,
                       capsys: pytest.CaptureFixture[str]) -> None:
    nodes, edges = chain(("llm", "llmNode", LLM), ("out", "outputNode", {"template": "Report: {{ prev }}"}))
    WORKFLOW = create(rt, owner, nodes, edges, name="seed")["id"]

    # seed 001: "Execute a Workflow (Example)"
    import requests
    BASE_URL = rt.url + "/api/v1"
    API_KEY = owner_key(rt)
    PROJECT_ID = project_id
    WORKFLOW_ID = WORKFLOW
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "X-Project-ID": PROJECT_ID,
        "Content-Type": "application/json",
    }
    # Execute workflow
    response = requests.post(
        f"{BASE_URL}/workflows/{WORKFLOW_ID}/execute",
        headers=headers,
        json={"input": "artificial intelligence in healthcare"},
    )
    execution_id = response.json()["execution_id"]
    print(f"Started: {execution_id}")
    # Poll for completion
    while True:
        status = requests.get(f"{BASE_URL}/executions/{execution_id}", headers=headers).json()
        if status["status"] in ["completed", "failed", "rejected"]:
            print(f"Done: {status['status']}")
            print(f"Output: {status['output']}")
            break
        time.sleep(2)
    assert status["status"] == "completed" and status["output"].startswith("Report: ")
    assert set(status["node_results"]) == {"t", "llm", "out"}
    assert status["node_results"]["llm"]["status"] == "completed" and status["node_results"]["llm"]["output"]

    # seed 002: "Trigger a Workflow and Get Results"
    API, KEY, PROJECT, WORKFLOW_ID = rt.url, owner_key(rt), project_id, WORKFLOW
    resp = httpx.post(
        f"{API}/api/v1/workflows/{WORKFLOW_ID}/execute",
        headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
        json={"input": "Monthly sales report Q1 2025"},
        timeout=30,
    )
    execution_id = resp.json()["execution_id"]
    print("Started:", execution_id)

    def wait_for_execution(execution_id: str, timeout: int = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            ex = httpx.get(
                f"{API}/api/v1/executions/{execution_id}",
                headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
            ).json()
            if ex["status"] in ("completed", "failed", "cancelled"):
                return ex
            time.sleep(3)
        raise TimeoutError("Execution did not finish in time")

    result = wait_for_execution(execution_id)
    print("Status:", result["status"])
    print("Output:", result["output"])
    print("Node results:", result["node_results"])
    assert result["status"] == "completed"

    # "Stream live events instead of polling". The one change: `resp.iter_bytes()` for `resp`. sseclient-py reads
    # `for chunk in event_source`, and an httpx.Response is not iterable, so the example as printed fails in the
    # client library before any byte is read, whatever the server does.
    import sseclient  # pip install sseclient-py
    resp = httpx.get(
        f"{API}/api/v1/executions/{execution_id}/stream",
        headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
        timeout=300,
    )
    seen = []
    for event in sseclient.SSEClient(resp.iter_bytes()).events():
        data = json.loads(event.data)
        print(data["type"], data.get("status", ""))
        seen.append(data["type"])
        if data["type"] in ("execution_complete", "execution_failed"):
            print("Output:", data.get("output"))
            break
    assert seen[-1] == "execution_complete" and "node_start" in seen and "node_complete" in seen

    # "List a workflow's execution history"
    executions = httpx.get(
        f"{API}/api/v1/workflows/{WORKFLOW_ID}/executions",
        headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
        params={"limit": 10},
    ).json()
    for ex in executions:
        print(ex["id"], ex["status"], ex.get("completed_at"))
    assert [ex["id"] for ex in executions][:2] == [execution_id, status["id"]]

    printed = capsys.readouterr().out
    assert f"Output: {result['output']}" in printed and "execution_complete completed" in printed


# ---- the engine ------------------------------------------------------------------------------------------------

def test_branching_on_conditions(rt: Runtime, owner: dict[str, str]) -> None:
    nodes = [{"id": "t", "type": "trigger"},
             {"id": "check", "type": "conditionNode", "config": {"condition": "input.amount > 100"}},
             {"id": "big", "type": "transformNode", "config": {"template": "big {{ input.amount }}"}},
             {"id": "small", "type": "transformNode", "config": {"template": "small {{ input.amount }}"}},
             {"id": "vip", "type": "transformNode", "config": {"mapping": {"who": "{{ input.name | upper }}"}}},
             {"id": "out", "type": "outputNode", "config": {"template": "{{ prev }}"}}]
    edges = [{"source": "t", "target": "check"},
             {"source": "check", "target": "big", "label": "true"},
             {"source": "check", "target": "small", "label": "false"},
             {"source": "t", "target": "vip", "condition": "input.name == 'ada'"},
             {"source": "big", "target": "out"}, {"source": "small", "target": "out"}]
    wf = create(rt, owner, nodes, edges)
    high = wait(rt, owner, execute(rt, owner, wf["id"], {"amount": 500, "name": "ada"}))
    low = wait(rt, owner, execute(rt, owner, wf["id"], {"amount": 5, "name": "bob"}))
    assert high["status"] == low["status"] == "completed"
    assert high["output"] == "big 500" and low["output"] == "small 5"
    hr, lr = high["node_results"], low["node_results"]
    assert hr["check"]["output"] is True and lr["check"]["output"] is False
    assert hr["small"]["status"] == "skipped" and lr["big"]["status"] == "skipped"
    assert hr["vip"]["status"] == "completed" and hr["vip"]["output"] == {"who": "ADA"}
    assert lr["vip"]["status"] == "skipped"
    # Triggers of the execution's kind start it (a manual run here); what only another trigger leads to is skipped
    nodes = [{"id": "by_hand", "type": "trigger"}, {"id": "hook", "type": "trigger",
                                                   "config": {"trigger_type": "webhook"}},
             {"id": "a", "type": "transformNode", "config": {"template": "manual {{ input }}"}},
             {"id": "b", "type": "transformNode", "config": {"template": "hooked {{ input }}"}},
             {"id": "out", "type": "outputNode"}]
    edges = [{"source": "by_hand", "target": "a"}, {"source": "hook", "target": "b"},
             {"source": "a", "target": "out"}, {"source": "b", "target": "out"}]
    ex = run(rt, owner, nodes, edges, input="x")
    assert ex["output"] == "manual x" and ex["trigger"] == "manual"
    assert ex["node_results"]["hook"]["status"] == ex["node_results"]["b"]["status"] == "skipped"


def test_rag_and_agent_nodes(rt: Runtime, owner: dict[str, str]) -> None:
    text = "The lighthouse keeper on Varna Point is named Odile Marchetti.\n\nTides here rise twice a day."
    r = httpx.post(rt.url + "/api/v1/rags", headers=owner, json={"name": "notes", "kind": "text",
                                                                "config": {"text": text}})
    assert r.status_code == 201, r.text
    source = r.json()["id"]
    deadline = time.monotonic() + 120
    while httpx.get(f"{rt.url}/api/v1/rags/{source}", headers=owner).json()["state"] != "ready":
        assert time.monotonic() < deadline, "the source was not indexed"
        time.sleep(0.2)
    r = httpx.post(rt.url + "/api/v1/agents", headers=owner, json={
        "name": "wf-agent", "instructions": "Answer in a few words.", "temperature": 0, "max_tokens": 8})
    assert r.status_code == 201, r.text
    agent = r.json()["id"]
    nodes, edges = chain(("find", "ragNode", {"query": "{{ input }}", "rag_source_ids": [source], "k": 1}),
                         ("ask", "agentNode", {"agent_id": agent, "message": "{{ prev[0].text }} Who is the keeper?"}),
                         ("out", "outputNode", {"template": "{{ nodes.find.output[0].document }}|{{ prev }}"}))
    ex = run(rt, owner, nodes, edges, input="who keeps the lighthouse")
    assert ex["status"] == "completed", ex
    hits = ex["node_results"]["find"]["output"]
    assert len(hits) == 1 and "Odile" in hits[0]["text"] and hits[0]["source_id"] == source
    answer = ex["node_results"]["ask"]["output"]
    assert isinstance(answer, str) and answer.strip() and ex["output"].endswith("|" + answer)
    missing = run(rt, owner, *chain(("ask", "agentNode", {"agent_id": "agent_nope"})))
    assert missing["status"] == "failed" and "agent_nope" in missing["node_results"]["ask"]["error"]


def test_an_http_node_sends_its_method_headers_and_body_and_follows_redirects(rt: Runtime, owner: dict[str, str],
                                                                              server: Server) -> None:
    config = {"url": f"{server.url}/moved/{{{{ input }}}}", "method": "PUT", "headers": {"X-Token": "t-{{ input }}"},
              "body": '{"said": "{{ input }}"}'}
    ex = run(rt, owner, *chain(("h", "httpNode", config)), input="abc")
    assert ex["status"] == "completed", ex
    out = ex["node_results"]["h"]["output"]
    assert out["status"] == 200 and out["url"] == f"{server.url}/echo/abc"
    assert out["body"] == {"path": "/echo/abc", "method": "PUT", "body": '{"said": "abc"}', "x_token": "t-abc"}


def test_parallel_branches_overlap(rt: Runtime, owner: dict[str, str], server: Server) -> None:
    nodes = [{"id": "t", "type": "trigger"},
             *[{"id": f"p{i}", "type": "httpNode", "config": {"url": f"{server.url}/slow/{i}?s=1"}} for i in (1, 2)],
             {"id": "join", "type": "outputNode",
              "config": {"template": "{{ p1.output.status }}+{{ p2.output.status }}"}}]
    edges = [{"source": "t", "target": "p1"}, {"source": "t", "target": "p2"},
             {"source": "p1", "target": "join"}, {"source": "p2", "target": "join"}]
    ex = run(rt, owner, nodes, edges)
    assert ex["status"] == "completed" and ex["output"] == "200+200"
    (a1, b1), (a2, b2) = server.hits["/slow/1"][0], server.hits["/slow/2"][0]
    assert a1 < b2 and a2 < b1, "the two branches' requests did not overlap"
    r1, r2 = ex["node_results"]["p1"], ex["node_results"]["p2"]
    assert r1["started_at"] < r2["completed_at"] and r2["started_at"] < r1["completed_at"]
    assert ex["node_results"]["join"]["started_at"] >= max(r1["completed_at"], r2["completed_at"])


def test_retry_with_backoff(rt: Runtime, owner: dict[str, str], server: Server) -> None:
    config = {"url": f"{server.url}/flaky/a?fail=2", "retries": 2, "retry_backoff_seconds": 0.2}
    ex = run(rt, owner, *chain(("h", "httpNode", config)))
    assert ex["status"] == "completed", ex
    assert ex["node_results"]["h"]["attempts"] == 3 and ex["node_results"]["h"]["output"]["status"] == 200
    hits = server.hits["/flaky/a"]
    assert hits[1][0] - hits[0][1] >= 0.15 and hits[2][0] - hits[1][1] >= 0.35  # 0.2 s, then 0.4 s
    config = {"url": f"{server.url}/flaky/b?fail=5", "retries": 1, "retry_backoff_seconds": 0}
    ex = run(rt, owner, *chain(("h", "httpNode", config), ("never", "outputNode", {})))
    assert ex["status"] == "failed" and "HTTP 500" in ex["error"] and "'h'" in ex["error"]
    assert ex["node_results"]["h"]["status"] == "failed" and ex["node_results"]["h"]["attempts"] == 2
    assert "never" not in ex["node_results"] or ex["node_results"]["never"]["status"] != "completed"
    assert server.calls["/flaky/b"] == 2


def test_timeout(rt: Runtime, owner: dict[str, str], server: Server) -> None:
    ex = run(rt, owner, *chain(("slow", "httpNode", {"url": f"{server.url}/slow/t?s=10", "timeout_seconds": 0.5})))
    assert ex["status"] == "failed"
    node = ex["node_results"]["slow"]
    assert node["status"] == "failed" and "timed out after 0.5 s" in node["error"]
    assert 400 <= node["duration_ms"] < 5000  # the answer would take 10 s


@pytest.mark.parametrize("template", [
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ input.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ 'x' * 100000000 }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
])
def test_template_sandbox_escape_fails_the_node(rt: Runtime, owner: dict[str, str], template: str) -> None:
    ex = run(rt, owner, *chain(("evil", "transformNode", {"template": template, "retries": 3})))
    assert ex["status"] == "failed"
    node = ex["node_results"]["evil"]
    assert node["status"] == "failed" and node["attempts"] == 1  # never retried: it cannot succeed
    assert "template error" in node["error"], node["error"]
    assert any(w in node["error"] for w in ("unsafe", "undefined", "above", "longer than 2 s")), node["error"]


# ---- access ----------------------------------------------------------------------------------------------------

def test_rbac_and_other_projects(rt: Runtime, owner: dict[str, str], project_id: str) -> None:
    wf = create(rt, owner, *chain(("o", "outputNode", {})))
    ex_id = execute(rt, owner, wf["id"])
    wait(rt, owner, ex_id)
    r = httpx.post(f"{rt.url}/api/v1/projects/{project_id}/members", headers=owner,
                   json={"email": "wf-member@example.com", "role": "member"})
    assert r.status_code in (200, 201), r.text
    member = {**bearer(user_key(rt, "wf-member@example.com")), "X-Project-ID": project_id}
    assert httpx.get(f"{rt.url}/api/v1/workflows/{wf['id']}", headers=member).status_code == 200
    assert httpx.get(f"{rt.url}/api/v1/executions/{ex_id}", headers=member).status_code == 200
    assert httpx.get(f"{rt.url}/api/v1/executions/{ex_id}/stream", headers=member).status_code == 200
    nodes, edges = chain(("o", "outputNode", {}))
    for method, path, body in (("POST", "/api/v1/workflows", {"name": "m", "nodes": nodes, "edges": edges}),
                               ("PUT", f"/api/v1/workflows/{wf['id']}", {"name": "m"}),
                               ("DELETE", f"/api/v1/workflows/{wf['id']}", None),
                               ("POST", f"/api/v1/workflows/{wf['id']}/execute", {"input": 1}),
                               ("POST", f"/api/v1/executions/{ex_id}/cancel", None),
                               ("POST", f"/api/v1/executions/{ex_id}/approve", {"approved": True})):
        r = httpx.request(method, rt.url + path, headers=member, json=body)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (method, path, r.text)
    other = httpx.post(rt.url + "/api/v1/projects", headers=owner, json={"name": "Other WF"}).json()
    there = {**owner, "X-Project-ID": other["id"]}
    for method, path in (("GET", f"/api/v1/workflows/{wf['id']}"), ("PUT", f"/api/v1/workflows/{wf['id']}"),
                         ("DELETE", f"/api/v1/workflows/{wf['id']}"),
                         ("POST", f"/api/v1/workflows/{wf['id']}/execute"),
                         ("GET", f"/api/v1/workflows/{wf['id']}/executions"),
                         ("GET", f"/api/v1/executions/{ex_id}"), ("GET", f"/api/v1/executions/{ex_id}/logs"),
                         ("GET", f"/api/v1/executions/{ex_id}/stream"),
                         ("POST", f"/api/v1/executions/{ex_id}/cancel"),
                         ("POST", f"/api/v1/executions/{ex_id}/approve")):
        body = {"approved": True} if path.endswith("approve") else ({"name": "x"} if method == "PUT" else {})
        r = httpx.request(method, rt.url + path, headers=there, json=body)
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", (method, path, r.text)
    listed = httpx.get(rt.url + "/api/v1/executions", headers=there).json()
    assert ex_id not in [e["id"] for e in listed["items"]]


def test_execution_list_filters_and_cursor(rt: Runtime, owner: dict[str, str]) -> None:
    wf = create(rt, owner, *chain(("o", "outputNode", {})))
    ids = [execute(rt, owner, wf["id"], i) for i in range(5)]
    for i in ids:
        wait(rt, owner, i)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow_id": wf["id"], "limit": 2, "status": "completed"}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(rt.url + "/api/v1/executions", headers=owner, params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert httpx.get(rt.url + "/api/v1/executions", headers=owner,
                     params={"workflow_id": wf["id"], "status": "failed"}).json()["items"] == []
    logs = httpx.get(f"{rt.url}/api/v1/executions/{ids[0]}/logs", headers=owner).json()
    assert [n["node_id"] for n in logs["nodes"]] == ["t", "o"] and logs["nodes"][1]["input"] == 0
    assert [e["seq"] for e in logs["events"]] == list(range(1, len(logs["events"]) + 1))
    assert logs["events"][-1]["event"] == "execution_complete"


def test_a_runtime_with_default_policies(make_runtime: Any) -> None:
    """The address policy as shipped (httpNode refuses loopback), and the hourly execution limit (set to 3)."""
    rt = make_runtime({"TARX_LOCAL_NODE": "false", "TARX_WORKFLOW_EXECUTIONS_PER_HOUR": "3"})
    project = httpx.get(rt.url + "/api/v1/projects", headers=bearer(owner_key(rt))).json()["items"][0]["id"]
    h = {**bearer(owner_key(rt)), "X-Project-ID": project}
    ex = run(rt, h, *chain(("h", "httpNode", {"url": "http://127.0.0.1:9/x", "retries": 2})))
    assert ex["status"] == "failed" and "loopback" in ex["node_results"]["h"]["error"]
    assert ex["node_results"]["h"]["attempts"] == 1  # a refused address is not retried
    wf = create(rt, h, *chain(("o", "outputNode", {})))
    for i in range(2):
        execute(rt, h, wf["id"], i)
    r = httpx.post(f"{rt.url}/api/v1/workflows/{wf['id']}/execute", headers=h, json={"input": 4})
    assert r.status_code == 429 and r.json()["error_code"] == "RATE_LIMIT_EXCEEDED", r.text
    assert 3000 <= int(r.headers["retry-after"]) <= 3601
    assert len(httpx.get(rt.url + "/api/v1/executions", headers=h).json()["items"]) == 3
