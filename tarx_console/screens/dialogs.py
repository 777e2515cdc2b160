"""Modal dialogs: confirm, a small form, the once-only secret, a JSON description, and the port question."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


class Dialog(ModalScreen[Any]):
    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical { width: 76; height: auto; max-height: 90%; border: thick $accent; background: $surface;
                        padding: 1 2; }
    Dialog .title { text-style: bold; margin-bottom: 1; }
    Dialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
    Dialog Button { margin-left: 1; }
    Dialog Label.field { margin-top: 1; color: $text-muted; }
    Dialog .secret { background: $panel; color: $warning; text-style: bold; padding: 1; margin: 1 0; }
    Dialog .notice { color: $warning; text-style: bold; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

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
    placeholder: str = ""


class FormDialog(Dialog):
    """A few fields; Enter in the last input or ctrl+s submits, Esc cancels. Dismisses with {name: value}."""

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
                yield Label(f.label, classes="field")
                if f.options:
                    yield Select([(o, o) for o in f.options], value=f.default or f.options[0], allow_blank=False,
                                 id=f"f-{f.name}")
                else:
                    yield Input(f.default, placeholder=f.placeholder, id=f"f-{f.name}")
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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
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
                yield Static(json.dumps(self.data, indent=2, sort_keys=True), id="describe")


class PortTakenDialog(ConfirmDialog):
    YES_KEY, NO_KEY = "enter", "q"  # Enter presses the focused Start button
    BINDINGS = [Binding("q", "answer(False)", "Quit", id="port.quit")]

    def __init__(self, host: str, port: int, free: int) -> None:
        super().__init__(f"Port {port} on {host} is in use by something that is not a tarx runtime.",
                         f"Start on {free}", "Quit",
                         f"Start the runtime on the free port {free} instead? Other programs will find it at "
                         f"http://{host}:{free}.", destructive=False)
        self.free = free
