"""Jobs die with their node: a small helper process kills the node's job process groups when the node is gone.

A node runs each job in its own session and process group, so a job survives its node by default: SIGKILL the
node (or the runtime, for the in-process node) and its commands run on as orphans while the runtime requeues them
elsewhere. `prctl(PR_SET_PDEATHSIG)` reaches only the direct child (`/bin/sh`, not what it started), follows the
thread that forked rather than the process, and needs a `preexec_fn` that costs every spawn the fast path. So the
node starts this helper once instead, in its own session and ignoring the terminal's signals, with the read end
of a pipe as its stdin. The node writes `+PGID` when a job starts and `-PGID` once it has ended (before its
leader is reaped, so the number cannot have been reused); the helper keeps the set. When the node exits, however
it exits, the kernel closes the pipe's write end; the helper reads end-of-file, SIGKILLs every group still in the
set and exits.

Run as a script by path (`python -I -S guard.py`): standard library only, so it starts in milliseconds and cannot
pick up another package named `runtime`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

log = logging.getLogger("tarx.node")


class Guard:
    """The node's side: starts the helper and tells it which process groups are running."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe = -1
        self.groups: set[int] = set()

    def start(self) -> None:
        read, write = os.pipe()  # both ends close-on-exec: no job ever holds the write end open
        try:
            self._proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)], stdin=read,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        except OSError as exc:
            os.close(write)
            log.warning("cannot start the job guard (%s): jobs would outlive a killed node", exc)
            return
        finally:
            os.close(read)
        self._pipe = write
        for pgid in self.groups:  # a restarted helper learns what already runs
            self._send(f"+{pgid}\n")

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)
        self._send(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        if pgid in self.groups:
            self.groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def _send(self, message: str) -> None:
        if self._pipe < 0:
            return
        try:
            os.write(self._pipe, message.encode())
        except OSError as exc:  # the helper died (EPIPE): start another one
            log.warning("the job guard is gone (%s); starting it again", exc)
            self.close()
            self.start()

    def close(self) -> None:
        """Stop the helper: it kills whatever is still registered (nothing, after a clean stop) and exits."""
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None


def main() -> None:
    """The helper: keep the set of groups from stdin; at end-of-file, kill them all."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the node's end of the pipe stops this
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(0, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                pgid = int(line[1:])
                if pgid > 1:  # never 0 (this helper's own group) or init
                    (groups.add if line.startswith(b"+") else groups.discard)(pgid)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
