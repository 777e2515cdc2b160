"""The console's agents part against a real runtime: the agent form (checked as you type), a streamed chat with a
forced tool call shown inline, Esc stopping a generation (the runtime logs the call cancelled, far short of its
budget), the history kept per agent; RAG sources (create, live indexing, test) and MCP servers (connect, discover,
tools); snapshots of the chat view at 120x36 and 80x24. Short generations at temperature 0 throughout."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, SelectionList, Static

from conftest import LONG_PROMPT, REPO, Runtime
from support.console import attached, console_config, drive, open_view, ready, rows, select_row, wait_for
from support.identity import bearer, owner_key
from tarx_console.client.api import EXECUTION_POLICIES, TarxClient
from tarx_console.client.errors import BadRequest, NotFound
from tarx_console.client.events import ChatDelta, ChatDone
from tarx_console.screens.agents import AgentForm, AgentsScreen
from tarx_console.screens.chat import ChatScreen
from tarx_console.screens.dialogs import FormDialog
from tarx_console.screens.mcp import McpScreen
from tarx_console.screens.rag import RagScreen, TextDialog
from tarx_console.widgets.chatlog import ChatLog

MCP_SERVER = str(REPO / "tests" / "support" / "mcp_server.py")
PASSAGE = ("The Quillhaven lighthouse keeper, Marisol Vantreck, polished the brass lens with walnut oil every "
           "Thursday before the fog horn drills.")


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:  # type: ignore[no-untyped-def]
    # No in-process node: nothing on screen depends on when it registered (the snapshots below).
    return make_runtime_module({"TARX_AGENT_MAX_TOOL_ROUNDS": "1", "TARX_LOCAL_NODE": "false"}, name="agents")


def api(rt: Runtime) -> httpx.Client:
    return httpx.Client(base_url=rt.url, headers=bearer(owner_key(rt)), timeout=60)


def make_agent(rt: Runtime, **fields: Any) -> dict[str, Any]:
    body = {"instructions": "You are a helpful assistant.", "temperature": 0, "max_tokens": 24, **fields}
    with api(rt) as c:
        r = c.post("/api/v1/agents", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def last_call(rt: Runtime) -> tuple[str, int] | None:
    """The runtime's own record of its last inference call: how it ended and how many tokens it produced."""
    with sqlite3.connect(rt.data_dir / "tarx.db") as db:
        return db.execute("SELECT finish_reason, completion_tokens FROM inference_requests "
                          "ORDER BY rowid DESC LIMIT 1").fetchone()


def chat(app: Any) -> ChatScreen:
    assert isinstance(app.screen, ChatScreen), app.screen
    return app.screen


async def shown(pilot: Pilot, cls: type, part: str) -> Any:
    """The screen of type `cls` once `part` of it is composed."""
    return await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, cls)
                          and pilot.app.screen.query(part) else None, 30, cls.__name__)


async def dialog_text(pilot: Pilot, seconds: float = 60) -> str:
    """The text of the TextDialog the screen shows (once it is composed)."""
    def text() -> str | None:
        screen = pilot.app.screen
        found = screen.query("#text") if isinstance(screen, TextDialog) else None
        return str(found.first(Static).render()) if found else None

    return await wait_for(pilot, text, seconds, "a dialog's text")


async def send(pilot: Pilot, text: str) -> None:
    message = pilot.app.screen.query_one("#message", Input)
    message.focus()
    message.value = text
    await pilot.press("enter")


def test_policies_match_the_runtime() -> None:
    from runtime.inference.planes import POLICIES

    assert tuple(POLICIES) == EXECUTION_POLICIES


def test_the_client_refuses_clearly_and_types_the_stream(rt: Runtime) -> None:
    """Refusals before a stream starts raise the client's errors; the events of a turn arrive typed."""
    agent = make_agent(rt, name="typed", max_tokens=4)

    async def main() -> None:
        async with TarxClient.over_http(rt.url, owner_key(rt)) as client:
            with pytest.raises(NotFound):
                async for _ in client.chat_agent("agent_nope", "hi"):
                    pass
            with pytest.raises(BadRequest):  # an empty message, a history turn of an unknown role
                async for _ in client.chat_agent(agent["id"], ""):
                    pass
            with pytest.raises(BadRequest):
                async for _ in client.chat_agent(agent["id"], "hi", [{"role": "system", "content": "x"}]):
                    pass
            with pytest.raises(BadRequest) as bad:
                await client.create_agent({"name": "x", "tools": ["no_such_tool"]})
            assert "no_such_tool" in bad.value.message
            events = [e async for e in client.chat_agent(agent["id"], "Say hi.", [
                {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}])]
            assert events and all(isinstance(e, ChatDelta) for e in events[:-1]), events
            assert isinstance(events[-1], ChatDone) and 0 < events[-1].output_tokens <= 4
            assert await client.delete_agent(agent["id"]) == agent["id"]

    asyncio.run(main())


# ---- snapshots (first in the module: they show only what their fixtures made) ----------------------------------

def chat_snapshot(rt: Runtime, size: tuple[int, int]) -> Any:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, "agents")
        await select_row(pilot, "adder")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChatScreen))
        await send(pilot, "What is 2 plus 3?")
        await wait_for(pilot, lambda: len(chat(pilot.app).conversation.turns) == 2, 120, "the answer")
        await wait_for(pilot, lambda: not chat(pilot.app).generating)
        pilot.app.screen.query_one(ChatLog).focus()  # no cursor in the input: nothing blinks
        await pilot.pause(0.3)

    return run_before


@pytest.fixture(scope="module")
def adder(rt: Runtime) -> dict[str, Any]:
    """An agent forced to call an MCP tool whose result does not change from run to run (unlike the time)."""
    with api(rt) as c:
        r = c.post("/api/v1/mcp", json={"transport": "stdio", "command": sys.executable, "args": [MCP_SERVER],
                                        "name": "numbers"})
    assert r.status_code == 201 and r.json()["status"] == "connected", r.text
    add = f"mcp:{r.json()['id']}:add"
    return make_agent(rt, name="adder", tools=[add], tool_choice=add, max_tokens=40,
                      instructions="You add integers with the add tool, then answer in one short sentence.")


@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
def test_chat_view(snap_compare, rt: Runtime, adder: dict[str, Any], size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = attached(rt, console_config(stable=True, refresh_seconds=60))
    assert snap_compare(app, terminal_size=size, run_before=chat_snapshot(rt, size))


def settled_list(view: str, then: Any = None) -> Any:
    async def run_before(pilot: Pilot) -> None:
        await ready(pilot)
        await open_view(pilot, view)
        await wait_for(pilot, lambda: pilot.app.screen.refreshes > 0 and rows(pilot.app), what="the list")
        if then is not None:
            await then(pilot)
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
def test_agents_view(snap_compare, rt: Runtime, adder: dict[str, Any], size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = attached(rt, console_config(stable=True, refresh_seconds=60))
    assert snap_compare(app, terminal_size=size, run_before=settled_list("agents"))


def test_agent_form_80x24(snap_compare, rt: Runtime, adder: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    async def edit(pilot: Pilot) -> None:
        await select_row(pilot, "adder")
        await pilot.press("e")
        await shown(pilot, AgentForm, "#submit")

    app = attached(rt, console_config(stable=True, refresh_seconds=60))
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled_list("agents", edit))


# ---- flows ------------------------------------------------------------------------------------------------------

def test_create_an_agent_then_chat_with_a_forced_tool_call_and_stop_a_generation(rt: Runtime) -> None:
    counter = make_agent(rt, name="counter", max_tokens=1500)

    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "agents")
        await pilot.press("n")
        form = await shown(pilot, AgentForm, "#submit")
        submit = form.query_one("#submit", Button)
        problem = form.query_one("#problem", Static)
        # checked as you type: no name, no save
        assert submit.disabled and "name is needed" in str(problem.render())
        await pilot.press(*"clock")
        await wait_for(pilot, lambda: not submit.disabled, what="the form to accept a name")
        max_tokens = form.query_one("#f-max_tokens", Input)
        max_tokens.value = "lots"
        await wait_for(pilot, lambda: submit.disabled and "whole number" in str(problem.render()), what="a problem")
        max_tokens.value = "48"
        form.query_one("#f-temperature", Input).value = "0"
        assert form.query_one("#f-policy", Select).value == "local"
        tools = form.query_one("#f-tools", SelectionList)
        choice = form.query_one("#f-tool_choice", Select)
        choice_values = lambda: [v for _, v in choice._options]  # noqa: E731
        assert "current_time" not in choice_values()  # only a selected tool can be forced
        tools.select("current_time")
        await wait_for(pilot, lambda: "current_time" in choice_values(), what="the tool to be offered as choice")
        choice.value = "current_time"
        await wait_for(pilot, lambda: not submit.disabled, what="a valid form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, AgentsScreen), what="the form to close")
        await select_row(pilot, "clock")
        with api(rt) as c:
            saved = next(a for a in c.get("/api/v1/agents").json()["items"] if a["name"] == "clock")
        assert saved["tools"] == ["current_time"] and saved["tool_choice"] == "current_time"
        assert saved["temperature"] == 0 and saved["max_tokens"] == 48

        # chat: the forced tool call and its result inline, then the answer streamed as Markdown
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat")
        await send(pilot, "What time is it now?")
        screen = chat(app)
        await wait_for(pilot, lambda: len(screen.conversation.turns) == 2, 240, "the answer")
        kinds = [e.kind for e in screen.log_view.entries]
        assert kinds[:3] == ["user", "tool_call", "tool_result"] and "assistant" in kinds, kinds
        call, result = screen.log_view.entries[1], screen.log_view.entries[2]
        assert call.text.startswith("⚙ current_time(") and result.text.startswith(("↳ current_time", "✗ current_time"))
        texts = [str(w.render()) for w in screen.log_view.query(Static)]
        assert any(t.startswith("⚙ current_time(") for t in texts), texts
        assert screen.conversation.output_tokens > 0 and "1 turn ·" in str(app.screen.query_one("#chat-status",
                                                                                                 Static).render())
        assert last_call(rt)[0] != "cancelled"  # type: ignore[index]

        # back to the list, into another agent's chat; Esc mid-generation stops it, and the runtime with it
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AgentsScreen), what="the agents list")
        await select_row(pilot, "counter")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the second chat")
        screen = chat(app)
        await send(pilot, LONG_PROMPT)
        await wait_for(pilot, lambda: len(screen.log_view.streaming_text) >= 12, 120, "tokens to stream in")
        assert screen.generating
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, 30, "the generation to stop")
        assert isinstance(app.screen, ChatScreen)  # Esc stopped the answer; it did not leave the chat
        assert screen.log_view.entries[-1].text == "■ stopped"
        partial = screen.conversation.turns[-1]["content"]
        assert partial and partial.startswith(screen.log_view.entries[-2].text[:5])
        deadline = 30.0
        row = await wait_for(pilot, lambda: (r := last_call(rt)) and r[0] == "cancelled" and r, deadline,
                             "the runtime to log the call cancelled")
        assert 1 <= row[1] < 300, row  # far from the 1,500 tokens the agent may write

        # the history stays with the agent while the console runs, and is sent with the next turn
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AgentsScreen), what="the agents list again")
        await wait_for(pilot, lambda: any("counter" in r and "1 turn" in r for r in rows(app)), what="CHAT column")
        await select_row(pilot, "clock")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the first chat again")
        again = chat(app)
        assert [e.kind for e in again.log_view.entries] == kinds
        assert len(again.conversation.turns) == 2 and again.agent["id"] == saved["id"]

    drive(attached(rt), scenario)
    assert counter["id"]


def test_rag_sources_index_live_and_answer_a_test_query(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "rags")
        assert isinstance(app.screen, RagScreen)
        await pilot.press("n")
        form = await shown(pilot, FormDialog, "#submit")
        form.query_one("#f-name", Input).value = "Keeper notes"
        form.query_one("#f-source", Input).value = PASSAGE
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, RagScreen), what="the form to close")
        seen: set[str] = set()

        def indexed() -> bool:
            row = next((r for r in rows(app) if "Keeper notes" in r), "")
            seen.update(state for state in ("pending", "indexing…", "ready") if state in row)
            return "ready" in row

        await wait_for(pilot, indexed, 120, "the source to finish indexing")
        assert seen - {"ready"}, seen  # the view showed it before it was ready: progress is live
        row = next(r for r in rows(app) if "Keeper notes" in r)
        assert "text" in row and " 1 " in f" {row} "  # one document
        await select_row(pilot, "Keeper notes")
        await pilot.press("t")
        ask = await shown(pilot, FormDialog, "#submit")
        ask.query_one("#f-query", Input).value = "who polished the lighthouse lens"
        await pilot.press("ctrl+s")
        text = await dialog_text(pilot)
        assert "Marisol Vantreck" in text and "score" in text

    drive(attached(rt), scenario)


def test_mcp_servers_connect_discover_and_show_tools(rt: Runtime) -> None:
    async def scenario(pilot: Pilot) -> None:
        app = pilot.app
        await open_view(pilot, "mcp")
        assert isinstance(app.screen, McpScreen)
        await pilot.press("x")  # discover without saving
        form = await shown(pilot, FormDialog, "#submit")
        form.query_one("#f-target", Input).value = f"{sys.executable} {MCP_SERVER}"
        await pilot.press("ctrl+s")
        assert "add" in await dialog_text(pilot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, McpScreen))
        assert not any("calc" in r for r in rows(app))  # discovering saved nothing
        await pilot.press("n")
        form = await shown(pilot, FormDialog, "#submit")
        form.query_one("#f-name", Input).value = "calc"
        form.query_one("#f-target", Input).value = f"{sys.executable} {MCP_SERVER}"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("calc" in r and "connected" in r for r in rows(app)), 60, "the server")
        await select_row(pilot, "calc")
        await pilot.press("enter")
        text = await dialog_text(pilot)
        assert "add" in text and "Add two integers" in text

    drive(attached(rt), scenario)
    with api(rt) as c:  # the agent form offers the server's tools
        server = next(s for s in c.get("/api/v1/mcp").json()["items"] if s["name"] == "calc")

    async def offered(pilot: Pilot) -> None:
        await open_view(pilot, "agents")
        await pilot.press("n")
        form = await shown(pilot, AgentForm, "#submit")
        values = [o.value for o in form.query_one("#f-tools", SelectionList)._options]
        assert f"mcp:{server['id']}:add" in values and "current_time" in values

    drive(attached(rt), offered)
