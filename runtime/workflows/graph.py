"""The workflow graph: nodes (id, type, config, position) and edges (source, target, optional condition/label),
and its validation. Every problem is a 422 that names the node ids at fault."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from runtime.errors import TarxError
from runtime.workflows import templates
from runtime.workflows.templates import TemplateFailure

MAX_NODES = 200
MAX_EDGES = 1000


class GraphInvalid(TarxError):
    status, type, code = 422, "invalid_request_error", "invalid_graph"

    def __init__(self, message: str, node_ids: Iterable[str] = ()) -> None:
        super().__init__(message, extra={"error_code": "VALIDATION_ERROR", "node_ids": sorted(set(node_ids))})


# ---- node configurations, one model per type ------------------------------------------------------------------

Text = Annotated[StrictStr, Field(max_length=100_000)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class NodeConfig(BaseModel):
    """What every node accepts: its time limit per attempt, and retries with exponential backoff."""

    model_config = ConfigDict(extra="forbid", strict=True)
    timeout_seconds: Seconds | StrictInt | None = None
    retries: Annotated[StrictInt, Field(ge=0, le=10)] = 0
    retry_backoff_seconds: Annotated[float, Field(ge=0, le=600)] | StrictInt = 1.0

    def templates(self) -> list[str]:
        """The template sources in this config, compiled at validation."""
        return []

    def expressions(self) -> list[str]:
        return []


class TriggerConfig(NodeConfig):
    model_config = ConfigDict(extra="allow", strict=True)  # schedule and webhook details live elsewhere
    trigger_type: Literal["manual", "schedule", "webhook"] = "manual"


class AgentConfig(NodeConfig):
    agent_id: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    message: Text = "{{ prev }}"

    def templates(self) -> list[str]:
        return [self.message]


class LlmConfig(NodeConfig):
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=100_000)]
    system: Text | None = None
    model: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    execution_policy: Annotated[StrictStr, Field(max_length=50)] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1, le=32_768)] = 256
    temperature: Annotated[float, Field(ge=0, le=2)] | StrictInt = 0.0

    def templates(self) -> list[str]:
        return [self.prompt, *([self.system] if self.system else [])]


class RagConfig(NodeConfig):
    query: Text = "{{ prev }}"
    rag_source_ids: Annotated[list[Annotated[StrictStr, Field(max_length=200)]], Field(max_length=100)] | None = None
    k: Annotated[StrictInt, Field(ge=1, le=20)] = 3

    def templates(self) -> list[str]:
        return [self.query]


class HttpConfig(NodeConfig):
    url: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: Annotated[dict[StrictStr, StrictStr], Field(max_length=50)] = Field(default_factory=dict)
    body: Text | None = None

    def templates(self) -> list[str]:
        return [self.url, *self.headers.values(), *([self.body] if self.body is not None else [])]


class ConditionConfig(NodeConfig):
    condition: Annotated[StrictStr, Field(min_length=1, max_length=10_000)]

    def expressions(self) -> list[str]:
        return [self.condition]


class TransformConfig(NodeConfig):
    template: Text | None = None
    mapping: Annotated[dict[StrictStr, Text], Field(max_length=200)] | None = None

    def templates(self) -> list[str]:
        return [*([self.template] if self.template is not None else []), *(self.mapping or {}).values()]


class HumanConfig(NodeConfig):
    message: Text = "Approval required"

    def templates(self) -> list[str]:
        return [self.message]


class JobConfig(NodeConfig):
    command: Annotated[StrictStr, Field(min_length=1, max_length=100_000)]
    labels: Annotated[dict[StrictStr, StrictStr], Field(max_length=50)] = Field(default_factory=dict)
    env: Annotated[dict[StrictStr, StrictStr], Field(max_length=100)] = Field(default_factory=dict)
    job_timeout_seconds: Annotated[StrictInt, Field(ge=1, le=86_400)] = 600

    def templates(self) -> list[str]:
        return [self.command]


class OutputConfig(NodeConfig):
    template: Text = "{{ prev }}"

    def templates(self) -> list[str]:
        return [self.template]


CONFIGS: dict[str, type[NodeConfig]] = {
    "trigger": TriggerConfig, "agentNode": AgentConfig, "llmNode": LlmConfig, "ragNode": RagConfig,
    "httpNode": HttpConfig, "conditionNode": ConditionConfig, "transformNode": TransformConfig,
    "humanInLoopNode": HumanConfig, "jobNode": JobConfig, "outputNode": OutputConfig,
}
NODE_TYPES = tuple(CONFIGS)


# ---- the model -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    id: str
    type: str
    config: NodeConfig
    raw_config: dict[str, Any]
    position: dict[str, Any] | None

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "config": self.raw_config, "position": self.position}


@dataclass(frozen=True)
class Edge:
    id: str
    source: str
    target: str
    condition: str | None = None
    label: str | None = None

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "target": self.target, "condition": self.condition,
                "label": self.label}


@dataclass
class Graph:
    nodes: dict[str, Node]
    edges: list[Edge]
    incoming: dict[str, list[Edge]] = field(default_factory=dict)
    outgoing: dict[str, list[Edge]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.incoming = {n: [] for n in self.nodes}
        self.outgoing = {n: [] for n in self.nodes}
        for e in self.edges:
            self.incoming[e.target].append(e)
            self.outgoing[e.source].append(e)

    @property
    def triggers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.type == "trigger"]

    def wire(self) -> dict[str, Any]:
        return {"nodes": [n.wire() for n in self.nodes.values()], "edges": [e.wire() for e in self.edges]}


def _config_error(node_id: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "config"
        parts.append(f"{where}: {e['msg']}")
    return f"node '{node_id}': bad config ({'; '.join(parts)})"


def parse(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Graph:
    """Validate and build the graph from its wire form (already shape-checked at the API edge)."""
    if len(nodes) > MAX_NODES or len(edges) > MAX_EDGES:
        raise GraphInvalid(f"a workflow has at most {MAX_NODES} nodes and {MAX_EDGES} edges")
    seen: dict[str, Node] = {}
    ids = [n["id"] for n in nodes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise GraphInvalid(f"duplicate node ids: {', '.join(dupes)}", dupes)
    unknown = [n["id"] for n in nodes if n["type"] not in CONFIGS]
    if unknown:
        raise GraphInvalid(f"unknown node type in node(s) {', '.join(unknown)}; the types are "
                           f"{', '.join(NODE_TYPES)}", unknown)
    problems: list[str] = []
    bad: list[str] = []
    for raw in nodes:
        cfg = raw.get("config") or {}
        try:
            config = CONFIGS[raw["type"]].model_validate(cfg)
        except ValidationError as err:
            problems.append(_config_error(raw["id"], err))
            bad.append(raw["id"])
            continue
        try:
            for source in config.templates():
                templates.check_template(source)
            for source in config.expressions():
                templates.check_expression(source)
        except TemplateFailure as err:
            problems.append(f"node '{raw['id']}': bad template ({err})")
            bad.append(raw["id"])
            continue
        seen[raw["id"]] = Node(raw["id"], raw["type"], config, cfg, raw.get("position"))
    if problems:
        raise GraphInvalid("; ".join(problems), bad)
    built: list[Edge] = []
    dangling: list[str] = []
    for i, raw in enumerate(edges):
        ends = [raw["source"], raw["target"]]
        missing = [x for x in ends if x not in seen]
        if missing:
            dangling += missing
            continue
        condition = raw.get("condition")
        if condition:
            try:
                templates.check_expression(condition)
            except TemplateFailure as err:
                raise GraphInvalid(f"edge {raw['source']} -> {raw['target']}: bad condition ({err})", ends) from err
        built.append(Edge(raw.get("id") or f"e{i}", raw["source"], raw["target"], condition or None,
                          raw.get("label")))
    if dangling:
        raise GraphInvalid(f"edges name nodes that do not exist: {', '.join(sorted(set(dangling)))}", dangling)
    graph = Graph(seen, built)
    _check_shape(graph)
    return graph


def _check_shape(graph: Graph) -> None:
    triggers = graph.triggers
    if not triggers:
        raise GraphInvalid("a workflow needs a trigger node to start from")
    into = [t.id for t in triggers if graph.incoming[t.id]]
    if into:
        raise GraphInvalid(f"trigger nodes cannot have incoming edges: {', '.join(into)}", into)
    for node in graph.nodes.values():
        if node.type == "conditionNode":
            labels = [e.target for e in graph.outgoing[node.id] if e.label not in (None, "true", "false")]
            if labels:
                raise GraphInvalid(f"edges out of condition node '{node.id}' are labelled 'true', 'false' or "
                                   "nothing", [node.id, *labels])
    # Cycles: Kahn's algorithm leaves exactly the nodes on or behind a cycle; name those on one.
    indegree = {n: len(graph.incoming[n]) for n in graph.nodes}
    queue = deque(n for n, d in indegree.items() if d == 0)
    while queue:
        n = queue.popleft()
        for e in graph.outgoing[n]:
            indegree[e.target] -= 1
            if indegree[e.target] == 0:
                queue.append(e.target)
    left = {n for n, d in indegree.items() if d > 0}
    if left:
        on_cycle = sorted(n for n in left if n in _reachable(graph, [e.target for e in graph.outgoing[n]]))
        raise GraphInvalid(f"the graph has a cycle through {', '.join(on_cycle)}", on_cycle)
    reached = _reachable(graph, [t.id for t in triggers])
    unreachable = [n for n in graph.nodes if n not in reached]
    if unreachable:
        raise GraphInvalid(f"nodes not reachable from a trigger: {', '.join(unreachable)}", unreachable)


def _reachable(graph: Graph, starts: list[str]) -> set[str]:
    seen, stack = set(starts), list(starts)
    while stack:
        for e in graph.outgoing[stack.pop()]:
            if e.target not in seen:
                seen.add(e.target)
                stack.append(e.target)
    return seen


def from_record(graph: dict[str, Any]) -> Graph:
    """A graph stored with an execution (validated when it was saved)."""
    return parse(graph["nodes"], graph["edges"])
