"""The console's settings: the `[console]` table of the same config.toml the runtime reads (it ignores the table).

No textual imports here, so the CLI and tests can read and write it cheaply.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from runtime.config import config_dir, config_file


class ConsoleConfig(BaseModel):
    theme: str = "tarx-dark"
    mouse: bool = True
    # Binding id -> keys, e.g. {"jobs.submit": "ctrl+n"}; ids are listed by `?` and in the README.
    keymap: dict[str, str] = Field(default_factory=dict)
    project: str | None = None  # slug of the project to act in when the key reaches several (else `default`)
    refresh_seconds: float = 2.0  # pause between the end of one refresh and the start of the next
    jobs_limit: int = 1000  # newest jobs the jobs view keeps
    themes_dir: Path = Field(default_factory=lambda: config_dir() / "themes")  # user themes, beside the bundled
    watch_themes: bool = True
    # Test setting: hide what changes from run to run (generated ids, clocks, ports), so snapshots are stable.
    stable: bool = False
    path: Path | None = Field(default=None, exclude=True)  # where it was read from; theme choices are saved there

    @field_validator("themes_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def load(cls, path: Path | None = None) -> ConsoleConfig:
        path = path or config_file()
        table = tomllib.loads(path.read_text()).get("console", {}) if path.exists() else {}
        return cls(**table, path=path)

    def save_theme(self, name: str) -> None:
        """Persist a theme chosen in the console by rewriting only `theme = …` in `[console]`."""
        self.theme = name
        if self.path is None:
            return
        text = self.path.read_text() if self.path.exists() else ""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(set_console_key(text, "theme", name))


def set_console_key(text: str, key: str, value: str) -> str:
    """`text` with `key = "value"` set in its [console] table, keeping every other line and comment."""
    line = f'{key} = "{value}"'
    lines = text.splitlines()
    start = next((i for i, s in enumerate(lines) if s.strip() == "[console]"), None)
    if start is None:
        return (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"[console]\n{line}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start + 1, end):
        if pattern.match(lines[i]):
            lines[i] = line
            break
    else:
        lines.insert(start + 1, line)
    return "\n".join(lines) + "\n"
