"""`GET /api/v1/tools`: the built-in tools an agent may name, described (name, description, JSON schema of the
arguments), readable by any project member and by no narrower key; the console's agent form offers exactly these
(it reads them over HTTP, never from the runtime's code)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import SelectionList

from conftest import Runtime
from support.console import attached, drive, open_view, wait_for
from support.identity import bearer, owner_in_default_project, owner_key, user_key
from tarx_console.client.api import TarxClient
from tarx_console.screens.agents import AgentForm


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module({"TARX_LOCAL_NODE": "false", "TARX_RATE_LIMITS": "false"}, name="tools-api")


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return owner_in_default_project(rt)


@pytest.fixture(scope="module")
def project_id(owner: dict[str, str]) -> str:
    return owner["X-Project-ID"]


@pytest.fixture(scope="module")
def listed(rt: Runtime, owner: dict[str, str]) -> list[dict[str, Any]]:
    r = httpx.get(rt.url + "/api/v1/tools", headers=owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(body["items"]) and body["page"] == 1
    return body["items"]


def test_each_tool_is_described_and_an_agent_accepts_exactly_these(rt: Runtime, owner: dict[str, str],
                                                                   listed: list[dict[str, Any]]) -> None:
    names = [t["name"] for t in listed]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert {"current_time", "http_request", "rag_search"} <= set(names)
    for tool in listed:
        assert set(tool) == {"name", "kind", "description", "parameters"} and tool["kind"] == "builtin", tool
        assert isinstance(tool["description"], str) and len(tool["description"]) > 10, tool
        schema = tool["parameters"]
        assert schema["type"] == "object" and isinstance(schema["properties"], dict), tool
        assert set(schema.get("required", [])) <= set(schema["properties"]), tool
    by_name = {t["name"]: t for t in listed}
    assert by_name["http_request"]["parameters"]["required"] == ["url"]
    assert by_name["rag_search"]["parameters"]["required"] == ["query"]

    # what the list says is what the agent record accepts: every listed name, and nothing else
    r = httpx.post(rt.url + "/api/v1/agents", headers=owner, json={"name": "all tools", "tools": names})
    assert r.status_code == 201 and r.json()["tools"] == names, r.text
    r = httpx.post(rt.url + "/api/v1/agents", headers=owner, json={"name": "bad", "tools": ["list_tools"]})
    assert r.status_code == 400 and "list_tools" in r.text, r.text


def test_members_read_it_and_no_narrower_key_does(rt: Runtime, owner: dict[str, str], project_id: str,
                                                  listed: list[dict[str, Any]]) -> None:
    r = httpx.post(f"{rt.url}/api/v1/projects/{project_id}/members", headers=owner,
                   json={"email": "tools-member@example.com", "role": "member"})
    assert r.status_code in (200, 201), r.text
    member_key = user_key(rt, "tools-member@example.com")
    member = {**bearer(member_key), "X-Project-ID": project_id}
    r = httpx.get(rt.url + "/api/v1/tools", headers=member)  # the lowest role reads it
    assert r.status_code == 200 and r.json()["items"] == listed, r.text

    # a project the member is not in: not found (never leaked), in the platform envelope
    other = httpx.post(rt.url + "/api/v1/projects", headers=owner, json={"name": "Tools elsewhere"}).json()
    r = httpx.get(rt.url + "/api/v1/tools", headers={**bearer(member_key), "X-Project-ID": other["id"]})
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", r.text

    r = httpx.get(rt.url + "/api/v1/tools")
    assert r.status_code == 401 and r.json()["error_code"], r.text
    r = httpx.get(rt.url + "/api/v1/tools", headers={"Authorization": "Bearer sk-tarx-not-a-key"})
    assert r.status_code == 401, r.text
    r = httpx.post(rt.url + "/api/keys", headers=owner, json={"name": "inference only"})
    assert r.status_code == 201, r.text
    tarx_key = r.json()["key"]
    r = httpx.get(rt.url + "/api/v1/tools", headers={**bearer(tarx_key), "X-Project-ID": project_id})
    assert r.status_code == 403, r.text  # a TARX key reaches /v1 inference, not the platform API
    r = httpx.post(rt.url + "/api/v1/tools", headers=owner, json={})
    assert r.status_code == 405, r.text


def test_the_console_reads_the_runtimes_tools(rt: Runtime, project_id: str, listed: list[dict[str, Any]]) -> None:
    async def main() -> None:
        async with TarxClient.over_http(rt.url, owner_key(rt)) as client:
            client.use_project(project_id)  # the owner has two projects by now
            assert await client.tools() == listed

    asyncio.run(main())

    async def form(pilot: Pilot) -> None:
        await open_view(pilot, "agents")
        await pilot.press("n")
        shown = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, AgentForm)
                               and pilot.app.screen.query("#f-tools") else None, 30, "the agent form")
        values = [o.value for o in shown.query_one("#f-tools", SelectionList)._options]
        assert values == [t["name"] for t in listed]  # no MCP server here: the built-in tools, as listed
        await pilot.press("escape")

    drive(attached(rt), form)
