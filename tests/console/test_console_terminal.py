"""`tarx` in a real terminal (a pty): it opens the console with the runtime inside, serves other programs, honours
--no-mouse, and exits cleanly (status 0, port released) when the terminal goes away, as a dropped SSH session."""

from __future__ import annotations

import os
import pty
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, free_port


@pytest.mark.parametrize("mouse", [True, False], ids=["mouse", "no-mouse"])
def test_tarx_opens_the_console_serves_and_exits_when_the_terminal_hangs_up(tmp_path: Path, mouse: bool) -> None:
    port = free_port()
    env = {**os.environ, "TARX_PORT": str(port), "TARX_DATA_DIR": str(tmp_path / "data"),
           "TARX_CONFIG_DIR": str(tmp_path / "config"), "TARX_LOCAL_NODE": "false", "TERM": "xterm-256color",
           "COLUMNS": "120", "LINES": "36"}
    args = [sys.executable, "-m", "tarx_console", *([] if mouse else ["--no-mouse"])]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.chdir(REPO)
        os.execvpe(args[0], args, env)
    output = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"the console's runtime never answered:\n{bytes(output)[-3000:]!r}")
        deadline = time.monotonic() + 20
        while b"healthy" not in output and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"healthy" in output and b"Dashboard" in output
        assert (b"\x1b[?1000h" in output) is mouse  # mouse reporting is switched on only when wanted
    finally:
        os.close(fd)  # the terminal goes away
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the console did not exit after its terminal went away")
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1)
    assert "Application shutdown complete" in (tmp_path / "data" / "logs" / "runtime.log").read_text()
