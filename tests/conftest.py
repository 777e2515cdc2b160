"""Shared fixtures: real runtime processes (`tarx serve --headless`) on ephemeral ports with temporary data dirs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import pytest_textual_snapshot

REPO = Path(__file__).resolve().parent.parent


class TopLevelSnapshots(pytest_textual_snapshot.SVGImageExtension):
    """Console snapshots live in the top-level snapshots/ folder (one subfolder per test module)."""

    @classmethod
    def dirname(cls, *, test_location) -> str:  # type: ignore[no-untyped-def, override]
        return str(REPO / "snapshots" / test_location.basename)


pytest_textual_snapshot.SVGImageExtension = TopLevelSnapshots  # the plugin (pinned) looks it up at call time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runtime:
    """One runtime process. `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, config_dir: Path | None = None,
                 port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-stderr.log"
        full_env = {
            **os.environ,
            "TARX_DATA_DIR": str(data_dir),
            "TARX_CONFIG_DIR": str(config_dir or data_dir.parent / f"{data_dir.name}-config"),
            **(env or {}),
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tarx_console", "serve", "--headless", "--port", str(self.port)],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runtime exited early ({self.proc.returncode}):\n{self.log()}")
            try:
                httpx.get(self.url + "/v1/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"runtime did not start:\n{self.log()}")

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict:
        return httpx.get(self.url + "/v1/health", timeout=10).json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The shared runtime most tests talk to."""
    rt = Runtime(tmp_path_factory.mktemp("shared") / "data")
    yield rt
    code = rt.stop()
    assert code == 0, f"exit {code}\n{rt.log()}"


def _starter(base: Path) -> tuple[list[Runtime], object]:
    started: list[Runtime] = []

    def start(env: dict[str, str] | None = None, name: str = "data", **kw: object) -> Runtime:
        rt = Runtime(base / name, env, **kw)  # type: ignore[arg-type]
        started.append(rt)
        return rt

    return started, start


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator:
    """Start extra runtimes with their own settings; all are stopped after the test."""
    started, start = _starter(tmp_path)
    yield start
    for rt in started:
        rt.stop()


@pytest.fixture(scope="module")
def make_runtime_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Like make_runtime, shared by the tests of one module."""
    started, start = _starter(tmp_path_factory.mktemp("module"))
    yield start
    for rt in started:
        rt.stop()


def chat_body(content: str = "Say hello", **kw: object) -> dict:
    return {"model": "tarx-local", "messages": [{"role": "user", "content": content}],
            "temperature": 0, "seed": 7, "max_tokens": 16, **kw}


LONG_PROMPT = "Count from 1 to 1000, separated by commas."
