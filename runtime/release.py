"""Release truth for `/api/version`: what this runtime is, where it came from, where updates live."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from runtime import __version__

DOWNLOAD_URL = "https://pypi.org/project/tarx/"
# User-Agent prefix of the console's HTTP client; its periodic reads stay out of the access log.
CONSOLE_AGENT = "tarx-console/"


@functools.cache
def commit() -> str:
    """The git commit of a source checkout; "unknown" for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def version_info(started_at: str) -> dict[str, Any]:
    build = f"{__version__}+{commit()[:12]}" if commit() != "unknown" else __version__
    return {
        "version": __version__,
        "build": build,
        "commit": commit(),
        "deployment": "local",
        "download_url": DOWNLOAD_URL,
        # A local runtime updates through its package manager; it has no updater manifest of its own.
        "updater_manifest_url": None,
        "notes": "TARX local runtime. Web and desktop (Electron) releases are not part of a local install.",
        "release": {"tarx": __version__, "web": None, "electron": None},
        "web": {"version": None},
        "electron": {"version": None, "released_at": None},
        "runtime": {"python": platform.python_version(), "platform": platform.platform(), "started_at": started_at},
    }
