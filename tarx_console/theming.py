"""Themes are data: TOML files turned into textual Theme objects (bundled ones plus the user's themes dir)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from textual.theme import Theme

THEME_FIELDS = ("name", "dark", "primary", "secondary", "accent", "foreground", "background", "surface", "panel",
                "success", "warning", "error", "variables")


def bundled_dir() -> Path:
    return Path(str(resources.files("tarx_console.themes")))


def theme_dirs(user_dir: Path) -> list[Path]:
    return [d for d in (bundled_dir(), user_dir) if d.is_dir()]


def read_theme(path: Path) -> Theme:
    data = tomllib.loads(path.read_text())
    unknown = set(data) - set(THEME_FIELDS)
    if unknown:
        raise ValueError(f"{path.name}: unknown theme fields {sorted(unknown)}")
    data.setdefault("name", path.stem)
    return Theme(**data)


def load_themes(dirs: list[Path]) -> tuple[list[Theme], list[str]]:
    """Every readable theme (a later dir overrides an earlier one by name) and a message per unreadable file."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = read_theme(path)
            except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
                errors.append(f"theme {path.name}: {exc}")
                continue
            themes[theme.name] = theme
    return list(themes.values()), errors
