"""Chat with one agent, as oterm does: the answer streams in as Markdown, tool calls and results show inline, the
conversation is kept (per agent, while the console runs) and sent as `history`; Esc stops a generation, which
closes the HTTP stream so the runtime stops generating too."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static
from textual.worker import Worker

from tarx_console.client.api import TarxClient
from tarx_console.client.errors import ClientError
from tarx_console.client.events import ChatDelta, ChatDone, ChatFailed, ChatToolCall, ChatToolResult
from tarx_console.screens.base import ViewScreen
from tarx_console.widgets.chatlog import ChatLog, Entry


@dataclass
class Conversation:
    """What was said with one agent: the entries the log shows, and the turns sent back as `history`."""

    entries: list[Entry] = field(default_factory=list)
    turns: list[dict[str, str]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0


def tool_label(ref: str) -> str:
    """A tool as a person reads it: an MCP tool `mcp:<server_id>:<name>` by its name."""
    return f"{ref.rsplit(':', 1)[-1]} (MCP)" if ref.startswith("mcp:") else ref


def summary(agent: dict[str, Any]) -> str:
    tools = ", ".join(tool_label(t) for t in agent.get("tools") or []) or "no tools"
    choice = agent.get("tool_choice")
    forced = f", forced: {tool_label(choice)}" if choice and choice != "auto" else ""
    return (f"[b]{agent['name']}[/b] · {agent.get('model')} · {agent.get('execution_policy')} · "
            f"temp {agent.get('temperature')} · max {agent.get('max_tokens')} tokens · {tools}{forced} · "
            f"{len(agent.get('rag_source_ids') or [])} RAG · {len(agent.get('skills') or [])} skills")


class ChatScreen(ViewScreen):
    BINDINGS = [
        Binding("ctrl+n", "clear", "New chat", id="chat.clear"),
        Binding("ctrl+l", "focus_log", "Scroll log", id="chat.log"),
    ]
    DEFAULT_CSS = """
    ChatScreen #chat-agent { height: auto; padding: 0 1; color: $text-muted; }
    ChatScreen #chat-status { height: 1; padding: 0 1; color: $text-muted; }
    ChatScreen #message { margin: 0 1; }
    """

    def __init__(self, agent: dict[str, Any], conversation: Conversation) -> None:
        super().__init__()
        self.agent = agent
        self.conversation = conversation
        self.VIEW_TITLE = f"Agents > {agent['name']}"
        self.generation: Worker[None] | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(summary(self.agent), id="chat-agent")
        yield ChatLog(id="chatlog")
        yield Static("", id="chat-status")
        yield Input(placeholder=f"Message {self.agent['name']}…", id="message")

    async def on_mount(self) -> None:
        self.message.cursor_blink = not self.tarx.config.stable
        await self.log_view.replay(self.conversation.entries)
        self.conversation.entries = self.log_view.entries  # one list: what the log shows is what is kept
        self.show_status()
        self.message.focus()

    @property
    def log_view(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def message(self) -> Input:
        return self.query_one("#message", Input)

    @property
    def generating(self) -> bool:
        return self.generation is not None and self.generation.is_running

    async def load(self, client: TarxClient) -> None:
        self.agent = await client.agent(self.agent["id"])  # an edit elsewhere shows here
        self.query_one("#chat-agent", Static).update(summary(self.agent))

    def show_status(self, text: str | None = None) -> None:
        c = self.conversation
        if text is None:
            turns = len(c.turns) // 2
            text = (f"{turns} turn{'' if turns == 1 else 's'} · {c.input_tokens} tokens in, {c.output_tokens} out · "
                    "Enter sends · ctrl+n new chat · Esc back")
        self.query_one("#chat-status", Static).update(text)

    def focus_main(self) -> None:
        self.message.focus()

    # ---- sending, streaming, stopping ----------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "message":
            super().on_input_submitted(event)
            return
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("The agent is still answering: Esc stops it.", severity="warning")
            return
        self.message.value = ""
        self.generation = self.send(text)

    @work(group="chat", exclusive=True)
    async def send(self, text: str) -> None:
        log, conversation = self.log_view, self.conversation
        client = self.tarx.client
        await log.user(text)
        if client is None:
            await log.error("Not connected to a runtime yet.")
            return
        self.show_status("generating… Esc stops")
        history = list(conversation.turns)
        answer = ""
        try:
            async with aclosing(client.chat_agent(self.agent["id"], text, history)) as events:
                async for event in events:
                    if isinstance(event, ChatDelta):
                        await log.delta(event.content)
                    elif isinstance(event, ChatToolCall):
                        answer += await log.end_reply()
                        await log.tool_call(event.name, event.args)
                    elif isinstance(event, ChatToolResult):
                        await log.tool_result(event.name, event.result, event.success)
                    elif isinstance(event, ChatDone):
                        conversation.input_tokens += event.input_tokens
                        conversation.output_tokens += event.output_tokens
                    elif isinstance(event, ChatFailed):
                        await log.error(f"The agent failed: {event.detail}")
            answer += await log.end_reply()
            conversation.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            self.show_status()
        except asyncio.CancelledError:
            # Esc (or leaving): the stream is closed by now, and with it the runtime's generation. What came so far
            # stays, in the history and (while the screen is up) in the log, so the next turn can refer to it.
            partial = log.streaming_text
            answer += partial
            conversation.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
            if self.is_attached:
                await log.end_reply()
                await log.note("■ stopped")
                self.show_status()
            else:  # the chat was closed mid-answer: keep what the log would have shown for when it opens again
                log.entries += [*([Entry("assistant", partial)] if partial else []), Entry("note", "■ stopped")]
            raise
        except ClientError as exc:
            await log.end_reply()
            await log.error(f"The runtime refused: {exc}")
            self.show_status()

    def stop(self) -> None:
        if self.generation is not None:
            self.generation.cancel()

    def action_back(self) -> None:
        if not self.prompt.is_open and self.generating:
            self.stop()
            return
        super().action_back()

    def on_unmount(self) -> None:
        self.stop()  # the chat was closed: nobody reads the answer, so the runtime should not keep generating

    async def action_clear(self) -> None:
        if self.generating:
            self.notify("The agent is still answering: Esc stops it.", severity="warning")
            return
        self.conversation.turns.clear()
        self.conversation.input_tokens = self.conversation.output_tokens = 0
        log = self.log_view
        await log.remove_children()
        log.entries.clear()
        self.show_status()
        self.message.focus()

    def action_focus_log(self) -> None:
        self.log_view.focus()
