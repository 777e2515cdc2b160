"""How values are written in tables; `stable` hides what changes between runs (for snapshot tests)."""

from __future__ import annotations

from datetime import UTC, datetime

HIDDEN = "•••"


def parse(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None


def when(iso: str | None, stable: bool = False) -> str:
    """A fixed local time (a table redraws nothing as it ages): `11-22 07:15:06`."""
    at = parse(iso)
    if at is None:
        return "never" if iso is None else iso
    return HIDDEN if stable else at.astimezone().strftime("%m-%d %H:%M:%S")


def ago(iso: str | None, stable: bool = False, now: datetime | None = None) -> str:
    at = parse(iso)
    if at is None:
        return "never"
    if stable:
        return HIDDEN
    seconds = max(0, int(((now or datetime.now(UTC)) - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def ident(value: str | None, stable: bool = False) -> str:
    if not value:
        return ""
    return HIDDEN if stable else value


def labels(values: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((values or {}).items()))
