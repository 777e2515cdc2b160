"""Workflow engine overhead: executions of a 10-node graph of transform nodes, one after another and 100 at once.

Runs the runtime's own services in-process (Services.open on a temporary data dir: the real store, migrations,
executor and event recording, every step committed to SQLite) without HTTP, so the figure is the engine's:
starting the execution, scheduling each node, recording its start, output and events, and finishing the run.

    python bench/workflows.py [--sequential 1000] [--concurrent 100]

Goal (issue 14): <= 5 ms of engine overhead per node, and 100 concurrent executions finish with no failure.
Anchor: Restate's published figure of ~1.4 ms per durable step (a journaled step on a local server); the ratio
printed is ours / 1.4 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from runtime.auth.access import ProjectContext
from runtime.auth.principal import Principal
from runtime.config import Settings
from runtime.services import Services
from runtime.store import identity
from runtime.workflows import templates

RESTATE_STEP_MS = 1.4
NODES = 10


def graph() -> tuple[list[dict], list[dict]]:
    """trigger -> 8 transforms -> output: 10 nodes, each rendering a template of the previous output."""
    nodes = [{"id": "t", "type": "trigger"}]
    nodes += [{"id": f"x{i}", "type": "transformNode", "config": {"template": f"{{{{ prev }}}}.{i}"}}
              for i in range(NODES - 2)]
    nodes.append({"id": "out", "type": "outputNode", "config": {"template": "done: {{ prev }}"}})
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return nodes, edges


def render_cost_ms(n: int = 20000) -> float:
    """Rendering one node's template alone, in Jinja2's sandbox (the node's own work; the engine's deadline and
    error handling around it count as overhead)."""
    context = {"prev": "seed.0.1.2", "input": "seed"}
    template = templates.ENV.from_string("{{ prev }}.3")
    t0 = time.perf_counter()
    for _ in range(n):
        template.render(context)
    return (time.perf_counter() - t0) * 1000 / n


async def main(sequential: int, concurrent: int) -> None:
    logging.disable(logging.INFO)
    folder = Path(tempfile.mkdtemp(prefix="tarx-bench-wf-"))
    settings = Settings(data_dir=folder / "data", config_dir=folder / "cfg", workflow_executions_per_hour=0,
                        workflow_max_concurrent=max(64, concurrent), local_node=False)
    svc = await Services.open(settings)
    try:
        owner = await identity.owner(svc.db)
        assert owner is not None
        project = (await identity.projects_for(svc.db, owner.id))[0]
        ctx = ProjectContext(Principal(user=owner, via="bench", key=None, client=None), project)
        wf = (await svc.workflows.create(ctx, "bench", "", *graph())).workflow
        wfs = svc.workflows

        async def one(i: int) -> str:
            execution_id = await wfs.start_execution(project.id, wf.id, f"seed{i}", trigger="manual")
            ex = await wfs.wait(execution_id)
            assert ex is not None
            return ex.status

        for i in range(20):  # warm-up: caches, the page cache, SQLite's statement cache
            await one(i)

        per_exec: list[float] = []
        statuses: list[str] = []
        t0 = time.perf_counter()
        for i in range(sequential):
            s = time.perf_counter()
            statuses.append(await one(i))
            per_exec.append((time.perf_counter() - s) * 1000)
        seq_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        burst = await asyncio.gather(*(one(i) for i in range(concurrent)))
        conc_s = time.perf_counter() - t0
    finally:
        await svc.close()

    render = render_cost_ms()
    mean = statistics.fmean(per_exec)
    p50, p95 = statistics.median(per_exec), statistics.quantiles(per_exec, n=20)[18]
    per_node = (mean - NODES * render) / NODES
    failed_seq = sum(s != "completed" for s in statuses)
    failed_conc = sum(s != "completed" for s in burst)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"graph: {NODES} nodes (trigger, {NODES - 2} transforms, output), every step committed to SQLite")
    print(f"sequential: {sequential} executions in {seq_s:.2f} s = {sequential / seq_s:.0f} executions/s; "
          f"per execution p50 {p50:.2f} ms, p95 {p95:.2f} ms; failures {failed_seq}")
    print(f"concurrent: {concurrent} executions at once in {conc_s:.2f} s = {concurrent / conc_s:.0f} "
          f"executions/s; failures {failed_conc}")
    print(f"template rendering alone: {render * 1000:.0f} us per node")
    print(f"engine overhead per node: {per_node:.3f} ms (goal <= 5 ms: {'met' if per_node <= 5 else 'MISSED'}); "
          f"ratio to Restate's ~{RESTATE_STEP_MS} ms per durable step: {per_node / RESTATE_STEP_MS:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.sequential, args.concurrent))
