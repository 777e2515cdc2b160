"""Runs one job command and reports what it used.

The node starts this wrapper as the leader of a new process group, so killing the group stops everything the
job started. The wrapper waits for the command with wait4() to read its CPU time and peak memory, writes them as
JSON to the path it was given, and exits with the command's status (128 + signal when it was killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    out_path, command = sys.argv[1], sys.argv[2:]
    # The node signals the whole group; the wrapper outlives the command to report on it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    started = time.monotonic()
    child = subprocess.Popen(command, preexec_fn=lambda: (signal.signal(signal.SIGTERM, signal.SIG_DFL),
                                                          signal.signal(signal.SIGINT, signal.SIG_DFL)))
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    with open(out_path, "w") as fh:
        json.dump({"cpuSeconds": usage.ru_utime + usage.ru_stime, "maxRssKb": usage.ru_maxrss,
                   "wallSeconds": wall, "exitCode": code}, fh)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
