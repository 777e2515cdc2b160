"""Job queue throughput: submits/s over HTTP, no-op jobs/s end to end through one node, and huey's SQLite queue.

Starts a runtime (`tarx serve --headless`, local node off) and one `tarx node` process on this machine, then:
1. submits/s: N jobs POSTed to /v0/jobs over C keep-alive connections (labels no node matches, so nothing runs);
2. end-to-end jobs/s: N `true` jobs submitted and run to SUCCEEDED by the one node (capacity = cores x 4);
3. huey (SqliteHuey, same machine, same run): enqueue of N no-op tasks, then dequeue + execute of all of them.

    python bench/jobs.py [--submits 3000] [--jobs 600] [--clients 8]

Goals (issue #4): >= 1,000 submits/s and >= 200 no-op jobs/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from loadgen import post_many

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tarx_console", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def submit_many(url: str, headers: dict[str, str], n: int, clients: int, labels: dict[str, str]) -> list[str]:
    bodies = await post_many(url, "/v0/jobs", {"command": "true", "labels": labels, "timeoutSeconds": 60}, headers,
                             n, clients)
    return [b["id"] for b in bodies]


async def wait_all(url: str, headers: dict[str, str], labels: dict[str, str], n: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while True:
            r = await http.get("/v0/jobs", params={"state": "SUCCEEDED", "label": [f"{k}:{v}" for k, v in
                                                                                  labels.items()], "pageSize": 1})
            if r.json()["total"] >= n:
                return
            await asyncio.sleep(0.05)


def huey_figures(n: int, folder: Path) -> tuple[float, float]:
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(folder / "huey.db"))

    @huey.task()
    def noop() -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        noop()
    enqueue = n / (time.perf_counter() - start)
    start = time.perf_counter()
    done = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        done += 1
    assert done == n
    dequeue = n / (time.perf_counter() - start)
    return enqueue, dequeue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--submits", type=int, default=3000)
    ap.add_argument("--jobs", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"TARX_DATA_DIR": str(folder / "data"), "TARX_CONFIG_DIR": str(folder / "cfg"),
               "TARX_LOCAL_NODE": "false", "TARX_LOG_REQUESTS": "false", "TARX_RATE_LIMITS": "false"}
        runtime = start(["serve", "--headless", "--port", str(port)], env, folder / "runtime.log")
        node = None
        try:
            while True:
                try:
                    httpx.get(url + "/v1/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            key = (folder / "data" / "owner.key").read_text().strip()
            headers = {"Authorization": f"Bearer {key}"}
            cores = os.cpu_count() or 1
            node = start(["node", "--url", url, "--key", key, "--capacity", str(cores * 4), "--label", "bench=e2e",
                          "--workdir", str(folder / "work")], env, folder / "node.log")

            asyncio.run(submit_many(url, headers, 50, args.clients, {"bench": "warm-up"}))
            t = time.perf_counter()
            asyncio.run(submit_many(url, headers, args.submits, args.clients, {"bench": "nobody"}))
            submits = args.submits / (time.perf_counter() - t)

            asyncio.run(submit_many(url, headers, 20, args.clients, {"bench": "e2e"}))  # warm the node up
            asyncio.run(wait_all(url, headers, {"bench": "e2e"}, 20))
            t = time.perf_counter()

            async def e2e() -> None:
                await asyncio.gather(submit_many(url, headers, args.jobs, args.clients, {"bench": "e2e"}),
                                     wait_all(url, headers, {"bench": "e2e"}, args.jobs + 20))

            asyncio.run(e2e())
            jobs = args.jobs / (time.perf_counter() - t)
        finally:
            for proc in (node, runtime):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
        h_enqueue, h_dequeue = huey_figures(args.submits, folder)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'figure':<44} {'tarx':>10} {'huey':>10} {'ratio':>7}  goal")
    print(f"{'submits/s (HTTP, ' + str(args.clients) + ' clients) vs huey enqueue/s':<44} {submits:>10.0f} "
          f"{h_enqueue:>10.0f} {submits / h_enqueue:>7.3f}  >= 1000 ({'ok' if submits >= 1000 else 'MISSED'})")
    print(f"{'no-op jobs/s end to end vs huey dequeue+run/s':<44} {jobs:>10.0f} {h_dequeue:>10.0f} "
          f"{jobs / h_dequeue:>7.3f}  >= 200 ({'ok' if jobs >= 200 else 'MISSED'})")


if __name__ == "__main__":
    main()
