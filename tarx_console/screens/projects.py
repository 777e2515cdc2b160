"""Projects (list, create) and, on Enter, a project's members and their roles."""

from __future__ import annotations

import re
from typing import Any

from textual import work
from textual.binding import Binding

from tarx_console import fmt
from tarx_console.client.api import TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, Field, FormDialog
from tarx_console.widgets.difftable import Row

ROLES = ["member", "editor", "admin", "owner"]
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")  # as the runtime checks it (seed 001)


def slug_problem(text: str) -> str | None:
    return None if SLUG.match(text) else "A slug is lower-case letters, digits and dashes, up to 48 (e.g. research-2)."


def email_problem(text: str) -> str | None:
    local, at, domain = text.partition("@")
    return None if at and local and "." in domain.strip(".") else "That does not look like an email address."


class ProjectsScreen(TableView):
    VIEW_TITLE = "Projects"
    COLUMNS = [("id", "ID"), ("slug", "SLUG"), ("name", "NAME"), ("role", "YOUR ROLE"), ("created", "CREATED")]
    BINDINGS = [
        Binding("n", "create", "New project", id="projects.create"),
        Binding("enter", "members", "Members", id="projects.members"),
        Binding("u", "use", "Use", id="projects.use"),
    ]

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return await client.list_projects()

    def row(self, p: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        current = "*" if p["slug"] == self.tarx.project else ""
        return Row(p["id"], (fmt.ident(p["id"], stable), p["slug"] + current, p["name"], p.get("role") or "",
                             fmt.when(p.get("created_at"), stable)), "bold" if current else "")

    @work(group="projects-create")
    async def action_create(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("New project", [
            Field("name", "Name", placeholder="Research", required=True),
            Field("slug", "Slug (optional: made from the name when empty)", placeholder="research",
                  check=slug_problem)]))
        if not form:
            return
        project = await self.attempt(lambda c: c.create_project(form["name"], form["slug"] or None))
        if project is None:
            return
        self.notify(f"Created project '{project['slug']}'.")
        self.schedule_refresh(0)

    @work(group="projects-use")
    async def action_use(self) -> None:
        """Views act in the selected project from now on (k9s: use a namespace)."""
        project = self.require_selection()
        if project is not None and self.tarx.client is not None:
            await self.tarx.choose_project(self.tarx.client, project)
            self.notify(f"Using project '{project['slug']}'.")
            self.schedule_refresh(0)

    def action_members(self) -> None:
        if (project := self.require_selection()) is not None:
            self.app.push_screen(MembersScreen(project))


class MembersScreen(TableView):
    VIEW_TITLE = "Members"
    COLUMNS = [("user", "USER"), ("email", "EMAIL"), ("name", "NAME"), ("role", "ROLE")]
    BINDINGS = [
        Binding("a", "add", "Add member", id="members.add"),
        Binding("d", "remove", "Remove", id="members.remove"),
    ]

    def __init__(self, project: dict[str, Any]) -> None:
        super().__init__()
        self.project = project
        self.VIEW_TITLE = f"Projects > {project['slug']} > Members"

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return [{**m, "id": m["user_id"]} for m in await client.members(self.project["id"])]

    def row(self, m: dict[str, Any]) -> Row:
        return Row(m["id"], (fmt.ident(m["id"], self.tarx.config.stable), m["email"], m.get("name") or "", m["role"]))

    @work(group="members-add")
    async def action_add(self) -> None:
        form = await self.app.push_screen_wait(FormDialog(f"Add a member to {self.project['slug']}", [
            Field("email", "Email", placeholder="pat@example.com", required=True, check=email_problem),
            Field("role", "Role", "member", ROLES)], submit="Add"))
        if form and await self.attempt(lambda c: c.add_member(self.project["id"], form["email"], form["role"])):
            self.schedule_refresh(0)

    @work(group="members-remove")
    async def action_remove(self) -> None:
        member = self.require_selection()
        if member is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Remove {member['email']} from {self.project['slug']}?", "Remove")):
            return
        if await self.attempt(lambda c: c.remove_member(self.project["id"], member["id"])):
            self.schedule_refresh(0)
