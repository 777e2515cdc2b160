"""Routing overhead: a chat completion sent through this runtime to an upstream runtime, against the same
request sent to the upstream directly. Same prompt, alternating, temperature 0, non-streaming.

Two runtimes run on this machine (`tarx serve --headless`): the upstream, and a front whose supercomputer plane
points at it. Each round sends the request directly to the upstream and through the front
(x-tarx-execution-policy: supercomputer-fast), in alternating order.

    python bench/routing.py [--rounds 40] [--max-tokens 8]

Goal (issue #6): <= 5 ms added at the median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from harness import start_runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    body = {"model": "tarx-local", "messages": [{"role": "user", "content": "Name a colour."}], "temperature": 0,
            "seed": 1, "max_tokens": args.max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        up, up_url, up_key, _ = start_runtime(folder, "upstream")
        front, front_url, front_key, _ = start_runtime(folder, "front", {"TARX_SUPERCOMPUTER_URL": up_url,
                                                                         "TARX_SUPERCOMPUTER_KEY": up_key})
        try:
            owner = {"Authorization": f"Bearer {front_key}"}
            httpx.post(front_url + "/api/account/entitlements", json={"entitlement": "supercomputer"},
                       headers=owner).raise_for_status()
            hosted = httpx.post(front_url + "/api/keys", json={"name": "bench", "scope": "supercomputer"},
                                headers=owner).json()["key"]
            via = {"Authorization": f"Bearer {hosted}", "x-tarx-execution-policy": "supercomputer-fast",
                   "x-tarx-privacy-tier": "mesh_safe"}
            direct = {"Authorization": f"Bearer {up_key}"}
            with httpx.Client(timeout=120) as client:
                def timed(url: str, headers: dict[str, str]) -> float:
                    t = time.perf_counter()
                    r = client.post(url + "/v1/chat/completions", json=body, headers=headers)
                    r.raise_for_status()
                    return (time.perf_counter() - t) * 1000

                for _ in range(3):  # warm both paths (model load, connections)
                    timed(up_url, direct)
                    timed(front_url, via)
                d, v = [], []
                for i in range(args.rounds):
                    if i % 2:
                        d.append(timed(up_url, direct))
                        v.append(timed(front_url, via))
                    else:
                        v.append(timed(front_url, via))
                        d.append(timed(up_url, direct))
        finally:
            for proc in (front, up):
                proc.terminate()
                proc.wait(30)
    md, mv = statistics.median(d), statistics.median(v)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; two runtimes "
          f"on this machine, {args.rounds} rounds, {args.max_tokens} tokens each")
    print(f"{'path':<34} {'median ms':>10} {'p90 ms':>8}")
    print(f"{'direct to the upstream':<34} {md:>10.1f} {sorted(d)[int(len(d) * 0.9)]:>8.1f}")
    print(f"{'through this runtime (hosted)':<34} {mv:>10.1f} {sorted(v)[int(len(v) * 0.9)]:>8.1f}")
    added = mv - md
    print(f"added at the median: {added:+.1f} ms (ratio {mv / md:.3f}); goal <= 5 ms "
          f"({'ok' if added <= 5 else 'MISSED'})")


if __name__ == "__main__":
    main()
