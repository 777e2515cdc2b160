"""RAG sources: list them with their indexing progress (live), create one (inline text, a directory on the
runtime's machine, or a URL), test one with a query and see its hits, delete one."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
from rich.markup import escape
from textual import events, work
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


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as an http(s) address, or None."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "That is not a URL."
    if parsed.scheme not in ("http", "https"):
        return "The URL must start with http:// or https://."
    if not parsed.host:
        return "The URL needs a host, e.g. https://example.com/page."
    return None


def source_problem(source: str, form: dict[str, str]) -> str | None:
    """The source read as its kind says: a URL must be one, a directory an absolute path (on the runtime's
    machine, which may be another one: whether it exists there, the runtime says on create)."""
    kind = form.get("kind", "text")
    if kind == "url":
        return url_problem(source)
    if kind == "directory" and not source.startswith(("/", "~")):
        return "A directory is an absolute path on the runtime's machine, e.g. /srv/docs."
    return None


def source_fields(values: dict[str, str]) -> list[Field]:
    return [
        Field("name", "Name", values.get("name", ""), placeholder="e.g. handbook", required=True,
              check=lambda v: "A name is at most 100 characters." if len(v) > 100 else None),
        Field("kind", "Kind", values.get("kind", "text"), list(KINDS)),
        Field("source", "Source (by kind: the text, a directory on the runtime's disk, a URL)",
              values.get("source", ""), placeholder="e.g. /srv/docs or https://example.com/page", required=True,
              check_form=source_problem),
        Field("description", "Description (optional)", values.get("description", ""),
              check=lambda v: "A description is at most 2,000 characters." if len(v) > 2000 else None),
    ]


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

    def on_mount(self) -> None:
        self.fit_columns(self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_columns(event.size.width)

    def fit_columns(self, width: int) -> None:
        """Long ids, names and errors clipped to the room there is; under 100 columns (80x24, the SSH default) the
        time of indexing goes, so nothing is pushed off screen."""
        if width >= 100:
            fixed = {"id": 28, "name": 24, "kind": 9, "state": 9, "documents": 5, "chunks": 6, "indexed": 9}
        else:
            fixed = {"id": 10, "name": 14, "kind": 9, "state": 9, "documents": 4, "chunks": 6}
        room = width - 4 - sum(fixed.values()) - 2 * (len(fixed) + 1)  # the table's border and cell padding
        self.table.set_layout([*fixed, "error"], fixed | {"error": max(10, room)}, tails={"id"})

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
        while True:  # the form checks itself as it is typed; a refusal by the runtime reopens it as it was
            form = await self.app.push_screen_wait(FormDialog("New RAG source", source_fields(values)))
            if not form:
                return
            values = form
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
