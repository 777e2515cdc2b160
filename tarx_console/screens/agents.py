"""Agents: the project's agents (list, create, edit, delete) and, on Enter, a chat with one (screens/chat.py).

The agent form offers what the runtime has: its models, the built-in tools and the tools of the project's MCP
servers, its RAG sources and skills; it checks the values as they are typed and saves only a valid agent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import Integer, Length, Number
from textual.widgets import Button, Input, Label, Select, SelectionList, Static, TextArea

from tarx_console import fmt
from tarx_console.client.api import EXECUTION_POLICIES, TOOL_CHOICES, TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.screens.base import TableView
from tarx_console.screens.chat import ChatScreen, Conversation, tool_label
from tarx_console.screens.dialogs import ConfirmDialog
from tarx_console.widgets.difftable import Row

DEFAULT_MODEL = "tarx-local"


@dataclass
class Choices:
    """What an agent may refer to, read from the runtime when the form opens: (label, value) pairs."""

    models: list[str]
    tools: list[tuple[str, str]]
    rags: list[tuple[str, str]]
    skills: list[tuple[str, str]]


async def gather_choices(client: TarxClient) -> Choices:
    async def optional(call: Any) -> list[dict[str, Any]]:
        try:
            return await call
        except ClientError:  # e.g. a platform key may not list /v1/models: the form still opens
            return []

    # the built-in tools come from the runtime too: one of another version may offer others
    models, builtin, servers, rags, skills = await asyncio.gather(
        optional(client.models()), optional(client.tools()), optional(client.list_mcp()),
        optional(client.rag_sources()), optional(client.skills()))
    tools = [(t["name"], t["name"]) for t in builtin]
    tools += [(f"{s['name']}/{t['name']} (MCP)", f"mcp:{s['id']}:{t['name']}") for s in servers for t in s["tools"]]
    chat_models = [m["id"] for m in models if not m.get("embedding_only")]  # when the card says so
    return Choices(models=chat_models or [DEFAULT_MODEL], tools=tools,
                   rags=[(f"{r['name']} ({r['kind']}, {r['state']})", r["id"]) for r in rags],
                   skills=[(f"{s['id']}: {s.get('description') or s.get('name', '')}"[:70], s["id"]) for s in skills])


def with_missing(options: list[tuple[str, str]], chosen: set[str]) -> list[tuple[str, str]]:
    """The options, plus what the agent names that the runtime no longer offers (kept unless unticked)."""
    offered = {value for _, value in options}
    return options + [(f"{tool_label(v)} (no longer offered)", v) for v in sorted(chosen - offered)]


class AgentForm(ModalScreen[dict[str, Any] | None]):
    """Create or edit an agent. Dismisses with the fields to send, or None when cancelled."""

    DEFAULT_CSS = """
    AgentForm { align: center middle; }
    AgentForm > Vertical { width: 96; max-width: 100%; height: 95%; border: thick $accent; background: $surface;
                           padding: 0 1; }
    AgentForm .title { text-style: bold; }
    AgentForm #fields { height: 1fr; }
    AgentForm Label { margin-top: 1; color: $text-muted; }
    AgentForm .pair { height: auto; }
    AgentForm .pair > Vertical { width: 1fr; height: auto; }
    AgentForm SelectionList { height: auto; max-height: 8; }
    AgentForm TextArea { height: 6; }
    AgentForm #problem { height: auto; color: $error; }
    AgentForm #problem.ok { color: $success; }
    AgentForm .buttons { height: auto; align-horizontal: right; }
    AgentForm Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="agent-form.cancel"),
                Binding("ctrl+s", "submit", "Save", id="agent-form.submit", priority=True)]

    def __init__(self, title: str, choices: Choices, agent: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.agent = agent or {}
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        a = self.agent
        models = list(dict.fromkeys([*self.choices.models, *([a["model"]] if a.get("model") else [])]))
        chosen_tools = set(a.get("tools") or [])
        with Vertical():
            yield Static(self.title_text, classes="title")
            with VerticalScroll(id="fields"):
                yield Label("Name")
                yield Input(a.get("name", ""), placeholder="e.g. support-bot", id="f-name",
                            validators=[Length(1, 100, "A name is needed (up to 100 characters).")])
                with Horizontal(classes="pair"):
                    with Vertical():
                        yield Label("Model")
                        yield Select([(m, m) for m in models], value=a.get("model") or models[0], allow_blank=False,
                                     id="f-model")
                    with Vertical():
                        yield Label("Execution policy")
                        yield Select([(p, p) for p in EXECUTION_POLICIES], value=a.get("execution_policy", "local"),
                                     allow_blank=False, id="f-policy")
                with Horizontal(classes="pair"):
                    with Vertical():
                        yield Label("Temperature (0 to 2)")
                        yield Input(str(a.get("temperature", 0.7)), id="f-temperature", validators=[
                            Number(0, 2, "Temperature is a number from 0 to 2.")])
                    with Vertical():
                        yield Label("Max tokens (1 to 32768)")
                        yield Input(str(a.get("max_tokens", 512)), id="f-max_tokens", validators=[
                            Integer(1, 32768, "Max tokens is a whole number from 1 to 32768.")])
                yield Label("Tools (space toggles)")
                yield SelectionList[str](*[(label, value, value in chosen_tools)
                                           for label, value in with_missing(self.choices.tools, chosen_tools)],
                                         id="f-tools")
                yield Label("Tool choice: auto, required, none, or force one of the tools")
                yield Select(self._tool_choices(sorted(chosen_tools)), value=a.get("tool_choice", "auto"),
                             allow_blank=False, id="f-tool_choice")
                yield Label("RAG sources")
                chosen_rags = set(a.get("rag_source_ids") or [])
                yield SelectionList[str](*[(label, value, value in chosen_rags)
                                           for label, value in with_missing(self.choices.rags, chosen_rags)],
                                         id="f-rags")
                yield Label("Skills")
                chosen_skills = set(a.get("skills") or [])
                yield SelectionList[str](*[(label, value, value in chosen_skills)
                                           for label, value in self.choices.skills], id="f-skills")
                yield Label("Instructions")
                yield TextArea(a.get("instructions", ""), id="f-instructions")
            yield Static("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    @staticmethod
    def _tool_choices(tools: list[str]) -> list[tuple[str, str]]:
        return [(c, c) for c in TOOL_CHOICES] + [(f"force {t}", t) for t in tools]

    def on_mount(self) -> None:
        stable = self.app.config.stable  # type: ignore[attr-defined]
        for field_input in self.query(Input):
            field_input.cursor_blink = not stable
        self.query_one("#f-instructions", TextArea).cursor_blink = not stable
        self.query_one("#f-name", Input).focus()
        self.check()

    # ---- checking as you type --------------------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _changed(self) -> None:
        self.check()

    @on(SelectionList.SelectedChanged, "#f-tools")
    def _tools_changed(self) -> None:
        choice = self.query_one("#f-tool_choice", Select)
        current = choice.value
        tools = list(self.query_one("#f-tools", SelectionList).selected)
        with self.prevent(Select.Changed):
            choice.set_options(self._tool_choices(tools))
            choice.value = current if current in (*TOOL_CHOICES, *tools) else "auto"
        self.check()

    def check(self) -> list[str]:
        """The form's problems, first one shown; Save is offered only when there are none."""
        problems: list[str] = []
        for field_input in self.query(Input):
            result = field_input.validate(field_input.value)
            if result is not None and not result.is_valid:
                problems += result.failure_descriptions
        tools = list(self.query_one("#f-tools", SelectionList).selected)
        choice = self.query_one("#f-tool_choice", Select).value
        if choice not in TOOL_CHOICES and choice not in tools:
            problems.append(f"The forced tool '{choice}' is not one of the agent's tools.")
        hint = "✓ ready to save"
        if self.query_one("#f-rags", SelectionList).selected and "rag_search" not in tools:
            hint = "Ready to save; note the agent reads its RAG sources only with the rag_search tool."
        self.problems = problems
        shown = self.query_one("#problem", Static)
        shown.update(problems[0] if problems else hint)
        shown.set_class(not problems, "ok")
        self.query_one("#submit", Button).disabled = bool(problems)
        return problems

    def values(self) -> dict[str, Any]:
        def text(name: str) -> str:
            return self.query_one(f"#f-{name}", Input).value.strip()

        return {
            "name": text("name"),
            "model": self.query_one("#f-model", Select).value,
            "execution_policy": self.query_one("#f-policy", Select).value,
            "temperature": float(text("temperature")),
            "max_tokens": int(text("max_tokens")),
            "tools": list(self.query_one("#f-tools", SelectionList).selected),
            "tool_choice": self.query_one("#f-tool_choice", Select).value,
            "rag_source_ids": list(self.query_one("#f-rags", SelectionList).selected),
            "skills": list(self.query_one("#f-skills", SelectionList).selected),
            "instructions": self.query_one("#f-instructions", TextArea).text,
        }

    def action_submit(self) -> None:
        if self.check():
            self.notify(self.problems[0], severity="error")
            return
        self.dismiss(self.values())

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()


class AgentsScreen(TableView):
    VIEW_TITLE = "Agents"
    COLUMNS = [("id", "ID"), ("name", "NAME"), ("model", "MODEL"), ("policy", "POLICY"), ("tools", "TOOLS"),
               ("rag", "RAG"), ("skills", "SKILLS"), ("chat", "CHAT"), ("updated", "UPDATED")]
    BINDINGS = [
        Binding("enter", "chat", "Chat", id="agents.chat"),
        Binding("n", "create", "New agent", id="agents.create"),
        Binding("e", "edit", "Edit", id="agents.edit"),
        Binding("d", "delete", "Delete", id="agents.delete"),
        Binding("R", "view('rags')", "RAG sources", id="agents.rags"),
        Binding("M", "view('mcp')", "MCP servers", id="agents.mcp"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.conversations: dict[str, Conversation] = {}  # per agent, for as long as the console runs

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.list_agents()

    def row(self, a: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        tools = ", ".join(tool_label(t) for t in a.get("tools") or []) or "-"
        turns = len(self.conversations[a["id"]].turns) // 2 if a["id"] in self.conversations else 0
        return Row(a["id"], (fmt.ident(a["id"], stable), a["name"], a.get("model") or "", a.get("execution_policy")
                             or "", tools, str(len(a.get("rag_source_ids") or [])), str(len(a.get("skills") or [])),
                             f"{turns} turn{'' if turns == 1 else 's'}" if turns else "-",
                             fmt.ago(a.get("updated_at"), stable)))

    def on_screen_resume(self) -> None:
        self._row_cache.clear()  # the CHAT column changes while the chat screen is open
        super().on_screen_resume()

    def action_view(self, name: str) -> None:
        self.tarx.open_view(name)

    def action_chat(self) -> None:
        agent = self.require_selection()
        if agent is not None:
            conversation = self.conversations.setdefault(agent["id"], Conversation())
            self.app.push_screen(ChatScreen(agent, conversation))

    async def _save(self, title: str, agent: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Show the form until the runtime takes what it holds (a refusal reopens it with the values kept)."""
        choices = await self.attempt(gather_choices)
        if choices is None:
            return None
        values = agent
        while True:
            fields = await self.app.push_screen_wait(AgentForm(title, choices, values))
            if fields is None:
                return None
            saved = await self.attempt(partial(self._send, agent["id"] if agent else None, fields))
            if saved is not None:
                self.schedule_refresh(0)
                return saved
            values = {**(agent or {}), **fields}

    @staticmethod
    async def _send(agent_id: str | None, fields: dict[str, Any], client: TarxClient) -> dict[str, Any]:
        return await (client.update_agent(agent_id, fields) if agent_id else client.create_agent(fields))

    @work(group="agents-create")
    async def action_create(self) -> None:
        if (created := await self._save("New agent")) is not None:
            self.notify(f"Created agent '{created['name']}'. Enter chats with it.")

    @work(group="agents-edit")
    async def action_edit(self) -> None:
        agent = self.require_selection()
        if agent is not None and (saved := await self._save(f"Edit agent '{agent['name']}'", agent)) is not None:
            self.notify(f"Saved agent '{saved['name']}'.")

    @work(group="agents-delete")
    async def action_delete(self) -> None:
        agent = self.require_selection()
        if agent is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(f"Delete agent '{agent['name']}'?", "Delete")):
            return
        if await self.attempt(lambda c: c.delete_agent(agent["id"])) is not None:
            self.conversations.pop(agent["id"], None)
            self.notify(f"Deleted agent '{agent['name']}'.")
            self.schedule_refresh(0)
