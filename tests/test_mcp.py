"""MCP servers (`/api/v1/mcp`, seed 001) against a real MCP server written with the SDK (tests/support/mcp_server.py),
over stdio and over streamable HTTP, and the agents' seam `McpService.call_tool`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from conftest import REPO, Runtime, free_port
from runtime.agents.addresses import PinnedTransport
from runtime.auth.access import ProjectContext, resolve_project
from runtime.auth.bootstrap import bootstrap
from runtime.auth.principal import Authenticator
from runtime.auth.secretbox import SecretBox
from runtime.mcp import McpServer, McpService, ToolOutcome, Transport
from runtime.store import Database
from support.identity import bearer, owner_key, user_key

SERVER = str(REPO / "tests" / "support" / "mcp_server.py")
STDIO = {"transport": "stdio", "command": sys.executable, "args": [SERVER]}
TOOLS = {"add", "boom", "env_value", "header_value", "sleep"}


def _start_http_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "--http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the MCP HTTP server did not start"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    proc, url = _start_http_server()
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def team(runtime: Runtime) -> dict:
    """A project of its own with an owner, an admin, an editor and a member, each with a platform key."""
    owner = bearer(owner_key(runtime))
    project = httpx.post(runtime.url + "/api/v1/projects", json={"name": "MCP tests"}, headers=owner).json()
    heads = {"owner": {**owner, "X-Project-ID": project["id"]}}
    for role in ("admin", "editor", "member"):
        email = f"mcp-{role}@example.com"
        r = httpx.post(runtime.url + f"/api/v1/projects/{project['id']}/members", headers=owner,
                       json={"email": email, "role": role})
        assert r.status_code == 201, r.text
        heads[role] = {**bearer(user_key(runtime, email)), "X-Project-ID": project["id"]}
    return {"project": project, "h": heads}


def _names(tools: list[dict]) -> set[str]:
    return {t["name"] for t in tools}


def test_stdio_server_round_trip(runtime: Runtime, team: dict) -> None:
    owner = team["h"]["owner"]
    with runtime.client(headers=owner) as c:
        r = c.post("/api/v1/mcp", json={**STDIO, "name": "calc", "env": {"SECRET_X": "s3cret-value-123"}})
        assert r.status_code == 201, r.text
        server = r.json()
        assert server["id"].startswith("mcp_") and server["status"] == "connected", server
        assert server["transport"] == "stdio" and server["env"] == {"SECRET_X": "****"}
        assert _names(server["tools"]) == TOOLS
        add = next(t for t in server["tools"] if t["name"] == "add")
        assert add["description"] == "Add two integers."
        assert set(add["input_schema"]["properties"]) == {"a", "b"}

        listed = c.get("/api/v1/mcp").json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == server["id"]
        assert _names(listed["items"][0]["tools"]) == TOOLS
        assert c.post("/api/v1/mcp", json={**STDIO, "name": "calc"}).status_code == 409

        details = c.get(f"/api/v1/mcp/{server['id']}").json()
        assert details["status"] == "connected" and _names(details["tools"]) == TOOLS
        assert details["discovered_at"] >= server["discovered_at"]
        cached = c.get(f"/api/v1/mcp/{server['id']}", params={"refresh": "false"}).json()
        assert cached["discovered_at"] == details["discovered_at"]

        found = c.post("/api/v1/mcp/discover", json=STDIO)
        assert found.status_code == 200 and _names(found.json()["tools"]) == TOOLS

        assert c.delete(f"/api/v1/mcp/{server['id']}").status_code == 204
        r = c.get(f"/api/v1/mcp/{server['id']}")
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    # the env value was sealed at rest: it is in no database file
    for path in runtime.data_dir.glob("*.db*"):
        assert b"s3cret-value-123" not in path.read_bytes()


def test_streamable_http_round_trip(runtime: Runtime, team: dict) -> None:
    proc, url = _start_http_server()
    # the test server listens on loopback: a private address, an admin's to connect (see the RBAC test)
    with runtime.client(headers=team["h"]["admin"]) as c:
        try:
            found = c.post("/api/v1/mcp/discover", json={"transport": "streamable_http", "url": url})
            assert found.status_code == 200 and _names(found.json()["tools"]) == TOOLS, found.text
            r = c.post("/api/v1/mcp", json={"transport": "streamable_http", "url": url, "name": "remote",
                                            "headers": {"Authorization": "Bearer hidden-token-456"}})
            assert r.status_code == 201, r.text
            server = r.json()
            assert server["status"] == "connected" and server["headers"] == {"Authorization": "****"}
            assert _names(server["tools"]) == TOOLS
        finally:
            _stop(proc)
        # the server is gone: details fall back to the cached tools and say why
        details = c.get(f"/api/v1/mcp/{server['id']}").json()
        assert details["status"] == "error" and details["last_error"] and _names(details["tools"]) == TOOLS
        r = c.post("/api/v1/mcp/discover", json={"transport": "streamable_http", "url": url})
        assert r.status_code == 400 and r.json()["error_code"] == "MCP_UNREACHABLE", r.text
        assert c.delete(f"/api/v1/mcp/{server['id']}").status_code == 204


def test_rbac_and_project_isolation(runtime: Runtime, team: dict, http_server: str) -> None:
    h = team["h"]
    with runtime.client() as c:
        # a stdio command runs a program on this machine: admins and owners only
        for role in ("editor", "member"):
            for path, body in (("/api/v1/mcp", {**STDIO, "name": f"no-{role}"}), ("/api/v1/mcp/discover", STDIO)):
                r = c.post(path, json=body, headers=h[role])
                assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (role, path, r.text)
        r = c.post("/api/v1/mcp", json={**STDIO, "name": "by-admin"}, headers=h["admin"])
        assert r.status_code == 201 and r.json()["status"] == "connected", r.text
        by_admin = r.json()["id"]
        # a public URL is an editor's to connect, not a member's; a private, loopback or link-local one reaches
        # this machine or its network, as a command does: admins and owners only
        http = {"transport": "streamable_http", "url": http_server}
        assert c.post("/api/v1/mcp", json={**http, "name": "m"}, headers=h["member"]).status_code == 403
        assert c.post("/api/v1/mcp/discover", json=http, headers=h["member"]).status_code == 403
        for url in (http_server, "http://169.254.169.254/mcp", "http://10.0.0.7:8000/mcp", "http://[::1]:9/mcp"):
            for path, body in (("/api/v1/mcp", {**http, "url": url, "name": "private"}),
                               ("/api/v1/mcp/discover", {**http, "url": url})):
                r = c.post(path, json=body, headers=h["editor"])
                assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (url, path, r.text)
        r = c.post("/api/v1/mcp", json={**http, "name": "by-admin-url"}, headers=h["admin"])
        assert r.status_code == 201, r.text
        assert c.get("/api/v1/mcp", headers=h["member"]).json()["total"] == 2
        assert _names(c.get(f"/api/v1/mcp/{by_admin}", headers=h["member"]).json()["tools"]) == TOOLS
        assert c.delete(f"/api/v1/mcp/{by_admin}", headers=h["member"]).status_code == 403
        # another project's server is not found, for reads and deletes alike
        other = {**bearer(owner_key(runtime)), "X-Project-Slug": "default"}
        assert c.get("/api/v1/mcp", headers=other).json()["total"] == 0
        for method in ("GET", "DELETE"):
            r = c.request(method, f"/api/v1/mcp/{by_admin}", headers=other)
            assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", (method, r.text)
        assert c.delete(f"/api/v1/mcp/{by_admin}", headers=h["editor"]).status_code == 204


def test_bodies_are_validated(runtime: Runtime, team: dict) -> None:
    with runtime.client(headers=team["h"]["owner"]) as c:
        for body in ({"transport": "stdio", "name": "x"},
                     {**STDIO, "name": "x", "url": "http://127.0.0.1:1/mcp"},
                     {"transport": "streamable_http", "name": "x", "url": "ftp://example.com"},
                     {"transport": "streamable_http", "name": "x", "url": "http://h/mcp", "command": "ls"},
                     {**STDIO, "name": "x", "env": {"BAD NAME": "v"}},
                     {**STDIO, "name": "x", "surprise": 1}):
            r = c.post("/api/v1/mcp", json=body)
            assert r.status_code == 422 and r.json()["error_code"] == "VALIDATION_ERROR", (body, r.text)


@asynccontextmanager
async def owners_service(tmp_path: Path, **kw: float) -> AsyncIterator[tuple[ProjectContext, McpService]]:
    """An McpService on a fresh database, in-process, with the owner's context in the default project."""
    db = Database(tmp_path / "tarx.db")
    await db.open()
    try:
        box = SecretBox(tmp_path / "secret.key")
        await bootstrap(db, tmp_path / "owner.key")
        principal = await Authenticator(db, box, 3600).resolve(
            f"Bearer {(tmp_path / 'owner.key').read_text().strip()}", None, None, None)
        assert principal is not None
        yield await resolve_project(db, principal, None, None), McpService(db, box, **kw)
    finally:
        await db.close()


def test_call_tool_through_the_service(tmp_path: Path, http_server: str) -> None:
    """The agents' seam, in-process: `McpService.call_tool` never raises for a tool's failure."""

    async def scenario() -> list[ToolOutcome]:
        async with owners_service(tmp_path) as (ctx, mcp):
            stdio = await mcp.create(ctx, "calc", Transport(kind="stdio", command=sys.executable, args=(SERVER,),
                                                            env={"SECRET_X": "sealed"}))
            http = await mcp.create(ctx, "remote", Transport(kind="streamable_http", url=http_server,
                                                            headers={"X-Test-Token": "tok-789"}))
            assert {t.name for _, t in await mcp.project_tools(ctx)} == TOOLS
            return [
                await mcp.call_tool(ctx, stdio.id, "add", {"a": 2, "b": 3}),
                await mcp.call_tool(ctx, stdio.id, "env_value", {"name": "SECRET_X"}),
                await mcp.call_tool(ctx, stdio.id, "boom", {}),
                await mcp.call_tool(ctx, http.id, "add", {"a": 40, "b": 2}),
                await mcp.call_tool(ctx, http.id, "header_value", {"name": "X-Test-Token"}),
                await mcp.call_tool(ctx, http.id, "sleep", {"seconds": 30}, deadline_s=2),
                await mcp.call_tool(ctx, http.id, "no_such_tool", {}),
            ]

    add, env, boom, remote, header, slow, missing = asyncio.run(scenario())
    assert add == ToolOutcome(True, "5") and env == ToolOutcome(True, "sealed") and remote == ToolOutcome(True, "42")
    assert header == ToolOutcome(True, "tok-789")
    assert not boom.success and "kaboom" in boom.result_text
    assert not slow.success and "timed out" in slow.result_text
    assert not missing.success


def test_a_public_url_stays_public_when_its_name_later_answers_loopback(
        tmp_path: Path, http_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answered a public address when the server was registered (which an editor may
    do) answers loopback afterwards, where the real MCP server listens. Every connection is checked again and sent
    to the checked address, so the session is refused instead of reaching this machine."""
    port = http_server.rsplit(":", 1)[1].split("/")[0]
    answers = ["93.184.216.34"]  # the registration's check; every later lookup answers loopback
    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args: object, **kw: object) -> list:
        if host != "rebind.example":
            return real(host, *args, **kw)  # type: ignore[arg-type]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers.pop(0) if answers else "127.0.0.1", 0))]

    monkeypatch.setattr("socket.getaddrinfo", getaddrinfo)

    async def scenario() -> tuple[McpServer, ToolOutcome, ToolOutcome]:
        async with owners_service(tmp_path, discover_timeout=5) as (ctx, mcp):
            rebound = await mcp.create(ctx, "rebound", Transport(kind="streamable_http",
                                                                url=f"http://rebind.example:{port}/mcp"))
            # a server registered at its loopback address (an admin's choice) is reached there, as before
            local = await mcp.create(ctx, "local", Transport(kind="streamable_http", url=http_server))
            return (rebound, await mcp.call_tool(ctx, rebound.id, "add", {"a": 1, "b": 2}, deadline_s=5),
                    await mcp.call_tool(ctx, local.id, "add", {"a": 1, "b": 2}))

    rebound, call, local = asyncio.run(scenario())
    assert rebound.status == "error" and "refused" in (rebound.last_error or ""), rebound
    assert not call.success and "refused: 'rebind.example' is 127.0.0.1" in call.result_text, call
    assert local == ToolOutcome(True, "3")


def test_pinned_requests_go_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.getaddrinfo", lambda host, *a, **kw: [(2, 1, 6, "", ("93.184.216.34", 0))])
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("host")))
        return httpx.Response(200, json={})

    async def post() -> None:
        async with httpx.AsyncClient(transport=PinnedTransport(httpx.MockTransport(handler))) as http:
            await http.post("http://tools.example:8080/mcp?x=1", json={})

    asyncio.run(post())
    assert seen == [("http://93.184.216.34:8080/mcp?x=1", "tools.example:8080")]


# ---- `tarx mcp` and GET /openai-tools -------------------------------------------------------------------------

def test_tarx_mcp_serves_the_local_tools_over_stdio(make_runtime) -> None:
    """A desktop MCP client's view: the SDK's stdio client spawns `tarx mcp` against a running runtime."""
    rt = make_runtime()
    exported = httpx.get(rt.url + "/openai-tools").json()  # public, like seed 000's curl
    assert exported["object"] == "list" and exported["base_url"]
    functions = {t["function"]["name"]: t["function"] for t in exported["tools"]}
    assert set(functions) == {"chat", "rag_search", "agent_chat", "submit_job"}
    assert all(t["type"] == "function" for t in exported["tools"])
    owner = bearer(owner_key(rt))
    sources = {}
    for name, text in (("notes", "The launch code for the demo is PURPLE-ELEPHANT-42."),
                       ("menu", "Lunch is soup and bread, served at noon in the kitchen.")):
        r = httpx.post(rt.url + "/api/v1/rags", headers=owner, timeout=60,
                       json={"name": name, "kind": "text", "config": {"text": text}})
        assert r.status_code == 201, r.text
        sources[name] = r.json()["id"]
    r = httpx.post(rt.url + "/api/v1/agents", headers=owner,
                   json={"name": "helper", "model": "tarx-local", "instructions": "Answer briefly.", "tools": [],
                         "temperature": 0, "max_tokens": 8})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 120
    for rag_id in sources.values():
        while (state := httpx.get(rt.url + f"/api/v1/rags/{rag_id}", headers=owner).json()["state"]) != "ready":
            assert state != "error" and time.monotonic() < deadline, state
            time.sleep(0.2)
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO),
                                   args=["-m", "tarx_console", "--url", rt.url, "--key", owner_key(rt), "mcp"])

    async def scenario() -> tuple[list, list]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = (await s.list_tools()).tools
            calls = [await s.call_tool("submit_job", {"command": "echo hello-from-mcp"}),
                     await s.call_tool("chat", {"message": "Say hello", "max_tokens": 8}),
                     await s.call_tool("rag_search", {"query": "What is the launch code?", "k": 1}),
                     await s.call_tool("chat", {"message": "hi", "model": "no-such-model"}),
                     await s.call_tool("submit_job", {}),
                     await s.call_tool("agent_chat", {"agent": "helper", "message": "Say hello"}),
                     await s.call_tool("agent_chat", {"agent": "nobody", "message": "hi"})]
            return tools, calls

    tools, (job, chat, rag, bad_model, no_command, agent, no_agent) = asyncio.run(scenario())
    # the same tools, the same schemas, as the OpenAI export
    assert {t.name: (t.description, t.inputSchema) for t in tools} == {
        name: (f["description"], f["parameters"]) for name, f in functions.items()}
    assert not job.isError, job
    submitted = json.loads(job.content[0].text)
    assert submitted["id"].startswith("job_")
    r = httpx.get(rt.url + f"/v0/jobs/{submitted['id']}", headers=owner)
    assert r.status_code == 200 and r.json()["command"] == "echo hello-from-mcp", r.text
    assert not chat.isError and chat.content[0].text.strip(), chat
    assert not rag.isError, rag
    [hit] = json.loads(rag.content[0].text)
    assert "PURPLE-ELEPHANT-42" in hit["text"] and hit["source_id"] == sources["notes"]
    assert bad_model.isError and "no-such-model" in bad_model.content[0].text
    assert no_command.isError
    assert not agent.isError, agent
    reply = json.loads(agent.content[0].text)
    assert reply["model"] == "tarx-local" and reply["response"].strip() and reply["tool_calls"] == []
    assert no_agent.isError and "helper" in no_agent.content[0].text
