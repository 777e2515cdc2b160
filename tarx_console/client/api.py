"""TarxClient: the only way the console and the CLI reach a runtime (over HTTP, or in-process over ASGI).

It raises only its own errors (`tarx_console.client.errors`), never httpx's. No textual imports here.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource

from runtime.api.families import Family, family
from runtime.store.jobs import TERMINAL, JobState
from tarx_console.client.errors import ClientError, NotFound, Refused, UnexpectedResponse, Unreachable, from_body
from tarx_console.client.events import ChatEvent, chat_event
from tarx_console.client.workflow_events import (
    EXECUTION_STATES,
    FINISHED_STATES,
    ExecutionEvent,
    GraphRejected,
    execution_event,
)

KEY_KINDS = ("tarx", "platform", "compute")
# Job states as the wire spells them, from their one definition in the runtime.
JOB_STATES: tuple[str, ...] = tuple(state.value for state in JobState)
TERMINAL_STATES: frozenset[str] = frozenset(state.value for state in TERMINAL)
PAGE_MAX = 500  # /v0/jobs' largest page
# runtime.inference.planes.POLICIES' names, spelled out: importing that module loads llama_cpp (a second).
EXECUTION_POLICIES = ("local", "supercomputer-fast", "supercomputer-deep", "enterprise-private", "enterprise-byo")
TOOL_CHOICES = ("auto", "required", "none")  # or the name of one of the agent's tools


def _error_from(response: httpx.Response) -> Refused:
    try:
        body = response.json()
    except ValueError:
        body = None
    return from_body(response.status_code, body, response.text or response.reason_phrase)


BIG_BODY = 64 * 1024  # bytes of JSON above which parsing it in a thread beats holding the event loop


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content type")
        raise UnexpectedResponse(f"{response.request.url.path} did not answer with JSON ({kind})") from exc


def _unreachable(exc: httpx.HTTPError) -> ClientError:
    text = str(exc) or type(exc).__name__
    return Unreachable(text) if isinstance(exc, httpx.TransportError) else UnexpectedResponse(text)


class TarxClient:
    def __init__(self, http: httpx.AsyncClient, key: str | None) -> None:
        self.http = http
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    @classmethod
    def over_http(cls, url: str, key: str | None, *, timeout: float = 60,
                  user_agent: str | None = None) -> TarxClient:
        """A client of the runtime at `url` (remote, or this machine's on loopback)."""
        headers = {"User-Agent": user_agent} if user_agent else {}
        return cls(httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, headers=headers), key)

    @classmethod
    def over_asgi(cls, app: Any, key: str | None) -> TarxClient:
        """A client of an ASGI app running in this process (its lifespan is the caller's to run)."""
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
        return cls(httpx.AsyncClient(transport=transport, base_url="http://localhost"), key)

    def use_project(self, project_id: str | None) -> None:
        """Act in this project (X-Project-ID), as k9s acts in a namespace; None: the caller's only project."""
        if project_id:
            self.http.headers["X-Project-ID"] = project_id
        else:
            self.http.headers.pop("X-Project-ID", None)

    def use_key(self, key: str | None) -> None:
        """Sign in with another key from now on (after the one in use was revoked)."""
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"
        else:
            self.http.headers.pop("Authorization", None)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> TarxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = await self._send(method, path, **kw)
        if r.status_code >= 400:
            raise _error_from(r)
        if r.status_code == 204 or not r.content:
            return None
        # A big answer (a page of 500 jobs: ~300 KB) is parsed off the event loop: the console keeps taking keys
        body = _json(r) if len(r.content) < BIG_BODY else await asyncio.to_thread(_json, r)
        # Seed 003 wraps every answer in {"status", "message", "payload"}; seed 004 (/v0) answers bare (only its
        # errors share that envelope, which _error_from reads), and so do the other families.
        if family(path) is Family.compute:
            if not isinstance(body, dict) or "payload" not in body:
                raise UnexpectedResponse(f"{path} answered without the compute envelope")
            return body["payload"]
        return body

    # ---- runtime -------------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Health answers 503 with a body when the default model is unusable; that is news, not an error."""
        r = await self._send("GET", "/v1/health")
        if r.status_code not in (200, 503):
            raise _error_from(r)
        return _json(r)

    async def usage(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/usage")

    async def version(self) -> dict[str, Any]:
        return await self._call("GET", "/api/version")

    async def me(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/auth/me")

    async def chat_completion(self, messages: list[dict[str, Any]], model: str, **params: Any) -> dict[str, Any]:
        """POST /v1/chat/completions (non-streaming): the OpenAI-shaped answer."""
        return await self._call("POST", "/v1/chat/completions", json={"model": model, "messages": messages, **params})

    async def rag_sources(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/rags", params={"per_page": 200}))["items"]

    async def rag_search(self, rag_id: str, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The best `k` hits of one RAG source (POST /api/v1/rags/{id}/test)."""
        return (await self._call("POST", f"/api/v1/rags/{rag_id}/test", json={"query": query, "k": k}))["hits"]

    # ---- keys of every kind ------------------------------------------------------------------------------------

    async def create_key(self, kind: str, name: str, scope: str | None = None, *, workspace: str | None = None,
                         quotas: dict[str, Any] | None = None, expires_at: str | None = None) -> dict[str, Any]:
        if kind == "tarx":
            body: dict[str, Any] = {"name": name, "scope": scope or "developer_runtime"}
            if expires_at:
                body["expires_at"] = expires_at
            return {"kind": kind, **await self._call("POST", "/api/keys", json=body)}
        if kind == "platform":
            body = {"name": name, **({"expires_at": expires_at} if expires_at else {})}
            return {"kind": kind, **await self._call("POST", "/api/v1/platform-keys", json=body)}
        if kind == "compute":
            body = {"name": name, **(quotas or {})}
            if workspace:
                body["workspaceId"] = workspace
            if expires_at:
                body["expiresAt"] = expires_at
            return {"kind": kind, **await self._call("POST", "/api/compute/api-keys/create", json=body)}
        raise ValueError(f"kind must be one of {KEY_KINDS}")

    async def list_keys(self, kind: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if kind in (None, "tarx"):
            out += [{**k, "kind": "tarx"} for k in (await self._call("GET", "/api/keys"))["data"]]
        if kind in (None, "platform"):
            page = await self._call("GET", "/api/v1/platform-keys", params={"per_page": 200})
            out += [{**k, "kind": "platform"} for k in page["items"]]
        if kind in (None, "compute"):
            for k in await self._call("POST", "/api/compute/api-keys/list", json={}):
                out.append({"id": k["id"], "kind": "compute", "name": k["name"], "display_prefix": k["prefix"],
                            "project_id": k["workspaceId"], "quotas": {q: k[q] for q in (
                                "maxJobsPerHour", "maxConcurrentJobs", "allowedJobTypes") if k.get(q) is not None},
                            "created_at": k["createdAt"], "last_used_at": k["lastUsedAt"],
                            "expires_at": k["expiresAt"], "revoked_at": k["revokedAt"]})
        return sorted(out, key=lambda k: k["created_at"])

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        found = next((k for k in await self.list_keys() if k["id"] == key_id), None)
        if found is None:
            raise NotFound(404, f"Key '{key_id}' was not found.")
        if found["kind"] == "tarx":
            await self._call("DELETE", "/api/keys", params={"id": key_id})
        elif found["kind"] == "platform":
            await self._call("DELETE", f"/api/v1/platform-keys/{key_id}")
        else:
            await self._call("POST", "/api/compute/api-keys/revoke", json={"id": key_id})
        return found

    async def grant_entitlement(self, name: str, email: str | None = None, revoke: bool = False) -> list[str]:
        body = {"entitlement": name, **({"email": email} if email else {})}
        result = await self._call("DELETE" if revoke else "POST", "/api/account/entitlements", json=body)
        return result["entitlements"]

    # ---- projects ------------------------------------------------------------------------------------------------

    async def list_projects(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/projects", params={"per_page": 200}))["items"]

    async def create_project(self, name: str, slug: str | None = None) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/projects", json={"name": name, **({"slug": slug} if slug else {})})

    async def members(self, project_id: str) -> list[dict[str, Any]]:
        return (await self._call("GET", f"/api/v1/projects/{project_id}/members", params={"per_page": 200}))["items"]

    async def add_member(self, project_id: str, email: str, role: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/projects/{project_id}/members", json={"email": email, "role": role})

    async def remove_member(self, project_id: str, user_id: str) -> str:
        await self._call("DELETE", f"/api/v1/projects/{project_id}/members/{user_id}")
        return user_id

    # ---- jobs ------------------------------------------------------------------------------------------------------

    async def list_jobs(self, limit: int = 1000, state: str | None = None, offset: int = 0,
                        sort: str | None = None, descending: bool = True) -> tuple[list[dict[str, Any]], int]:
        """`limit` jobs from the `offset`-th on, newest first or in the runtime's order of `sort` (a job field such
        as "state" or "exitCode"), in pages of up to 500; and how many there are in all."""
        items: list[dict[str, Any]] = []
        # The API pages by number: one page size throughout, and one that divides the offset.
        size = math.gcd(offset, min(PAGE_MAX, limit)) if offset else min(PAGE_MAX, limit)
        page, total = offset // size + 1, 0
        while len(items) < limit:
            params: dict[str, Any] = {"page": page, "pageSize": size, **({"state": state} if state else {}),
                                      **({"sort": sort, "order": "desc" if descending else "asc"} if sort else {})}
            body = await self._call("GET", "/v0/jobs", params=params)
            items += body["items"]
            total = body["total"]
            if len(body["items"]) < size:
                break
            page += 1
        return items[:limit], total

    async def job_counts(self) -> dict[str, int]:
        async def count(state: str) -> int:
            return (await self._call("GET", "/v0/jobs", params={"state": state, "pageSize": 1}))["total"]

        totals = await asyncio.gather(*(count(s) for s in JOB_STATES))
        return dict(zip(JOB_STATES, totals, strict=True))

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v0/jobs/{job_id}")

    async def submit_job(self, command: str, *, labels: dict[str, str] | None = None, timeout_seconds: int = 3600,
                         max_attempts: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"command": command, "timeoutSeconds": timeout_seconds, "labels": labels or {}}
        if max_attempts is not None:
            body["maxAttempts"] = max_attempts
        return await self._call("POST", "/v0/jobs", json=body)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v0/jobs/{job_id}:cancel")

    async def retry_job(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", "/api/compute/jobs/retry", json={"jobId": job_id})

    async def job_log(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The job's log lines so far (after sequence `after`), without waiting for more."""
        return (await self._call("GET", f"/v0/jobs/{job_id}/logs", params={"after": after}))["items"]

    async def follow_job_log(self, job_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The job's log lines after sequence `after`, as they arrive, then one `{"end": …}` record.

        A dropped connection resumes where it left off (`Last-Event-ID`), so no line is lost or repeated; a
        refusal (an unknown job, a revoked key) raises."""
        while True:
            headers = {"Last-Event-ID": str(after), "Accept": "text/event-stream"}
            try:
                async with self.http.stream("GET", f"/v0/jobs/{job_id}/logs", params={"follow": "true"},
                                            headers=headers, timeout=httpx.Timeout(60, read=None)) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        raise _error_from(r)
                    event: dict[str, str] = {}
                    async for line in r.aiter_lines():
                        if line:
                            if not line.startswith(":"):
                                name, _, value = line.partition(":")
                                event[name] = value.removeprefix(" ")
                            continue
                        if event.get("event") == "log":
                            record = json.loads(event["data"])
                            after = record["seq"]
                            yield record
                        elif event.get("event") == "end":
                            yield {"end": json.loads(event["data"])}
                            return
                        event = {}
            except (httpx.TransportError, httpx.StreamError):
                await asyncio.sleep(1)

    # ---- nodes (v0 calls them agents) ------------------------------------------------------------------------------

    async def list_nodes(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/v0/agents"))["items"]

    async def drain_node(self, node_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v0/agents/{node_id}:drain")

    # ---- agents, chat, RAG sources, MCP servers, skills (seed 001, 002) -----------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """The runtime's models (GET /v1/models): the ones an agent may name."""
        return (await self._call("GET", "/v1/models"))["data"]

    async def list_agents(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/agents", params={"per_page": 200}))["items"]

    async def agent(self, agent_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/agents/{agent_id}")

    async def create_agent(self, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/agents", json=fields)

    async def update_agent(self, agent_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", f"/api/v1/agents/{agent_id}", json=fields)

    async def delete_agent(self, agent_id: str) -> str:
        await self._call("DELETE", f"/api/v1/agents/{agent_id}")
        return agent_id

    async def chat_agent(self, agent_id: str, message: str,
                         history: list[dict[str, str]] | None = None) -> AsyncIterator[ChatEvent]:
        """One chat turn with an agent, its events as they arrive (POST /api/v1/agents/{id}/chat, SSE).

        Close the iterator (`contextlib.aclosing`) to stop the turn: that closes the HTTP stream, and the runtime
        stops generating. A refusal before the stream starts raises; an `error` event arrives as ChatFailed."""
        body = {"message": message, "history": history or [], "stream": True}
        try:
            async with self.http.stream("POST", f"/api/v1/agents/{agent_id}/chat", json=body,
                                        headers={"Accept": "text/event-stream"},
                                        timeout=httpx.Timeout(60, read=None)) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise _error_from(r)
                async for sse in EventSource(r).aiter_sse():
                    event = chat_event(sse.event, sse.data)
                    if event is not None:
                        yield event
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc

    async def agent_reply(self, agent_id: str, message: str,
                          history: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """One chat turn with an agent, answered whole (seed 002's `stream: false` schema)."""
        body = {"message": message, "history": history or [], "stream": False}
        return await self._call("POST", f"/api/v1/agents/{agent_id}/chat", json=body)

    async def skills(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/skills"))["items"]

    async def tools(self) -> list[dict[str, Any]]:
        """The built-in tools an agent may name, as this runtime has them (name, description, parameters); an MCP
        server's tools come with the server (`list_mcp`)."""
        return (await self._call("GET", "/api/v1/tools"))["items"]

    async def rag_source(self, rag_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/rags/{rag_id}")

    async def create_rag(self, name: str, kind: str, config: dict[str, Any], description: str = "") -> dict[str, Any]:
        """A new RAG source; it indexes in the background (watch its `state`, `documents` and `chunks`)."""
        body = {"name": name, "kind": kind, "config": config, "description": description}
        return await self._call("POST", "/api/v1/rags", json=body)

    async def delete_rag(self, rag_id: str) -> str:
        await self._call("DELETE", f"/api/v1/rags/{rag_id}")
        return rag_id

    async def list_mcp(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/mcp"))["items"]

    async def mcp_server(self, mcp_id: str, refresh: bool = False) -> dict[str, Any]:
        """One MCP server with its tools; `refresh` discovers them now instead of using the last discovery."""
        return await self._call("GET", f"/api/v1/mcp/{mcp_id}", params={"refresh": str(refresh).lower()})

    async def create_mcp(self, name: str, transport: dict[str, Any], description: str = "") -> dict[str, Any]:
        """Connect an MCP server: `transport` is {"transport": "stdio", "command", "args", "env"} or
        {"transport": "streamable_http", "url", "headers"}."""
        return await self._call("POST", "/api/v1/mcp", json={"name": name, "description": description, **transport})

    async def discover_mcp(self, transport: dict[str, Any]) -> list[dict[str, Any]]:
        """The tools a server offers, without connecting it to the project."""
        return (await self._call("POST", "/api/v1/mcp/discover", json=transport))["tools"]

    async def delete_mcp(self, mcp_id: str) -> str:
        await self._call("DELETE", f"/api/v1/mcp/{mcp_id}")
        return mcp_id

    # ---- workflows, executions, schedules, inbound webhooks (seed 001, 002) ----------------------------------

    async def list_workflows(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/workflows", params={"per_page": 200}))["items"]

    async def workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow with its nodes and edges."""
        return await self._call("GET", f"/api/v1/workflows/{workflow_id}")

    async def _graph_call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A create or update: an invalid graph (422) raises GraphRejected, with the node ids the answer lists."""
        r = await self._send(method, path, json=body)
        if r.status_code == 422:
            try:
                detail = r.json()
            except ValueError:
                detail = None
            if isinstance(detail, dict) and "detail" in detail:
                named = detail.get("node_ids")
                raise GraphRejected(422, str(detail["detail"]), detail.get("error_code"),
                                    [str(n) for n in named] if isinstance(named, list) else [])
        if r.status_code >= 400:
            raise _error_from(r)
        return _json(r)

    async def create_workflow(self, name: str, nodes: list[dict[str, Any]], edges: list[dict[str, Any]],
                              description: str = "") -> dict[str, Any]:
        body = {"name": name, "description": description, "nodes": nodes, "edges": edges}
        return await self._graph_call("POST", "/api/v1/workflows", body)

    async def update_workflow(self, workflow_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PUT the fields given (name, description, nodes, edges); a graph the runtime finds invalid raises
        GraphRejected naming the offending nodes."""
        return await self._graph_call("PUT", f"/api/v1/workflows/{workflow_id}", fields)

    async def delete_workflow(self, workflow_id: str) -> str:
        await self._call("DELETE", f"/api/v1/workflows/{workflow_id}")
        return workflow_id

    async def execute_workflow(self, workflow_id: str, input: Any = "") -> dict[str, Any]:
        """Start an execution: {"execution_id", "status": "pending"}."""
        return await self._call("POST", f"/api/v1/workflows/{workflow_id}/execute", json={"input": input})

    async def schedule(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's schedule: enabled, cron, timezone and `next_run_times`."""
        return await self._call("GET", f"/api/v1/workflows/{workflow_id}/schedule")

    async def set_schedule(self, workflow_id: str, enabled: bool, cron: str, timezone: str = "UTC") -> dict[str, Any]:
        """Enable or disable the schedule trigger; the answer shows the next run times."""
        body = {"enabled": enabled, "cron": cron, "timezone": timezone}
        return await self._call("PUT", f"/api/v1/workflows/{workflow_id}/schedule", json=body)

    async def preview_schedule(self, cron: str, timezone: str = "UTC") -> list[str]:
        """The next run times of a cron expression not saved yet (RFC 3339, UTC)."""
        answer = await self._call("GET", "/api/v1/schedules/preview", params={"cron": cron, "timezone": timezone})
        return answer["next_run_times"]

    async def setup_webhook(self, workflow_id: str) -> dict[str, Any]:
        """A new inbound webhook URL and its signing secret (shown this once)."""
        return await self._call("POST", f"/api/v1/webhooks/setup/{workflow_id}")

    async def list_executions(self, workflow_id: str | None = None, status: str | None = None,
                              limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` executions, newest first, optionally of one workflow and in one state."""
        params: dict[str, Any] = {"limit": min(limit, 200)}
        if workflow_id:
            params["workflow_id"] = workflow_id
        if status:
            params["status"] = status
        items: list[dict[str, Any]] = []
        while True:
            body = await self._call("GET", "/api/v1/executions", params=params)
            page = body["items"] if isinstance(body, dict) else body
            items += page
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            if not cursor or not page or len(items) >= limit:
                return items[:limit]
            params["cursor"] = cursor

    async def execution_counts(self, newest: int = 200) -> tuple[dict[str, int], bool]:
        """The newest `newest` executions counted by state (one request: a console polls this, and /api/v1 allows
        200 requests a minute), and whether that is all of them."""
        items = await self.list_executions(limit=newest)
        counts = dict.fromkeys(EXECUTION_STATES, 0)
        for ex in items:
            counts[ex["status"]] = counts.get(ex["status"], 0) + 1
        return counts, len(items) < newest

    async def execution(self, execution_id: str) -> dict[str, Any]:
        """One execution with its `node_results` and the `graph` (nodes, edges) of the workflow version that ran
        (absent from a runtime older than it)."""
        return await self._call("GET", f"/api/v1/executions/{execution_id}")

    async def execution_logs(self, execution_id: str) -> Any:
        """The full log: input and output per node."""
        return await self._call("GET", f"/api/v1/executions/{execution_id}/logs")

    async def approve_execution(self, execution_id: str, approved: bool, comment: str = "",
                                node_id: str | None = None) -> dict[str, Any]:
        """Approve (or reject) the human-in-loop node an execution waits on (`node_id` when several wait)."""
        body: dict[str, Any] = {"approved": approved, "comment": comment or None}
        if node_id:
            body["node_id"] = node_id
        return await self._call("POST", f"/api/v1/executions/{execution_id}/approve", json=body)

    async def cancel_execution(self, execution_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/executions/{execution_id}/cancel")

    async def follow_execution(self, execution_id: str, after: int = 0,
                               retry_seconds: float = 0.5) -> AsyncIterator[ExecutionEvent]:
        """The execution's events after sequence `after` as they arrive (GET /executions/{id}/stream, SSE),
        ending after the one that finishes it (a finished execution's stream replays and closes).

        A dropped connection is opened again with `Last-Event-ID` set to the last event received, so no event is
        lost or repeated; while the runtime cannot be reached it retries every `retry_seconds`. A refusal (an
        unknown execution, a revoked key) raises."""
        while True:
            headers = {"Last-Event-ID": str(after), "Accept": "text/event-stream"}
            try:
                async with self.http.stream("GET", f"/api/v1/executions/{execution_id}/stream", headers=headers,
                                            timeout=httpx.Timeout(30, read=None)) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        raise _error_from(r)
                    async for sse in EventSource(r).aiter_sse():
                        if not sse.event and not sse.data:
                            continue
                        event = execution_event(sse.id, sse.event, sse.data)
                        if event.seq and event.seq <= after:
                            continue  # already seen (a runtime replaying more than it was asked for)
                        after = event.seq or after
                        yield event
                        if event.final:
                            return
                # Closed without the final event: over (a finished run's replay), or a runtime shutting down.
                if (await self.execution(execution_id)).get("status") in FINISHED_STATES:
                    return
            except (httpx.TransportError, httpx.StreamError, Unreachable):
                pass
            await asyncio.sleep(retry_seconds)
