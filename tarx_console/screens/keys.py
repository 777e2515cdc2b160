"""Keys of every kind: create (plaintext shown once), revoke with confirmation, last used."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.binding import Binding

from tarx_console import fmt
from tarx_console.client.api import KEY_KINDS, TarxClient
from tarx_console.screens.base import TableView
from tarx_console.screens.dialogs import ConfirmDialog, DescribeDialog, Field, FormDialog, SecretDialog
from tarx_console.widgets.difftable import Row

SCOPES = ["developer_runtime", "supercomputer"]


class KeysScreen(TableView):
    VIEW_TITLE = "Keys"
    COLUMNS = [("id", "ID"), ("kind", "KIND"), ("name", "NAME"), ("prefix", "PREFIX"), ("scope", "SCOPE"),
               ("last_used", "LAST USED"), ("state", "STATE")]
    BINDINGS = [
        Binding("n", "create", "New key", id="keys.create"),
        Binding("d", "revoke", "Revoke", id="keys.revoke"),
        Binding("enter", "describe", "Describe", id="keys.describe"),
    ]

    async def fetch(self, client: TarxClient) -> list[dict[str, Any]]:
        return list(reversed(await client.list_keys()))  # newest first

    def row(self, k: dict[str, Any]) -> Row:
        stable = self.tarx.config.stable
        revoked = bool(k.get("revoked_at"))
        return Row(k["id"], (fmt.ident(k["id"], stable), k["kind"], k["name"],
                             fmt.ident(k.get("display_prefix"), stable), k.get("scope") or "",
                             fmt.ago(k.get("last_used_at"), stable) if k.get("last_used_at") else "never",
                             "revoked" if revoked else "active"),
                   "dim strike" if revoked else "")

    @work(group="keys-create")
    async def action_create(self) -> None:
        form = await self.app.push_screen_wait(FormDialog("New API key", [
            Field("kind", "Kind", "platform", list(KEY_KINDS)),
            Field("scope", "Scope (tarx keys)", SCOPES[0], SCOPES),
            Field("name", "Name (what uses it)", placeholder="laptop-sdk", required=True),
        ]))
        if not form:
            return
        scope = form["scope"] if form["kind"] == "tarx" else None
        key = await self.attempt(lambda c: c.create_key(form["kind"], form["name"], scope))
        if key is None:
            return
        await self.app.push_screen_wait(SecretDialog(f"New {key['kind']} key '{key['name']}'", key["key"]))
        self.schedule_refresh(0)

    @work(group="keys-revoke")
    async def action_revoke(self) -> None:
        key = self.require_selection()
        if key is None:
            return
        if key.get("revoked_at"):
            self.notify("That key is already revoked.", severity="warning")
            return
        me = await self.attempt(lambda c: c.me())
        own = me is not None and (me.get("auth") or {}).get("key_id") == key["id"]
        if own:  # the key this console signs in with: say so loudly, and make the safe answer the default
            question = (f"'{key['name']}' is the key THIS CONSOLE signs in with. Revoke it anyway?")
            detail = ("The console loses its access at once and asks for another key to carry on. Make sure you "
                      "have one (e.g. `tarx keys create` on the runtime's machine) before you say yes.")
        else:
            question = f"Revoke {key['kind']} key '{key['name']}'? Programs using it stop working at once."
            detail = ""
        if not await self.app.push_screen_wait(ConfirmDialog(question, "Revoke", "Keep it", detail=detail)):
            return
        if await self.attempt(lambda c: c.revoke_key(key["id"])) is None:
            return
        self.notify(f"Revoked '{key['name']}'.")
        if own:
            self.tarx.declined_sign_in = False
            self.tarx.sign_in_again()
            return
        self.schedule_refresh(0)

    def action_describe(self) -> None:
        if (key := self.require_selection()) is not None:
            self.app.push_screen(DescribeDialog(f"Key {key['name']}", key))
