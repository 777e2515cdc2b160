"""Job queue throughput: submits/s over HTTP, no-op jobs/s end to end through one node, and huey's SQLite queue.

Starts a runtime (`tarx serve --headless`, local node off) and one `tarx node` process on this machine, then:
1. submits/s: N jobs POSTed to /v0/jobs over C keep-alive connections (labels no node matches, so nothing runs);
2. no-op jobs/s through one node: N queued `true` jobs run to SUCCEEDED by one node (capacity = cores x 8),
   timed by the jobs' own finish times; and the same with submission and running overlapped;
3. huey (SqliteHuey, same machine, same run): enqueue of N no-op tasks, then dequeue + execute of all of them.

    python bench/jobs.py [--submits 3000] [--jobs 1000] [--clients 8]

Goals (issue #4): >= 1,000 submits/s and >= 200 no-op jobs/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from harness import start_runtime, tarx
from loadgen import post_many


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


def finished_times(url: str, headers: dict[str, str], labels: dict[str, str]) -> list[datetime]:
    times, page = [], 1
    while True:
        r = httpx.get(url + "/v0/jobs", headers=headers, timeout=60, params={
            "label": [f"{k}:{v}" for k, v in labels.items()], "pageSize": 500, "page": page}).json()
        times += [datetime.fromisoformat(j["finishedAt"].replace("Z", "+00:00")) for j in r["items"]]
        if page * 500 >= r["total"]:
            return sorted(times)
        page += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--submits", type=int, default=3000)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runtime, url, key, env = start_runtime(folder, "data", {"TARX_RATE_LIMITS": "false"})
        node = None
        try:
            headers = {"Authorization": f"Bearer {key}"}

            # The submit phase uses its own workspace, so its thousands of never-run jobs stay out of the queue
            # the node polls later.
            httpx.post(url + "/api/v1/projects", json={"name": "bench submits"}, headers=headers).raise_for_status()
            elsewhere = {**headers, "X-Project-Slug": "bench-submits"}
            headers = {**headers, "X-Project-Slug": "default"}
            asyncio.run(submit_many(url, elsewhere, 100, args.clients, {"bench": "warm-up"}))
            t = time.perf_counter()
            asyncio.run(submit_many(url, elsewhere, args.submits, args.clients, {"bench": "nobody"}))
            submits = args.submits / (time.perf_counter() - t)

            # Queue the no-op jobs first, then let one node drain them; the rate comes from the jobs' own
            # finish times, so the node's start-up does not count.
            labels = {"bench": "e2e"}
            asyncio.run(submit_many(url, headers, args.jobs, args.clients, labels))
            # Nodes register with a compute key of the default workspace.
            node_key = httpx.post(url + "/api/compute/api-keys/create", json={"name": "bench node"},
                                  headers=headers).json()["payload"]["key"]
            node_args = ["node", "--url", url, "--key", node_key, "--capacity", str(cores * 8)]
            node = tarx([*node_args, "--label", "bench=e2e", "--workdir", str(folder / "work")], env,
                        folder / "node.log")
            asyncio.run(wait_all(url, headers, labels, args.jobs))
            finished = finished_times(url, headers, labels)
            drained = (len(finished) - 1) / (finished[-1] - finished[0]).total_seconds()

            # And both at once: submitting while the node runs them.
            both = {"bench": "both"}
            node.terminate()
            node.wait(30)
            node = tarx([*node_args, "--label", "bench=both", "--workdir", str(folder / "work2")], env,
                        folder / "node2.log")
            time.sleep(2.0)
            t = time.perf_counter()

            async def overlapped() -> None:
                await asyncio.gather(submit_many(url, headers, args.jobs, args.clients, both),
                                     wait_all(url, headers, both, args.jobs))

            asyncio.run(overlapped())
            together = args.jobs / (time.perf_counter() - t)
        finally:
            for proc in (node, runtime):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
        h_enqueue, h_dequeue = huey_figures(args.submits, folder)

    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; one runtime and one "
          f"node (capacity {cores * 8}) on this machine")
    print(f"{'figure':<52} {'tarx':>8} {'huey':>8} {'ratio':>7}  goal")
    rows = [
        (f"submits/s (HTTP, {args.clients} conns) vs huey enqueue/s", submits, h_enqueue, ">= 1000", submits >= 1000),
        ("no-op jobs/s through one node vs huey dequeue+run/s", drained, h_dequeue, ">= 200", drained >= 200),
        ("no-op jobs/s, submitting while running", together, h_dequeue, "", None),
    ]
    for name, ours, theirs, goal, met in rows:
        verdict = "" if met is None else f" ({'ok' if met else 'MISSED'})"
        print(f"{name:<52} {ours:>8.0f} {theirs:>8.0f} {ours / theirs:>7.3f}  {goal}{verdict}")


if __name__ == "__main__":
    main()
