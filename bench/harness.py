"""What the benchmarks share: free ports, and runtimes and nodes started as `tarx` processes on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
QUIET = {"TARX_LOCAL_NODE": "false", "TARX_LOG_REQUESTS": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tarx(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "tarx_console", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=out, stderr=subprocess.STDOUT)


def start_runtime(folder: Path, name: str, extra: dict[str, str] | None = None
                  ) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
    """A runtime with its own data dir, ready to serve: (process, url, owner key, env)."""
    port = free_port()
    env = {"TARX_DATA_DIR": str(folder / name), "TARX_CONFIG_DIR": str(folder / f"{name}-cfg"), **QUIET,
           **(extra or {})}
    proc = tarx(["serve", "--headless", "--port", str(port)], env, folder / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(url + "/v1/health", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"runtime exited: see {folder / f'{name}.log'}") from None
            time.sleep(0.1)
    return proc, url, (folder / name / "owner.key").read_text().strip(), env
