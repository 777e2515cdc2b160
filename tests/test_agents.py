"""Agents (issue 13): CRUD and RBAC in the project context, seed 002's chat examples verbatim, every SSE event
type in a real run with a forced tool call, a failing tool, usage accounting, skills, and the address policy of
the `http_request` tool. One runtime for the module; its outbound HTTP goes to a dead local proxy, so nothing a
tool does can leave this machine."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
import time
import types
from typing import Any

import httpx
import pytest

from conftest import LONG_PROMPT, REPO, Runtime, free_port
from runtime.agents.loop import MarkupFilter, invoke, without_markup
from runtime.agents.service import function_name
from runtime.agents.tools import Tool, ToolError, address_allowed, check_url, http_request_tool, rag_search_tool
from runtime.inference.registry import smollm2_path
from runtime.skills import SkillCatalog
from support.identity import bearer, owner_in_default_project, owner_key, user_key
from support.redirects import FINAL, FOLLOWED, PUBLIC, REFUSED, redirecting

DEAD = "http://127.0.0.1:9"
MCP_SERVER = str(REPO / "tests" / "support" / "mcp_server.py")


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    # Rate limits off: the tests' polls would pass /api/v1's limit (tests/test_auth_hardening.py tests the limits).
    return make_runtime_module({"TARX_AGENT_MAX_TOOL_ROUNDS": "2", "TARX_RATE_LIMITS": "false", "HTTP_PROXY": DEAD,
                                "HTTPS_PROXY": DEAD, "ALL_PROXY": DEAD, "NO_PROXY": "", "http_proxy": DEAD,
                                "https_proxy": DEAD, "all_proxy": DEAD, "no_proxy": ""})


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    """The owner in their default project (a test below gives them a second one)."""
    return owner_in_default_project(rt)


@pytest.fixture(scope="module")
def project_id(owner: dict[str, str]) -> str:
    return owner["X-Project-ID"]


def make_agent(rt: Runtime, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "helper", "instructions": "You are a helpful assistant.", "temperature": 0, "max_tokens": 24,
            **fields}
    r = httpx.post(rt.url + "/api/v1/agents", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def sse_events(rt: Runtime, headers: dict[str, str], agent_id: str, message: str) -> list[tuple[str, dict]]:
    events, current = [], "message"
    with httpx.stream("POST", f"{rt.url}/api/v1/agents/{agent_id}/chat", headers=headers,
                      json={"message": message}, timeout=300) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                current = line[6:].strip()
            elif line.startswith("data:"):
                events.append((current, json.loads(line[5:].strip())))
    return events


# ---- the record -------------------------------------------------------------------------------------------------

def test_crud_in_the_project(rt: Runtime, owner: dict[str, str], project_id: str) -> None:
    c = rt.client(headers=owner)
    agent = make_agent(rt, owner, tools=["current_time"], skills=["summarize"], rag_source_ids=["rag_1"],
                       execution_policy="local", description="d")
    assert agent["id"].startswith("agent_") and agent["project_id"] == project_id
    assert agent["tools"] == ["current_time"] and agent["skills"] == ["summarize"]
    assert agent["rag_source_ids"] == ["rag_1"] and agent["model"] == "tarx-local"
    assert agent["temperature"] == 0 and agent["max_tokens"] == 24 and agent["tool_choice"] == "auto"
    assert agent["id"] in [a["id"] for a in c.get("/api/v1/agents").json()["items"]]
    assert c.get(f"/api/v1/agents/{agent['id']}").json() == agent
    r = c.put(f"/api/v1/agents/{agent['id']}", json={"name": "renamed", "max_tokens": 40})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["name"] == "renamed" and changed["max_tokens"] == 40 and changed["tools"] == ["current_time"]
    assert changed["created_at"] == agent["created_at"]
    for bad in ({"tools": ["no_such_tool"]}, {"skills": ["no-such-skill"]}, {"execution_policy": "anywhere"},
                {"tool_choice": "http_request"}, {"model": "no-such-model"}, {"model": "tarx-embed"}):
        r = c.put(f"/api/v1/agents/{agent['id']}", json=bad)
        assert r.status_code == 400 and r.json()["detail"], (bad, r.text)
    r = c.post("/api/v1/agents", json={"name": "typo", "model": "tarx-locl"})
    assert r.status_code == 400 and "tarx-locl" in r.json()["detail"] and "tarx-local" in r.json()["detail"], r.text
    # A hosted plane's model is the upstream's to know: not checked here.
    r = c.post("/api/v1/agents", json={"name": "far", "model": "big-upstream-model",
                                       "execution_policy": "supercomputer-fast"})
    assert r.status_code == 201, r.text
    assert c.post("/api/v1/agents", json={"name": "x", "colour": "red"}).status_code == 422
    assert c.delete(f"/api/v1/agents/{agent['id']}").status_code == 204
    r = c.get(f"/api/v1/agents/{agent['id']}")
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    assert c.delete(f"/api/v1/agents/{agent['id']}").status_code == 404


def test_members_read_and_other_projects_do_not_see(rt: Runtime, owner: dict[str, str], project_id: str) -> None:
    agent = make_agent(rt, owner)
    r = httpx.post(f"{rt.url}/api/v1/projects/{project_id}/members", headers=owner,
                   json={"email": "member@example.com", "role": "member"})
    assert r.status_code in (200, 201), r.text
    member = {**bearer(user_key(rt, "member@example.com")), "X-Project-ID": project_id}
    assert httpx.get(rt.url + "/api/v1/agents", headers=member).status_code == 200
    assert httpx.get(f"{rt.url}/api/v1/agents/{agent['id']}", headers=member).json()["name"] == "helper"
    for method, path, body in (("POST", "/api/v1/agents", {"name": "mine"}),
                               ("PUT", f"/api/v1/agents/{agent['id']}", {"name": "mine"}),
                               ("DELETE", f"/api/v1/agents/{agent['id']}", None)):
        r = httpx.request(method, rt.url + path, headers=member, json=body)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (method, r.text)
    other = httpx.post(rt.url + "/api/v1/projects", headers=owner, json={"name": "Other"}).json()
    elsewhere = make_agent(rt, {**owner, "X-Project-ID": other["id"]}, name="elsewhere")
    mine = {**owner, "X-Project-ID": project_id}
    assert httpx.get(f"{rt.url}/api/v1/agents/{elsewhere['id']}", headers=mine).status_code == 404
    assert httpx.put(f"{rt.url}/api/v1/agents/{elsewhere['id']}", headers=mine, json={"name": "x"}).status_code == 404
    assert elsewhere["id"] not in [a["id"] for a in httpx.get(rt.url + "/api/v1/agents", headers=mine).json()["items"]]
    assert httpx.post(f"{rt.url}/api/v1/agents/{elsewhere['id']}/test", headers=mine,
                      json={"message": "hi"}).status_code == 404


# ---- skills -----------------------------------------------------------------------------------------------------

def test_skills(rt: Runtime, owner: dict[str, str]) -> None:
    listed = httpx.get(rt.url + "/api/v1/skills", headers=owner).json()["items"]
    ids = {s["id"] for s in listed}
    assert {"summarize", "classify", "extract-json"} <= ids
    one = httpx.get(rt.url + "/api/v1/skills/classify", headers=owner).json()
    assert one["prompt"] and one["model"] == "tarx-local" and one["builtin"] is True
    assert httpx.get(rt.url + "/api/v1/skills/nope", headers=owner).status_code == 404
    assert httpx.get(rt.url + "/api/v1/skills").status_code == 401


def test_skill_prompts_join_the_instructions() -> None:
    from runtime.agents.service import AgentService

    catalog = SkillCatalog()
    fake = types.SimpleNamespace(skills=catalog)
    text = AgentService.instructions(fake, {"instructions": "Be brief.", "skills": ["classify", "summarize"]})  # type: ignore[arg-type]
    assert text.startswith("Be brief.")
    assert catalog.get("classify").prompt in text and catalog.get("summarize").prompt in text  # type: ignore[union-attr]


# ---- seed 002's examples, verbatim (only API, KEY, PROJECT and AGENT changed) ---------------------------------

def test_seed_002_examples(rt: Runtime, owner: dict[str, str], project_id: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    API = rt.url
    KEY = owner_key(rt)
    PROJECT = project_id
    AGENT = make_agent(rt, owner, name="seed")["id"]

    # Streaming (default)
    with httpx.stream(
        "POST",
        f"{API}/api/v1/agents/{AGENT}/chat",
        headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
        json={
            "message": "Summarise the top risks in this dataset",
            "history": [],  # previous turns: [{role, content}, ...]
            "stream": True,
        },
        timeout=120,
    ) as resp:
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            import json
            event_type = ""  # noqa: F841
            # event type comes on the preceding "event:" line — track it separately
            data = json.loads(line[5:].strip())
            print(data)

    # A full Python SSE consumer
    def chat_stream(message: str, history: list[dict] = []):  # noqa: B006
        current_event = "message"
        with httpx.stream(
            "POST",
            f"{API}/api/v1/agents/{AGENT}/chat",
            headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
            json={"message": message, "history": history, "stream": True},
            timeout=120,
        ) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if line.startswith("event:"):
                    current_event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = json.loads(line[5:].strip())
                    if current_event == "delta":
                        print(payload["content"], end="", flush=True)
                    elif current_event == "tool_call":
                        print(f"\n[tool: {payload['name']}]")
                    elif current_event == "done":
                        print(f"\n[tokens: {payload}]")
                    elif current_event == "error":
                        raise RuntimeError(payload["detail"])

    chat_stream("What's the weather like in Madrid?")

    # Non-streaming
    resp = httpx.post(
        f"{API}/api/v1/agents/{AGENT}/chat",
        headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
        json={"message": "Classify this text as positive or negative.", "stream": False},
        timeout=60,
    )
    result = resp.json()
    print(result["response"])
    print(result["tool_calls"])  # list of tool calls the agent made

    # Multi-turn conversation
    history = []

    def turn(message: str) -> str:
        resp = httpx.post(
            f"{API}/api/v1/agents/{AGENT}/chat",
            headers={"Authorization": f"Bearer {KEY}", "X-Project-ID": PROJECT},
            json={"message": message, "history": history, "stream": False},
            timeout=60,
        ).json()
        history.append({"role": "user", "content": message})
        history.append({"role": "assistant", "content": resp["response"]})
        return resp["response"]

    print(turn("Who wrote Hamlet?"))
    print(turn("What year was it written?"))  # uses history — knows "it" = Hamlet

    # The response schema, and what the examples printed.
    assert set(result) == {"response", "model", "provider", "input_tokens", "output_tokens", "tool_calls"}
    assert result["model"] == "tarx-local" and result["provider"] and result["tool_calls"] == []
    assert result["input_tokens"] > 0 and result["output_tokens"] > 0
    assert len(history) == 4 and all(isinstance(t["content"], str) for t in history)
    out = capsys.readouterr().out
    assert "[tokens: {" in out and "'input_tokens'" in out


# ---- the tool loop in real runs ---------------------------------------------------------------------------------

def test_every_event_type_with_a_forced_tool_call(rt: Runtime, owner: dict[str, str]) -> None:
    agent = make_agent(rt, owner, name="clock", tools=["current_time"], tool_choice="current_time", max_tokens=96)
    events = sse_events(rt, owner, agent["id"], "What time is it now?")
    kinds = [k for k, _ in events]
    assert kinds[0] == "tool_call" and kinds[-1] == "done", events
    call, result = events[0][1], events[1][1]
    assert call["name"] == "current_time" and isinstance(call["args"], dict)
    assert kinds[1] == "tool_result" and result["name"] == "current_time"
    if result["success"]:
        assert json.loads(result["result"])["time"]
    assert "delta" in kinds and all(isinstance(p["content"], str) for k, p in events if k == "delta")
    done = events[-1][1]
    assert done["input_tokens"] > 0 and done["output_tokens"] > 0
    # the same agent without streaming: the tool calls it made are in the answer
    body = httpx.post(f"{rt.url}/api/v1/agents/{agent['id']}/test", headers=owner,
                      json={"message": "What time is it now?"}, timeout=300).json()
    assert body["tool_calls"][0]["name"] == "current_time" and "success" in body["tool_calls"][0]
    # an agent whose model file was removed after it was made: the stream carries an `error` event; without
    # streaming, a 502
    dropped = rt.data_dir / "models" / "gone-soon.gguf"
    dropped.parent.mkdir(exist_ok=True)
    dropped.symlink_to(smollm2_path())
    broken = make_agent(rt, owner, name="broken", model="gone-soon")
    dropped.unlink()
    events = sse_events(rt, owner, broken["id"], "hello")
    assert events == [("error", {"detail": events[0][1]["detail"]})] and "gone-soon" in events[0][1]["detail"]
    r = httpx.post(f"{rt.url}/api/v1/agents/{broken['id']}/chat", headers=owner,
                   json={"message": "hello", "stream": False}, timeout=60)
    assert r.status_code == 502 and "gone-soon" in r.json()["detail"]


def test_a_call_cut_by_max_tokens_is_not_run(rt: Runtime, owner: dict[str, str]) -> None:
    agent = make_agent(rt, owner, name="cut", tools=["http_request"], tool_choice="http_request", max_tokens=24)
    events = sse_events(rt, owner, agent["id"], "Fetch https://example.com/some/very/long/path/to/a/page")
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "done", events
    result = events[1][1]
    assert result["success"] is False and "cut short by max_tokens" in result["result"], result
    assert "<tool_call>" not in "".join(p["content"] for k, p in events if k == "delta"), events


def test_the_last_round_never_answers_with_tool_call_markup(rt: Runtime, owner: dict[str, str]) -> None:
    """This runtime allows 2 tool rounds. Forced to call, the model spends both on calls (the first cut by
    max_tokens); in the last round, offered no tools, it writes a call once more as plain `<tool_call>...` text.
    That markup is never the answer, streamed or not: it is dropped and the run ends with `done`, as Dify's last
    iteration. (Before, the raw markup was streamed and returned as the answer.)"""
    agent = make_agent(rt, owner, name="insistent", tools=["rag_search", "current_time"], tool_choice="rag_search",
                       instructions="", max_tokens=64)
    events = sse_events(rt, owner, agent["id"], "What does the clock answer say?")
    kinds = [k for k, _ in events]
    assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 2, events  # every round used
    assert kinds[-1] == "done", events
    assert "tool_call" not in "".join(p["content"] for k, p in events if k == "delta"), events  # tokens: `<`, `tool`
    assert events[-1][1].get("incomplete") == "max_tool_rounds", events  # the client is told the answer was cut
    r = httpx.post(f"{rt.url}/api/v1/agents/{agent['id']}/chat", headers=owner, timeout=300,
                   json={"message": "What does the clock answer say?", "stream": False})
    assert r.status_code == 200 and len(r.json()["tool_calls"]) == 2, r.text
    assert "tool_call" not in r.json()["response"], r.text
    assert r.json()["incomplete"] == "max_tool_rounds", r.text


def test_markup_is_dropped_however_the_stream_splits_it() -> None:
    """Text around calls is kept (a `<` that starts no tag too); a call is dropped whole, an unclosed one to the
    end, with its tags split across any two pieces or one character at a time."""
    text = 'Sure <b>. <tool_call>[{"name": "f", "arguments": {"a": "<"}}]</tool_call> done <tool_call>[{"na'
    for cut in range(len(text) + 1):
        markup = MarkupFilter()
        assert markup.feed(text[:cut]) + markup.feed(text[cut:]) + markup.finish() == "Sure <b>.  done ", cut
        assert markup.dropped
    markup = MarkupFilter()
    assert "".join(markup.feed(ch) for ch in text) + markup.finish() == "Sure <b>.  done "
    assert without_markup(text) == ("Sure <b>.  done", True)
    assert without_markup("<tool_call>[]</tool_call>") == ("", True)
    assert without_markup("a < b, ends in <tool_") == ("a < b, ends in <tool_", False)


def test_a_failing_tool_is_a_failed_result_and_the_stream_ends(rt: Runtime, owner: dict[str, str]) -> None:
    port = free_port()
    target = f"http://127.0.0.1:{port}/"
    agent = make_agent(rt, owner, name="fetcher", tools=["http_request"], tool_choice="http_request",
                       instructions=f"You fetch web pages. The page to fetch is {target}", max_tokens=128)
    events = sse_events(rt, owner, agent["id"], f"Fetch {target} with GET.")
    kinds = [k for k, _ in events]
    assert kinds[0] == "tool_call" and kinds[1] == "tool_result" and kinds[-1] == "done", events
    assert events[0][1]["name"] == "http_request"
    failed = events[1][1]
    assert failed["success"] is False and failed["name"] == "http_request" and failed["result"]
    assert "127.0.0.1" in str(events[0][1]["args"]) and "refused" in failed["result"]


def test_a_client_that_leaves_stops_the_generation(rt: Runtime, owner: dict[str, str]) -> None:
    agent = make_agent(rt, owner, name="counter", max_tokens=1500)
    deltas = 0
    with httpx.stream("POST", f"{rt.url}/api/v1/agents/{agent['id']}/chat", headers=owner,
                      json={"message": LONG_PROMPT}, timeout=120) as resp:
        current = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                current = line[6:].strip()
            elif line.startswith("data:") and current == "delta":
                deltas += 1
                if deltas == 5:
                    break
    assert deltas == 5

    def last_call() -> tuple[str, int] | None:
        with sqlite3.connect(rt.data_dir / "tarx.db") as db:
            return db.execute("SELECT finish_reason, completion_tokens FROM inference_requests "
                              "ORDER BY rowid DESC LIMIT 1").fetchone()

    deadline = time.monotonic() + 30
    while (row := last_call()) is None or row[0] != "cancelled":
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    assert 5 <= row[1] < 100, row  # far from the 1,500 asked for


# ---- RAG and MCP tools ------------------------------------------------------------------------------------------

PASSAGE = ("The Quillhaven lighthouse keeper, Marisol Vantreck, polished the brass lens with walnut oil every "
           "Thursday before the fog horn drills.")


def test_rag_search_reads_the_agents_own_sources(rt: Runtime, owner: dict[str, str]) -> None:
    r = httpx.post(rt.url + "/api/v1/rags", headers=owner,
                   json={"name": "Keeper notes", "kind": "text", "config": {"text": PASSAGE}})
    assert r.status_code == 201, r.text
    source = r.json()
    deadline = time.monotonic() + 120
    while (state := httpx.get(f"{rt.url}/api/v1/rags/{source['id']}", headers=owner).json()["state"]) != "ready":
        assert state != "error" and time.monotonic() < deadline, state
        time.sleep(0.2)
    agent = make_agent(rt, owner, name="librarian", tools=["rag_search"], tool_choice="rag_search",
                       rag_source_ids=[source["id"]], max_tokens=128,
                       instructions="Answer from your knowledge sources: search them with rag_search.")
    r = httpx.post(f"{rt.url}/api/v1/agents/{agent['id']}/chat", headers=owner, timeout=300,
                   json={"message": "Who polished the lighthouse lens, and with what?", "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["tool_calls"], r.text
    call = r.json()["tool_calls"][0]
    assert call["name"] == "rag_search" and call["success"] is True, call
    assert "Keeper notes" in call["result"] and "Marisol Vantreck" in call["result"] and "walnut" in call["result"]
    # an agent without sources: the tool says so, as a failed result
    bare = rag_search_tool(None, "proj_x", [])  # type: ignore[arg-type]  # never reaches the RAG service
    text, ok = asyncio.run(invoke(bare, "rag_search", {"query": "lens"}, None, 5))
    assert not ok and "no RAG sources" in text


def test_mcp_tools_in_the_loop(rt: Runtime, owner: dict[str, str]) -> None:
    r = httpx.post(rt.url + "/api/v1/mcp", headers=owner, timeout=60,
                   json={"transport": "stdio", "command": sys.executable, "args": [MCP_SERVER], "name": "calc"})
    assert r.status_code == 201 and r.json()["status"] == "connected", r.text
    server = r.json()["id"]
    add, boom = f"mcp:{server}:add", f"mcp:{server}:boom"
    for bad in ({"tools": [f"mcp:{server}:no_such_tool"]}, {"tools": ["mcp:mcp_nope:add"]}, {"tools": ["mcp:x"]},
                {"tools": [add], "tool_choice": boom}):
        r = httpx.post(rt.url + "/api/v1/agents", headers=owner, json={"name": "bad", **bad})
        assert r.status_code == 400 and r.json()["detail"], (bad, r.text)

    agent = make_agent(rt, owner, name="adder", tools=[add, boom], tool_choice=add, max_tokens=96,
                       instructions="You add integers with the add tool.")
    events = sse_events(rt, owner, agent["id"], "What is 2 plus 3?")
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "done", events
    call, result = events[0][1], events[1][1]
    assert call["name"] == "add" and result["name"] == "add", events
    a, b = call["args"]["a"], call["args"]["b"]
    assert isinstance(a, int) and isinstance(b, int), call
    assert result == {"id": call["id"], "name": "add", "result": str(a + b), "success": True}

    failing = make_agent(rt, owner, name="breaker", tools=[boom], tool_choice=boom, max_tokens=64)
    r = httpx.post(f"{rt.url}/api/v1/agents/{failing['id']}/chat", headers=owner, timeout=300,
                   json={"message": "Run the tool.", "stream": False})
    assert r.status_code == 200, r.text
    call = r.json()["tool_calls"][0]
    assert call["name"] == "boom" and call["success"] is False and "kaboom" in call["result"], call


def test_function_names_are_safe_and_unique() -> None:
    assert function_name("add", set()) == "add"
    assert function_name("add", {"add"}) == "add_2" and function_name("add", {"add", "add_2"}) == "add_3"
    assert function_name("files.read/all", set()) == "files_read_all"
    long = function_name("x" * 100, set())
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", long) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", function_name("", set()))


def test_agent_chat_counts_in_usage(rt: Runtime, owner: dict[str, str], project_id: str) -> None:
    minted = httpx.post(rt.url + "/api/v1/platform-keys", headers=owner, json={"name": "usage"}).json()["key"]
    key = {**bearer(minted), "X-Project-ID": project_id}
    agent = make_agent(rt, owner, name="counted", max_tokens=8)
    before = httpx.get(rt.url + "/v1/usage", headers=key).json()
    r = httpx.post(f"{rt.url}/api/v1/agents/{agent['id']}/chat", headers=key,
                   json={"message": "Say hi.", "stream": False}, timeout=120)
    assert r.status_code == 200, r.text
    after = httpx.get(rt.url + "/v1/usage", headers=key).json()
    assert after["requests_this_month"] == before["requests_this_month"] + 1
    assert after["key"]["requests"] == before["key"]["requests"] + 1 and after["key"]["joules"] > 0
    assert {p["id"]: p["requests"] for p in after["projects"]}.get(project_id, 0) >= 1


# ---- the address policy -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                                     "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.251", "240.0.0.1",
                                     "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
                                     "::ffff:127.0.0.1", "::ffff:169.254.169.254", "not-an-address"])
def test_refused_addresses(address: str) -> None:
    assert address_allowed(address) is False


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert address_allowed(address) is True


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]/", "http://localhost/", "http://0x7f000001/", "ftp://8.8.8.8/",
                                 "file:///etc/passwd", "http:///nohost"])
def test_refused_urls(url: str) -> None:
    with pytest.raises(ToolError):
        asyncio.run(check_url(url, allow_private=False))


def test_redirects_are_checked_hop_by_hop() -> None:
    """A public first hop that redirects to loopback or the metadata address is refused at the redirect; the
    transport is a mock, so nothing leaves this machine."""
    seen: list[str] = []
    transport = redirecting(seen, text="public page")
    tool = http_request_tool(False, 5, transport=transport)
    for path in REFUSED:
        with pytest.raises(ToolError, match="refused"):
            asyncio.run(tool.run({"url": PUBLIC + path}))
    assert seen == [PUBLIC + path for path in REFUSED]
    for path in FOLLOWED:
        out = json.loads(asyncio.run(tool.run({"url": PUBLIC + path})))
        assert out["status"] == 200 and out["body"] == "public page" and out["url"] == PUBLIC + FINAL
    allowed = http_request_tool(True, 5, transport=transport)
    assert json.loads(asyncio.run(allowed.run({"url": "http://127.0.0.1:1/x"})))["status"] == 200


def test_connections_are_pinned_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolves to a public address when checked and to loopback afterwards. The request
    must go to the address that was checked (the name kept in Host), and a redirect hop is resolved and checked
    again: here its name answers loopback, so it is refused."""
    answers = {"rebind.example": ["93.184.216.34", "127.0.0.1"], "hop.example": ["127.0.0.1"]}

    def getaddrinfo(host: str, *args: Any, **kw: Any) -> list:
        address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [(2, 1, 6, "", (address, 0))]

    monkeypatch.setattr("socket.getaddrinfo", getaddrinfo)
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("host")))
        if request.url.path == "/redirect":
            return httpx.Response(302, headers={"location": "http://hop.example/admin"})
        return httpx.Response(200, text="ok")

    tool = http_request_tool(False, 5, transport=httpx.MockTransport(handler))
    out = json.loads(asyncio.run(tool.run({"url": "http://rebind.example:8080/page?q=1"})))
    assert out["status"] == 200 and out["url"] == "http://rebind.example:8080/page?q=1"
    assert seen == [("http://93.184.216.34:8080/page?q=1", "rebind.example:8080")]
    answers["rebind.example"] = ["93.184.216.34"]
    with pytest.raises(ToolError, match=r"refused: .hop\.example. is 127\.0\.0\.1"):
        asyncio.run(tool.run({"url": "http://rebind.example/redirect"}))
    assert seen[-1] == ("http://93.184.216.34/redirect", "rebind.example")


def test_responses_are_read_up_to_a_limit() -> None:
    huge = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * (3 * 1024 * 1024)))
    tool = http_request_tool(False, 5, transport=huge)
    with pytest.raises(ToolError, match="larger than"):
        asyncio.run(tool.run({"url": "http://93.184.216.34/big"}))


def test_https_keeps_the_name_for_tls() -> None:
    from runtime.agents.addresses import pin

    target = pin("https://user:pw@example.org:8443/a?b=c", "2606:2800:220:1::1")
    assert target.url == "https://user:pw@[2606:2800:220:1::1]:8443/a?b=c"
    assert target.headers == {"Host": "example.org:8443"} and target.extensions == {"sni_hostname": "example.org"}


# ---- the loop's tool invocation: whatever a tool does, the result is a value ----------------------------------

def test_tool_failures_are_results() -> None:
    async def slow(args: dict[str, Any]) -> str:
        await asyncio.sleep(5)
        return "late"

    async def broken(args: dict[str, Any]) -> str:
        raise ValueError("boom")

    async def fine(args: dict[str, Any]) -> str:
        return f"hello {args['who']}"

    params = {"type": "object", "properties": {}}
    assert asyncio.run(invoke(Tool("slow", "", params, slow), "slow", {}, None, 0.05)) == (
        "the tool timed out after 0.05 s", False)
    text, ok = asyncio.run(invoke(Tool("broken", "", params, broken), "broken", {}, None, 1))
    assert not ok and "ValueError: boom" in text
    assert asyncio.run(invoke(None, "nope", {}, None, 1)) == ("unknown tool 'nope'", False)
    assert asyncio.run(invoke(Tool("fine", "", params, fine), "fine", "{", "the arguments are not JSON", 1)) == (
        "the arguments are not JSON", False)
    assert asyncio.run(invoke(Tool("fine", "", params, fine), "fine", {"who": "you"}, None, 1)) == ("hello you", True)


# ---- project skills and an agent's own BYOK key -----------------------------------------------------------------

def test_project_skills_are_listed_with_the_builtin_ones(rt: Runtime, owner: dict[str, str]) -> None:
    r = httpx.post(rt.url + "/api/v1/skills", headers=owner,
                   json={"name": "Pirate voice", "description": "Talk like a pirate.",
                         "prompt": "Answer in the voice of a pirate.", "model": "tarx-local"})
    assert r.status_code == 201, r.text
    skill = r.json()
    assert skill["id"].startswith("skill_") and skill["builtin"] is False and skill["created_at"]
    listed = httpx.get(rt.url + "/api/v1/skills", headers=owner).json()["items"]
    assert {"summarize", skill["id"]} <= {s["id"] for s in listed}
    assert [s["builtin"] for s in listed][-1] is False  # built-in first, then the project's own
    assert httpx.get(rt.url + f"/api/v1/skills/{skill['id']}", headers=owner).json()["prompt"] == skill["prompt"]
    for body, status in (({"name": "Pirate voice", "prompt": "again"}, 409),
                         ({"name": "Summarize", "prompt": "x"}, 409),
                         ({"name": "no prompt"}, 422), ({"name": "x", "prompt": "y", "extra": 1}, 422)):
        r = httpx.post(rt.url + "/api/v1/skills", headers=owner, json=body)
        assert r.status_code == status, (body, r.text)
    assert httpx.delete(rt.url + "/api/v1/skills/summarize", headers=owner).status_code == 409
    # an agent may reference it; another project sees neither the skill nor can reference it
    agent = make_agent(rt, owner, name="pirate", skills=[skill["id"]])
    assert agent["skills"] == [skill["id"]]
    other = httpx.post(rt.url + "/api/v1/projects", json={"name": "Skills elsewhere"},
                       headers=bearer(owner_key(rt))).json()
    elsewhere = {**bearer(owner_key(rt)), "X-Project-ID": other["id"]}
    assert httpx.get(rt.url + f"/api/v1/skills/{skill['id']}", headers=elsewhere).status_code == 404
    assert skill["id"] not in {s["id"] for s in httpx.get(rt.url + "/api/v1/skills", headers=elsewhere).json()["items"]}
    r = httpx.post(rt.url + "/api/v1/agents", headers=elsewhere, json={"name": "x", "skills": [skill["id"]]})
    assert r.status_code == 400 and "unknown skills" in r.text, r.text
    assert httpx.delete(rt.url + f"/api/v1/agents/{agent['id']}", headers=owner).status_code == 204
    assert httpx.delete(rt.url + f"/api/v1/skills/{skill['id']}", headers=owner).status_code == 204
    assert httpx.get(rt.url + f"/api/v1/skills/{skill['id']}", headers=owner).status_code == 404


def test_an_agent_names_its_own_byok_key(rt: Runtime, owner: dict[str, str]) -> None:
    def key(name: str, base_url: str | None) -> str:
        body = {"provider": "openai", "name": name, "key": f"sk-test-{name}"}
        r = httpx.post(rt.url + "/api/v1/llm-keys", headers=owner,
                       json={**body, "base_url": base_url} if base_url else body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    with_endpoint, without = key("byok-endpoint", "https://llm.example.com/v1"), key("byok-bare", None)
    agent = make_agent(rt, owner, name="byok", execution_policy="enterprise-byo", llm_key_id=with_endpoint)
    assert agent["llm_key_id"] == with_endpoint
    r = httpx.put(rt.url + f"/api/v1/agents/{agent['id']}", headers=owner, json={"llm_key_id": ""})
    assert r.status_code == 200 and r.json()["llm_key_id"] is None, r.text
    for fields, why in (({"execution_policy": "enterprise-byo", "llm_key_id": "llmkey_nope"}, "not an LLM key"),
                        ({"execution_policy": "enterprise-byo", "llm_key_id": without}, "no base_url"),
                        ({"execution_policy": "local", "llm_key_id": with_endpoint}, "enterprise plane")):
        r = httpx.post(rt.url + "/api/v1/agents", headers=owner, json={"name": "bad-byok", **fields})
        assert r.status_code == 400 and why in r.text, (fields, r.text)
    assert httpx.delete(rt.url + f"/api/v1/agents/{agent['id']}", headers=owner).status_code == 204
