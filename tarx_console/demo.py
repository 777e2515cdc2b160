"""`tarx demo`: a demo project, so a new user sees a populated console at once.

It holds an agent with a tool, a RAG source over a small directory shipped with the console (`demo_docs/`), a
workflow with a branch and an approval node, and a few jobs. Everything goes through TarxClient, so it works on
the local runtime and on a remote one (where the runtime cannot read our directory, the documents go in as text).
Running it again finds the project and adds nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tarx_console.client.api import TarxClient
from tarx_console.client.errors import BadRequest, Forbidden

DEMO_SLUG = "demo"
DEMO_DOCS = Path(__file__).resolve().parent / "demo_docs"
AGENT_NAME = "Demo assistant"
RAG_NAME = "Demo handbook"
WORKFLOW_NAME = "Draft and review"
JOBS = ("echo hello from the tarx demo", "uname -s", "sleep 2 && echo done")


def demo_graph(agent_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trigger → the agent drafts → a branch: a non-empty draft waits for approval before it is published."""
    nodes = [
        {"id": "trigger", "type": "trigger", "config": {"trigger_type": "manual"}},
        {"id": "draft", "type": "agentNode", "config": {"agent_id": agent_id, "message": "{{ input }}"}},
        {"id": "check", "type": "conditionNode", "config": {"condition": "prev | string | length > 0"}},
        {"id": "review", "type": "humanInLoopNode", "config": {"message": "Publish this draft?"}},
        {"id": "publish", "type": "outputNode", "config": {"template": "Published: {{ draft.output }}"}},
        {"id": "skip", "type": "outputNode", "config": {"template": "Nothing to publish."}},
    ]
    edges = [
        {"source": "trigger", "target": "draft"},
        {"source": "draft", "target": "check"},
        {"source": "check", "target": "review", "label": "true"},
        {"source": "check", "target": "skip", "label": "false"},
        {"source": "review", "target": "publish"},
    ]
    for n in nodes:
        n["position"] = None
    return nodes, edges


@dataclass
class Demo:
    project: dict[str, Any]
    created: list[str] = field(default_factory=list)  # what this run added, as lines for a person
    found: list[str] = field(default_factory=list)  # what was there already
    agent_id: str = ""
    rag_id: str = ""
    workflow_id: str = ""


async def create_demo(client: TarxClient, jobs: bool = True) -> Demo:
    """Create (or complete) the demo project and point `client` at it."""
    projects = await client.list_projects()
    project = next((p for p in projects if p["slug"] == DEMO_SLUG), None)
    demo = Demo(project or {})
    if project is None:
        demo.project = await client.create_project("Demo", DEMO_SLUG)
        demo.created.append(f"project {DEMO_SLUG} ({demo.project['id']})")
    else:
        demo.found.append(f"project {DEMO_SLUG}")
    client.use_project(demo.project["id"])

    agents = {a["name"]: a for a in await client.list_agents()}
    if AGENT_NAME in agents:
        demo.agent_id = agents[AGENT_NAME]["id"]
        demo.found.append(f"agent {AGENT_NAME}")
    else:
        agent = await client.create_agent({
            "name": AGENT_NAME, "description": "Answers briefly; knows the time.",
            "instructions": "You are a concise assistant. Answer in one or two sentences.",
            "tools": ["current_time"], "temperature": 0, "max_tokens": 48})
        demo.agent_id = agent["id"]
        demo.created.append(f"agent {AGENT_NAME} with the current_time tool ({agent['id']})")

    sources = {s["name"]: s for s in await client.rag_sources()}
    if RAG_NAME in sources:
        demo.rag_id = sources[RAG_NAME]["id"]
        demo.found.append(f"RAG source {RAG_NAME}")
    else:
        try:
            rag = await client.create_rag(RAG_NAME, "directory", {"path": str(DEMO_DOCS)},
                                          "The demo's handbook: a directory shipped with the console.")
            how = f"over {DEMO_DOCS}"
        except (BadRequest, Forbidden):  # a remote runtime cannot read this machine's directory
            text = "\n\n".join(p.read_text() for p in sorted(DEMO_DOCS.glob("*.md")))
            rag = await client.create_rag(RAG_NAME, "text", {"text": text}, "The demo's handbook, as text.")
            how = "as text (the runtime cannot read this machine's files)"
        demo.rag_id = rag["id"]
        demo.created.append(f"RAG source {RAG_NAME} {how} ({rag['id']})")

    workflows = {w["name"]: w for w in await client.list_workflows()}
    if WORKFLOW_NAME in workflows:
        demo.workflow_id = workflows[WORKFLOW_NAME]["id"]
        demo.found.append(f"workflow {WORKFLOW_NAME}")
    else:
        nodes, edges = demo_graph(demo.agent_id)
        wf = await client.create_workflow(WORKFLOW_NAME, nodes, edges,
                                          "The agent drafts; a person approves before it is published.")
        demo.workflow_id = wf["id"]
        demo.created.append(f"workflow {WORKFLOW_NAME}: {len(nodes)} nodes, a branch and an approval ({wf['id']})")

    if jobs:
        existing, _ = await client.list_jobs(limit=50)
        if existing:
            demo.found.append(f"{len(existing)} jobs")
        else:
            for command in JOBS:
                job = await client.submit_job(command, timeout_seconds=60)
                demo.created.append(f"job {job['id']}: {command}")
    return demo
