"""TarxClient: the only way the console and the CLI reach a runtime (over HTTP, or in-process over ASGI).

It raises only its own errors (`tarx_console.client.errors`), never httpx's. No textual imports here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from runtime.api.families import Family, family
from runtime.store.jobs import TERMINAL, JobState
from tarx_console.client.errors import ClientError, NotFound, Refused, UnexpectedResponse, Unreachable, from_body

KEY_KINDS = ("tarx", "platform", "compute")
# Job states as the wire spells them, from their one definition in the runtime.
JOB_STATES: tuple[str, ...] = tuple(state.value for state in JobState)
TERMINAL_STATES: frozenset[str] = frozenset(state.value for state in TERMINAL)
PAGE_MAX = 500  # /v0/jobs' largest page


def _error_from(response: httpx.Response) -> Refused:
    try:
        body = response.json()
    except ValueError:
        body = None
    return from_body(response.status_code, body, response.text or response.reason_phrase)


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
        body = _json(r)
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

    async def list_jobs(self, limit: int = 1000, state: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """The newest `limit` jobs (pages of up to 500) and how many there are in all."""
        items: list[dict[str, Any]] = []
        page, total = 1, 0
        while len(items) < limit:
            size = min(PAGE_MAX, limit - len(items))
            params: dict[str, Any] = {"page": page, "pageSize": size, **({"state": state} if state else {})}
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
