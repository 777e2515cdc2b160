"""RAG sources: list them with their indexing progress (live), create one (inline text, a directory on the
runtime's machine, or a URL), test one with a query and see its hits, delete one."""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, DescribeDialog, Dialog, Field, FormDialog
from tarx_console.widgets.difftable import Row

KINDS = {"text": "text", "directory": "path", "url": "url"}  # the kind, and the config key its source goes in
INDEXING_REFRESH = 0.5  # seconds between refreshes while a source indexes: progress shows as it happens


class TextDialog(Dialog):
    """A titled, scrollable block of text (hits of a test, tools of a server); Esc closes it."""

    DEFAULT_CSS = "TextDialog VerticalScroll { height: auto; max-height: 24; }"

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            with VerticalScroll():
                yield Static(self.text, id="text")
            yield Static("esc closes", classes="hint")


def hits_text(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "No hits: nothing in this source matches (or it has not finished indexing)."
    lines = []
    for n, hit in enumerate(hits, 1):
        ranks = ", ".join(f"{kind} #{hit[f'{kind}_rank']}" for kind in ("bm25", "vector") if hit.get(f"{kind}_rank"))
        text = " ".join(str(hit["text"]).split())
        lines.append(f"[b]{n}. {escape(str(hit['document']))}[/b]  score {hit['score']:.4f}  ({ranks or 'no rank'})\n"
                     f"   {escape(text[:300])}{'…' if len(text) > 300 else ''}")
    return "\n\n".join(lines)


async def create(form: dict[str, str], client: TarxClient) -> dict[str, Any]:
    return await client.create_rag(form["name"], form["kind"], {KINDS[form["kind"]]: form["source"]},
                                   form["description"])


class RagScreen(TableView):
    VIEW_TITLE = "RAG sources"
    COLUMNS = [("id", "ID"), ("name", "NAME"), ("kind", "KIND"), ("state", "STATE"), ("documents", "DOCS"),
               ("chunks", "CHUNKS"), ("indexed", "INDEXED"), ("error", "ERROR")]
    BINDINGS = [
        Binding("n", "create", "New source", id="rags.create"),
        Binding("t", "test", "Test", id="rags.test"),
        Binding("d", "delete", "Delete", id="rags.delete"),
        Binding("enter", "describe", "Describe", id="rags.describe"),
    ]

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.rag_sources()

    def version(self, item: dict[str, Any]) -> Any:
        return (item["state"], item["documents"], item["chunks"], item.get("error"), item.get("updated_at"))

    def row(self, s: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        state = s["state"]
        style = {"indexing": "yellow", "error": "red", "ready": ""}.get(state, "dim")
        return Row(s["id"], (fmt.ident(s["id"], stable), s["name"], s["kind"],
                             "indexing…" if state == "indexing" else state, str(s["documents"]), str(s["chunks"]),
                             fmt.ago(s.get("indexed_at"), stable) if s.get("indexed_at") else "-",
                             (s.get("error") or "")[:60]), style)

    @property
    def indexing(self) -> bool:
        return any(s["state"] not in ("ready", "error") for s in self.items.values())

    async def _refresh(self) -> None:
        await super()._refresh()
        if self.indexing and self.is_current and not self.tarx.quitting:
            self.schedule_refresh(INDEXING_REFRESH)  # live progress while something indexes

    @work(group="rags-create")
    async def action_create(self) -> None:
        values: dict[str, str] = {}
        while True:
            form = await self.app.push_screen_wait(FormDialog("New RAG source", [
                Field("name", "Name", values.get("name", ""), placeholder="e.g. handbook"),
                Field("kind", "Kind", values.get("kind", "text"), list(KINDS)),
                Field("source", "The text itself (text), a directory on the runtime's machine (directory), or a URL",
                      values.get("source", ""), placeholder="e.g. /srv/docs or https://example.com/page"),
                Field("description", "Description (optional)", values.get("description", "")),
            ]))
            if not form:
                return
            values = form
            problem = ("A source needs a name." if not form["name"] else
                       "A source needs its text, directory or URL." if not form["source"] else "")
            if problem:
                self.notify(problem, severity="error")
                continue
            created = await self.attempt(partial(create, form))
            if created is not None:
                self.notify(f"Created '{created['name']}'; it indexes now.")
                self.schedule_refresh(0)
                return

    @work(group="rags-test")
    async def action_test(self) -> None:
        source = self.require_selection()
        if source is None:
            return
        form = await self.app.push_screen_wait(FormDialog(f"Test '{source['name']}'", [
            Field("query", "Query", placeholder="what to look for"), Field("k", "Hits", "5")], submit="Search"))
        if not form or not form["query"]:
            return
        k = int(form["k"]) if form["k"].isdigit() and 1 <= int(form["k"]) <= 50 else 5
        hits = await self.attempt(lambda c: c.rag_search(source["id"], form["query"], k))
        if hits is not None:
            await self.app.push_screen_wait(TextDialog(
                f"'{escape(form['query'])}' in {escape(source['name'])}: {len(hits)} hits", hits_text(hits)))

    @work(group="rags-delete")
    async def action_delete(self) -> None:
        source = self.require_selection()
        if source is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Delete RAG source '{source['name']}'? Agents using it lose it.", "Delete")):
            return
        if await self.attempt(lambda c: c.delete_rag(source["id"])) is not None:
            self.notify(f"Deleted '{source['name']}'.")
            self.schedule_refresh(0)

    def action_describe(self) -> None:
        if (source := self.require_selection()) is not None:
            self.app.push_screen(DescribeDialog(f"RAG source {source['name']}", source))
