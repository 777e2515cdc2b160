"""Modal dialogs: confirm, a small form, the once-only secret, a JSON description, and the port question."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

COMPACT_BELOW = 30  # terminal rows under which dialogs drop their spacing (80x24, the default SSH size)


class Dialog(ModalScreen[Any]):
    # The buttons are docked to the bottom of a box that scrolls: however short the terminal, they stay visible.
    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%; border: thick $accent;
                        background: $surface; padding: 1 2; overflow-y: auto; }
    Dialog .title { text-style: bold; margin-bottom: 1; }
    Dialog .buttons { dock: bottom; height: auto; margin-top: 1; align-horizontal: right; }
    Dialog Button { margin-left: 1; }
    Dialog Label.field { margin-top: 1; color: $text-muted; }
    Dialog Input > .input--placeholder { color: $text-disabled; text-style: italic; }
    Dialog .error { color: $error; text-style: bold; display: none; }
    Dialog .error.-shown { display: block; }
    Dialog .secret { background: $panel; color: $warning; text-style: bold; padding: 1; margin: 1 0; }
    Dialog .notice { color: $warning; text-style: bold; }
    Dialog.-compact > Vertical { padding: 0 1; border: tall $accent; }
    Dialog.-compact .title { margin-bottom: 0; }
    Dialog.-compact .buttons { margin-top: 1; }
    Dialog.-compact Input, Dialog.-compact Select { margin-bottom: 0; }
    Dialog.-compact .secret { padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def on_mount(self) -> None:  # Textual runs every class's on_mount: subclasses add theirs
        self.fit(self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self.fit(self.app.size.height)

    def fit(self, height: int) -> None:
        """On a short terminal, drop the spacing and the fields' and buttons' borders (Textual's compact style)."""
        compact = height < COMPACT_BELOW
        self.set_class(compact, "-compact")
        for widget in self.query("Input, Select, Button"):
            widget.compact = compact  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Dialog):
    """A yes/no question; the keys that answer it are named on its buttons."""

    YES_KEY, NO_KEY = "y", "n"
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n", "answer(False)", "No", id="confirm.no")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No", detail: str = "",
                 destructive: bool = True) -> None:
        super().__init__()
        self.question, self.detail = question, detail
        self.yes, self.no = yes, no
        self.destructive = destructive  # then No has the focus, so a stray Enter does no harm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="title")
            if self.detail:
                yield Static(self.detail)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} ({self.YES_KEY})", variant="error" if self.destructive else "primary",
                             id="yes")
                yield Button(f"{self.no} ({self.NO_KEY})", id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.destructive else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def action_cancel(self) -> None:
        self.dismiss(False)


@dataclass
class Field:
    name: str
    label: str
    default: str = ""
    options: list[str] = field(default_factory=list)  # a choice when given
    placeholder: str = ""  # shown as "e.g. …", dimmed: an example, never a value
    required: bool = False
    check: Callable[[str], str | None] | None = None  # the value (stripped) -> what is wrong with it, or None
    # the value and the whole form -> what is wrong: for a field read by another's choice (a URL or a path by kind)
    check_form: Callable[[str, dict[str, str]], str | None] | None = None


def example(text: str) -> str:
    """A placeholder that reads as an example, never as a value already there."""
    return text if not text or text.startswith("e.g.") else f"e.g. {text}"


class FormDialog(Dialog):
    """A few fields, checked as they are typed; Enter in a field or ctrl+s submits once every field is valid, Esc
    cancels. Dismisses with {name: value}; an invalid form stays open with its choices and says what is wrong."""

    BINDINGS = [Binding("ctrl+s", "submit", "Submit", id="form.submit")]

    def __init__(self, title: str, fields: list[Field], submit: str = "Create") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.submit_label = submit

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            for f in self.fields:
                yield Label(f.label + (" *" if f.required else ""), classes="field")
                if f.options:
                    yield Select([(o, o) for o in f.options], value=f.default or f.options[0], allow_blank=False,
                                 id=f"f-{f.name}")
                else:
                    yield Input(f.default, placeholder=example(f.placeholder), id=f"f-{f.name}")
                    yield Static("", classes="error", id=f"e-{f.name}")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.submit_label} (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        for field_input in self.query(Input):
            field_input.cursor_blink = not self.app.config.stable  # type: ignore[attr-defined]
        self.query_one(f"#f-{self.fields[0].name}").focus()

    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in self.fields:
            widget = self.query_one(f"#f-{f.name}")
            out[f.name] = str(widget.value).strip() if isinstance(widget, Input | Select) else ""
        return out

    @staticmethod
    def problem(f: Field, value: str, form: dict[str, str] | None = None) -> str | None:
        if not value:
            return f"{f.label.split(' (')[0]} is required." if f.required else None
        if f.check_form is not None and (wrong := f.check_form(value, form or {})):
            return wrong
        return f.check(value) if f.check else None

    def validate(self, only: str | None = None) -> list[str]:
        """Show each field's problem under it; the names of the invalid fields."""
        bad = []
        values = self.values()
        for f in self.fields:
            if f.options or (only is not None and f.name != only):
                continue
            problem = self.problem(f, values[f.name], values)
            error = self.query_one(f"#e-{f.name}", Static)
            error.update(problem or "")
            error.set_class(bool(problem), "-shown")
            if problem:
                bad.append(f.name)
        return bad

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("f-"):
            self.validate(event.input.id[2:])

    def on_select_changed(self, event: Select.Changed) -> None:
        # a choice changes what the other fields mean (a kind, a transport): check again those already filled in
        if self.is_mounted:
            for f in self.fields:
                if f.check_form is not None and self.values()[f.name]:
                    self.validate(f.name)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        bad = self.validate()
        if bad:
            self.query_one(f"#f-{bad[0]}").focus()
            return
        self.dismiss(self.values())


class SecretDialog(Dialog):
    """A new key's plaintext, shown this once; closing the dialog is the last time it exists in the console."""

    BINDINGS = [Binding("c", "copy", "Copy", id="secret.copy"), Binding("enter", "cancel", "Done", id="secret.done")]

    def __init__(self, title: str, secret: str) -> None:
        super().__init__()
        self.title_text = title
        self.secret = secret

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            yield Static("Copy it now: it is shown only this once and cannot be read back later.", classes="notice")
            yield Static(self.secret, classes="secret", id="secret")
            with Horizontal(classes="buttons"):
                yield Button("Copy (c)", id="copy")
                yield Button("Done (enter)", variant="primary", id="done")

    def on_mount(self) -> None:
        self.query_one("#done", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy()
        else:
            self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.secret)  # OSC 52: reaches the local clipboard over SSH too
        self.notify("Copied to the clipboard (where the terminal allows it).")


class DescribeDialog(Dialog):
    def __init__(self, title: str, data: Any) -> None:
        super().__init__()
        self.title_text = title
        self.data = data

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title")
            with VerticalScroll():
                data = hide_volatile(self.data) if self.app.config.stable else self.data  # type: ignore[attr-defined]
                yield Static(json.dumps(data, indent=2, sort_keys=True), id="describe")


def hide_volatile(data: Any) -> Any:
    """`data` with generated ids, times and key prefixes hidden (the `stable` test setting, for snapshots)."""
    if isinstance(data, dict):
        return {k: "•••" if isinstance(v, str) and (k in ("id", "display_prefix", "key") or k.endswith(
            ("_at", "At", "_id", "Id"))) else hide_volatile(v) for k, v in data.items()}
    if isinstance(data, list):
        return [hide_volatile(v) for v in data]
    return data


class PortTakenDialog(ConfirmDialog):
    YES_KEY, NO_KEY = "enter", "q"  # Enter presses the focused Start button
    BINDINGS = [Binding("q", "answer(False)", "Quit", id="port.quit")]

    def __init__(self, host: str, port: int, free: int) -> None:
        super().__init__(f"Port {port} on {host} is in use by something that is not a tarx runtime.",
                         f"Start on {free}", "Quit",
                         f"Start the runtime on the free port {free} instead? Other programs will find it at "
                         f"http://{host}:{free}.", destructive=False)
        self.free = free


class HelpDialog(Dialog):
    """`?` or F1: the current view's keys first, then the views `:` opens, then what works everywhere."""

    DEFAULT_CSS = """
    HelpDialog > Vertical { width: 90; }
    HelpDialog .section { color: $accent; text-style: bold; margin-top: 1; }
    HelpDialog.-compact .section { margin-top: 0; }
    """
    BINDINGS = [Binding("question_mark,f1,q", "cancel", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Help · esc, ? or q closes", classes="title")
            for title, rows in self.sections:
                yield Static(title, classes="section")
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold", min_width=8, no_wrap=True)
                table.add_column()
                for key, text in rows:
                    table.add_row(Text(key), Text(text))
                yield Static(table)


class SignInDialog(Dialog):
    """The console's key was revoked: ask for another one and check it with the runtime before using it."""

    BINDINGS = [Binding("ctrl+s", "submit", "Sign in", id="signin.submit")]

    def __init__(self, where: str, check: Callable[[str], Awaitable[str | None]]) -> None:
        super().__init__()
        self.where = where
        self.check = check  # the key -> why the runtime refused it, or None once it is in use

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Sign in again", classes="title")
            yield Static(f"The API key this console used on {self.where} was revoked. Paste another key (e.g. one "
                         "made with `tarx keys create` on the runtime's machine) to carry on.", classes="notice")
            yield Label("API key *", classes="field")
            yield Input(placeholder="e.g. sk-tarx-…", password=True, id="f-key")
            yield Static("", classes="error", id="e-key")
            with Horizontal(classes="buttons"):
                yield Button("Sign in (ctrl+s)", variant="primary", id="submit")
                yield Button("Not now (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-key", Input).focus()

    def show_problem(self, text: str) -> None:
        error = self.query_one("#e-key", Static)
        error.update(text)
        error.set_class(bool(text), "-shown")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    @work(group="sign-in-check", exclusive=True)
    async def action_submit(self) -> None:
        key = self.query_one("#f-key", Input).value.strip()
        if not key:
            self.show_problem("Paste a key first.")
            return
        self.show_problem("")
        problem = await self.check(key)
        if problem:
            self.show_problem(f"The runtime refused it: {problem}")
            return
        self.dismiss(key)
