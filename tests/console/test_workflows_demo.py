"""`tarx demo` against a running runtime: the demo project with an agent and its tool, a RAG source over the
bundled directory (indexed), a workflow with a branch and an approval, a few jobs; a second run adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from conftest import REPO, Runtime
from support.identity import bearer, owner_key
from tarx_console.demo import DEMO_DOCS


def tarx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tarx_console", *args], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_demo_creates_a_populated_project_once(make_runtime) -> None:  # type: ignore[no-untyped-def]
    rt: Runtime = make_runtime({"TARX_LOCAL_NODE": "false"}, name="demo")
    env = {"TARX_DATA_DIR": str(rt.data_dir), "TARX_PORT": str(rt.port),
           "TARX_CONFIG_DIR": str(rt.data_dir.parent / "demo-cli-config")}
    made = tarx("demo", "--json", env=env)
    assert made.returncode == 0, made.stderr
    demo = json.loads(made.stdout)
    assert demo["project"]["slug"] == "demo" and not demo["found"]
    headers = {**bearer(owner_key(rt)), "X-Project-Slug": "demo"}
    with httpx.Client(base_url=rt.url, headers=headers, timeout=30) as c:
        agent = c.get(f"/api/v1/agents/{demo['agent_id']}").json()
        assert agent["tools"] == ["current_time"]
        wf = c.get(f"/api/v1/workflows/{demo['workflow_id']}").json()
        types = {n["id"]: n["type"] for n in wf["nodes"]}
        assert types["review"] == "humanInLoopNode" and types["check"] == "conditionNode"
        assert {e["label"] for e in wf["edges"] if e["source"] == "check"} == {"true", "false"}
        assert len(c.get("/v0/jobs").json()["items"]) == 3
        deadline = time.monotonic() + 120
        while (rag := c.get(f"/api/v1/rags/{demo['rag_id']}").json())["state"] != "ready":
            assert rag["state"] not in ("error", "failed") and time.monotonic() < deadline, rag
            time.sleep(0.5)
        assert rag["kind"] == "directory" and rag["config"]["path"] == str(DEMO_DOCS)
        hits = c.post(f"/api/v1/rags/{demo['rag_id']}/test", json={"query": "approve or reject", "k": 1}).json()
        assert "workflows.md" in json.dumps(hits)
    again = tarx("demo", env=env)
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout and "already there: workflow Draft and review" in again.stdout
    with httpx.Client(base_url=rt.url, headers=headers, timeout=30) as c:
        assert len(c.get("/api/v1/workflows").json()["items"]) == 1
        assert len(c.get("/v0/jobs").json()["items"]) == 3
