"""Console responsiveness: time to first frame, and the cost of one refresh of a jobs table of 10,000 jobs.

1. first frame: `tarx` started in a pseudo-terminal with a fresh data dir, timed from exec to the first painted
   frame (the dashboard's header), and to "healthy" (the in-process runtime started and answering);
2. jobs table: the console attached to a runtime holding 10,000 queued jobs (no node, so they stay put). Each
   round changes 20 of them (10 cancelled, 10 new), then times one refresh: fetching the 10,000 over HTTP
   (20 pages of 500) and applying them to the table by diff.

    python bench/console.py [--jobs 10000] [--rounds 5] [--starts 3]

Goals (issue #5): first frame <= 1.5 s and applying one refresh of a 10,000-job table <= 100 ms. The ratio
printed is figure / goal (below 1 meets it); k9s, the console the issue models, cannot run here (no Go toolchain
and no Kubernetes), so the goals are the anchor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import pty
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from harness import REPO, free_port, start_runtime
from loadgen import post_many

from runtime.config import Settings
from tarx_console.app import Launch, TarxApp
from tarx_console.client.connect import Target
from tarx_console.config import ConsoleConfig
from tarx_console.screens.jobs import JobsScreen

FIRST_FRAME_GOAL = 1.5
APPLY_GOAL_MS = 100.0


def first_frame(folder: Path) -> tuple[float, float]:
    """Seconds from exec to the first painted frame, and to the runtime reported healthy."""
    port = free_port()
    env = {**os.environ, "TARX_PORT": str(port), "TARX_DATA_DIR": str(folder / "data"),
           "TARX_CONFIG_DIR": str(folder / "config"), "TARX_LOCAL_NODE": "false", "TERM": "xterm-256color"}
    output = bytearray()
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execvpe(sys.executable, [sys.executable, "-m", "tarx_console"], env)
    marks: dict[bytes, float] = {}

    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)
            for mark in (b"Dashboard", b"healthy"):
                if mark not in marks and mark in output:
                    marks[mark] = time.perf_counter() - start

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while len(marks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.close(fd)
    os.waitpid(pid, 0)
    if len(marks) < 2:
        raise RuntimeError(f"the console never became healthy:\n{bytes(output)[-2000:]!r}")
    return marks[b"Dashboard"], marks[b"healthy"]


async def jobs_table(url: str, key: str, jobs: int, rounds: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    await post_many(url, "/v0/jobs", {"command": "true", "timeoutSeconds": 60}, headers, jobs, 8)
    config = ConsoleConfig(watch_themes=False, refresh_seconds=3600, jobs_limit=jobs, path=None)
    app = TarxApp(config, Launch(Target("bench", url, key), Settings()))
    out: dict[str, list[float]] = {"fetch_ms": [], "apply_ms": [], "cells": []}
    async with app.run_test(size=(160, 50)) as pilot, httpx.AsyncClient(base_url=url, headers=headers) as http:
        while not app.connected.is_set():
            await pilot.pause(0.05)
        await pilot.press("colon", *"jobs", "enter")
        while not (isinstance(app.screen, JobsScreen) and app.screen.table.row_count >= jobs):
            await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, JobsScreen) and app.client is not None
        screen.on_screen_suspend()  # no timer refreshes meanwhile: each round is one refresh, timed by hand
        for _ in range(rounds):
            listed = (await http.get("/v0/jobs", params={"pageSize": 10, "state": "QUEUED"})).json()["items"]
            for job in listed:
                await http.post(f"/v0/jobs/{job['id']}:cancel")
            await post_many(url, "/v0/jobs", {"command": "true", "timeoutSeconds": 60}, headers, 10, 2)
            t0 = time.perf_counter()
            items = await screen.fetch(app.client)
            t1 = time.perf_counter()
            screen.take(items)
            screen.render_rows()
            t2 = time.perf_counter()
            await pilot.pause()  # let the frame be painted before the next round
            out["fetch_ms"].append((t1 - t0) * 1000)
            out["apply_ms"].append((t2 - t1) * 1000)
            out["cells"].append(screen.table.changes)
            assert screen.table.row_count == jobs
        await app.action_quit()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        starts = [first_frame(folder / f"start{i}") for i in range(args.starts)]
        frame = statistics.median(s[0] for s in starts)
        healthy = statistics.median(s[1] for s in starts)
        print(f"first frame: {frame:.2f} s (median of {args.starts}; goal {FIRST_FRAME_GOAL} s, ratio "
              f"{frame / FIRST_FRAME_GOAL:.2f}); runtime started and healthy on screen: {healthy:.2f} s")
        proc, url, key, _ = start_runtime(folder, "jobs")
        try:
            figures = asyncio.run(jobs_table(url, key, args.jobs, args.rounds))
        finally:
            proc.terminate()
            proc.wait()
    print(f"jobs table of {args.jobs:,}: apply one refresh {figures['apply_ms']:.1f} ms (median of {args.rounds}; "
          f"goal {APPLY_GOAL_MS:.0f} ms, ratio {figures['apply_ms'] / APPLY_GOAL_MS:.2f}; "
          f"{figures['cells']:.0f} cells written); fetching the {args.jobs:,} over HTTP {figures['fetch_ms']:.0f} ms")


if __name__ == "__main__":
    main()
