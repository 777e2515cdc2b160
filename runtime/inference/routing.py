"""Execution planes: the same chat request runs locally, on a hosted upstream, or on a project's enterprise
upstream, as `x-tarx-execution-policy` asks and `x-tarx-privacy-tier` allows, with explicit fallback and a route
evidence record for every completion.

Upstreams speak the OpenAI-compatible API (another tarx runtime, or any compatible server). The request is sent
with policy `local`, so an upstream tarx runs it itself and never routes it further.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.auth.access import resolve_project
from runtime.auth.accounts import HOSTED_ENTITLEMENT
from runtime.auth.principal import Principal
from runtime.auth.secretbox import SecretBox
from runtime.config import Settings
from runtime.errors import InvalidRequest, NotFound, TarxError
from runtime.inference.chat import ChatService, Limits
from runtime.inference.energy import EnergyMeter, Joules, billable
from runtime.inference.jobs import Done, QueueClass
from runtime.inference.schemas import ChatCompletionRequest
from runtime.store import Database, evidence, identity
from runtime.store import secrets as secret_store
from runtime.store.db import utcnow

# policy -> (plane, queue class)
POLICIES: dict[str, tuple[str, QueueClass | str]] = {
    "local": ("local", QueueClass.interactive),
    "supercomputer-fast": ("supercomputer", QueueClass.interactive),
    "supercomputer-deep": ("supercomputer", QueueClass.deep),
    "enterprise-private": ("enterprise", "enterprise"),
    "enterprise-byo": ("enterprise", "enterprise"),
}
DEFAULT_POLICY = "local"
# Privacy tiers, most private first, and where each may go. Personal content stays on this machine; private
# content may also reach the customer's own infrastructure; mesh-safe and public content may leave for hosted
# compute and approved providers.
TIERS = ("personal", "private", "mesh_safe", "public")
DEFAULT_TIER = "private"
ALLOWED_TIERS: dict[str, tuple[str, ...]] = {
    "local": TIERS,
    "enterprise-private": ("private", "mesh_safe", "public"),
    "enterprise-byo": ("mesh_safe", "public"),
    "supercomputer-fast": ("mesh_safe", "public"),
    "supercomputer-deep": ("mesh_safe", "public"),
}
ROUTE_HEADERS = ("x-tarx-execution-policy", "x-tarx-privacy-tier", "x-tarx-project-id", "x-tarx-max-joules",
                 "x-tarx-max-latency-ms")


class PrivacyViolation(TarxError):
    status, type, code = 403, "permission_error", "privacy_tier_violation"


def _quota_error(message: str) -> TarxError:
    return TarxError(message, status=402, type="insufficient_quota", code="insufficient_quota")


@dataclass
class Upstream:
    name: str
    url: str
    key: str | None
    provider: str


@dataclass
class Plan:
    policy: str
    plane: str
    tier: str
    queue_class: QueueClass
    upstream: Upstream | None
    max_latency_ms: float | None
    max_joules: float | None
    project_id: str | None
    principal: Principal | None
    started: float = field(default_factory=time.perf_counter)

    def limits(self, watts_per_core: float) -> Limits:
        deadline = self.started + self.max_latency_ms / 1000 if self.max_latency_ms else None
        cpu = self.max_joules / watts_per_core if self.max_joules else None
        return Limits(deadline, cpu)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, not '{value}'", code="invalid_route_header") from None
    if number <= 0:
        raise InvalidRequest(f"{name} must be positive", code="invalid_route_header")
    return number


class Router:
    def __init__(self, settings: Settings, db: Database, chat: ChatService, box: SecretBox) -> None:
        self.settings = settings
        self.db = db
        self.chat = chat
        self.box = box
        self.meter = EnergyMeter(settings.cpu_watts_per_core)
        self.http = httpx.AsyncClient(timeout=settings.upstream_timeout_seconds)
        self.upstream_in_flight: dict[str, int] = {"interactive": 0, "deep": 0, "enterprise": 0}
        self._configured: Upstream | None = None  # the owner-configured hosted upstream, read once
        self._configured_loaded = False

    async def close(self) -> None:
        await self.http.aclose()

    # ---- planning -------------------------------------------------------------------------------------------

    async def plan(self, principal: Principal | None, headers: Mapping[str, str]) -> Plan:
        policy = (headers.get("x-tarx-execution-policy") or DEFAULT_POLICY).strip().lower()
        if policy not in POLICIES:
            raise InvalidRequest(f"x-tarx-execution-policy must be one of {list(POLICIES)}", code="invalid_policy")
        tier = (headers.get("x-tarx-privacy-tier") or DEFAULT_TIER).strip().lower()
        if tier not in TIERS:
            raise InvalidRequest(f"x-tarx-privacy-tier must be one of {list(TIERS)}", code="invalid_privacy_tier")
        max_latency, max_joules = _number(headers, "x-tarx-max-latency-ms"), _number(headers, "x-tarx-max-joules")
        plane, cls = POLICIES[policy]
        if tier not in ALLOWED_TIERS[policy]:
            raise PrivacyViolation(f"'{tier}' content may not leave for the {policy} plane; it may use "
                                   f"{[p for p, tiers in ALLOWED_TIERS.items() if tier in tiers]}.")
        project_id = await self._attribution(principal, headers.get("x-tarx-project-id"))
        upstream = None
        if plane == "supercomputer":
            upstream = await self._hosted(principal)
        elif plane == "enterprise":
            upstream = await self._enterprise(principal, project_id)
        queue = QueueClass.deep if cls == QueueClass.deep else QueueClass.interactive
        asked = (headers.get("x-tarx-queue-class") or "").strip().lower()
        if asked:
            if asked not in QueueClass.__members__:
                raise InvalidRequest(f"x-tarx-queue-class must be one of {list(QueueClass.__members__)}")
            queue = QueueClass(asked)
        return Plan(policy, plane, tier, queue, upstream, max_latency, max_joules, project_id, principal)

    async def _attribution(self, principal: Principal | None, value: str | None) -> str | None:
        if not value or principal is None:
            return None
        ctx = await resolve_project(self.db, principal, None if not value.startswith("proj_") else value,
                                    value if not value.startswith("proj_") else None)
        return ctx.project.id

    async def _hosted(self, principal: Principal | None) -> Upstream:
        key = principal.key if principal else None
        if key is None or key.kind != "tarx" or key.scope != "supercomputer":
            raise _quota_error("Hosted execution needs a TARX key of scope 'supercomputer'.")
        if HOSTED_ENTITLEMENT not in await identity.entitlements(self.db, principal.user.id):  # type: ignore[union-attr]
            raise _quota_error("This key's account has no active Supercomputer entitlement.")
        configured = await self._owner_configured()
        if configured is not None:
            return configured
        if self.settings.supercomputer_url:
            return Upstream("supercomputer", self.settings.supercomputer_url, self.settings.supercomputer_key,
                            "tarx-supercomputer")
        raise TarxError("No Supercomputer upstream is configured on this runtime (settings supercomputer_url, or "
                        "PUT /api/planes/supercomputer).", status=503, type="server_error",
                        code="upstream_not_configured")

    async def _enterprise(self, principal: Principal | None, project_id: str | None) -> Upstream:
        if principal is None:
            raise TarxError("Enterprise execution needs an API key.", status=401, type="authentication_error",
                            code="tarx_api_key_required")
        if project_id is None:
            projects = await identity.projects_for(self.db, principal.user.id)
            if len(projects) != 1:
                raise InvalidRequest("Name the project whose enterprise upstream to use with x-tarx-project-id.",
                                     code="project_required")
            project_id = projects[0].id
        row = await secret_store.enterprise_upstream(self.db, project_id)
        if row is None:
            raise NotFound("This project has no enterprise upstream: add a BYOK LLM key with a base_url.",
                           code="upstream_not_configured")
        return Upstream("enterprise", row["base_url"], self.box.open(row["ciphertext"]), row["provider"] or "byok")

    async def _owner_configured(self) -> Upstream | None:
        if not self._configured_loaded:
            row = await self.db.fetchone("SELECT * FROM upstreams WHERE name = 'supercomputer'")
            self._configured = None if row is None else Upstream(
                "supercomputer", row["url"], self.box.open(row["key_cipher"]) if row["key_cipher"] else None,
                "tarx-supercomputer")
            self._configured_loaded = True
        return self._configured

    async def hosted_configured(self) -> bool:
        return bool(self.settings.supercomputer_url) or await self._owner_configured() is not None

    async def set_hosted(self, url: str, key: str | None) -> None:
        await self.db.execute(
            "INSERT INTO upstreams (name, url, key_cipher, updated_at) VALUES ('supercomputer', ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET url = excluded.url, key_cipher = excluded.key_cipher, "
            "updated_at = excluded.updated_at", (url.rstrip("/"), self.box.seal(key) if key else None, utcnow()))
        self._configured_loaded = False

    # ---- running ---------------------------------------------------------------------------------------------

    def _upstream_request(self, plan: Plan, body: ChatCompletionRequest, stream: bool) -> dict[str, Any]:
        assert plan.upstream is not None
        payload = body.model_dump(exclude_none=True, by_alias=True)
        payload["stream"] = stream
        if stream:
            payload["stream_options"] = {"include_usage": True}
        headers = {"x-tarx-execution-policy": "local", "x-tarx-privacy-tier": plan.tier}
        if plan.upstream.key:
            headers["Authorization"] = f"Bearer {plan.upstream.key}"
        timeout = (plan.max_latency_ms / 1000) if plan.max_latency_ms else self.settings.upstream_timeout_seconds
        return {"url": plan.upstream.url.rstrip("/") + "/v1/chat/completions", "json": payload, "headers": headers,
                "timeout": timeout}

    def _slot(self, plan: Plan) -> str:
        return "enterprise" if plan.plane == "enterprise" else plan.queue_class.value

    async def complete(self, plan: Plan, body: ChatCompletionRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        fallback_reason = None
        if plan.upstream is not None:
            slot = self._slot(plan)
            self.upstream_in_flight[slot] += 1
            try:
                r = await self.http.post(**self._upstream_request(plan, body, stream=False))
                if r.status_code < 500 and r.status_code != 429:
                    data = r.json()
                    if r.status_code >= 400:  # the upstream refused the request itself: say so, do not retry
                        raise TarxError(f"The {plan.plane} upstream refused the request: "
                                        f"{data.get('error', {}).get('message', r.text[:200])}",
                                        status=r.status_code, code="upstream_refused")
                    route = await self._record(plan, body, False, data.get("usage", {}), None,
                                               upstream_route=data.get("tarx_route"))
                    data["tarx_route"] = route
                    return data, route
                fallback_reason = f"upstream_status_{r.status_code}"
            except httpx.TimeoutException:
                fallback_reason = "upstream_timeout"
            except (httpx.TransportError, ValueError):
                fallback_reason = "upstream_unavailable"
            finally:
                self.upstream_in_flight[slot] -= 1
        # Local: the plane asked for, or the fallback (local is inside every privacy boundary).
        done_box: list[Done] = []
        before = self.meter.read()
        data = await self.chat.complete(body, plan.queue_class, plan.limits(self.settings.cpu_watts_per_core),
                                        done_box.append)
        done = done_box[0]
        self._check_budget(plan, done)
        joules = self.meter.joules(before, self.meter.read(), done.cpu_seconds)
        route = await self._record(plan, body, False, data["usage"], joules, fallback_reason=fallback_reason,
                                   limited_by=done.limited_by)
        data["tarx_route"] = route
        return data, route

    def _check_budget(self, plan: Plan, done: Done) -> None:
        if done.limited_by == "max_joules" and done.completion_tokens == 0:
            raise TarxError(f"x-tarx-max-joules={plan.max_joules:g} does not cover even the prompt on this route.",
                            status=422, type="invalid_request_error", code="joules_budget_exceeded")

    async def stream(self, plan: Plan, body: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
        """Chunks, ending with one that carries `tarx_route` (the caller then sends `[DONE]`)."""
        fallback_reason = None
        if plan.upstream is not None:
            slot = self._slot(plan)
            self.upstream_in_flight[slot] += 1
            try:
                request = self.http.build_request("POST", **self._upstream_request(plan, body, stream=True))
                response = await self.http.send(request, stream=True)
                if response.status_code < 400:
                    return self._relay(plan, body, response, slot)
                await response.aclose()
                fallback_reason = f"upstream_status_{response.status_code}"
            except httpx.TimeoutException:
                fallback_reason = "upstream_timeout"
            except httpx.TransportError:
                fallback_reason = "upstream_unavailable"
            self.upstream_in_flight[slot] -= 1
        return await self._local_stream(plan, body, fallback_reason)

    def _relay(self, plan: Plan, body: ChatCompletionRequest, response: httpx.Response, slot: str
               ) -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            usage: dict[str, Any] = {}
            upstream_route = None
            last: dict[str, Any] = {}
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    if "tarx_route" in chunk:
                        upstream_route = chunk["tarx_route"]
                        continue
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        if not (body.stream_options and body.stream_options.include_usage):
                            continue
                    last = chunk
                    yield chunk
            finally:
                await response.aclose()
                self.upstream_in_flight[slot] -= 1
            route = await self._record(plan, body, True, usage, None, upstream_route=upstream_route)
            yield _route_chunk(last, body.model, route)

        return chunks()

    async def _local_stream(self, plan: Plan, body: ChatCompletionRequest, fallback_reason: str | None
                            ) -> AsyncIterator[dict[str, Any]]:
        done_box: list[Done] = []
        before = self.meter.read()
        inner = await self.chat.stream(body, plan.queue_class, plan.limits(self.settings.cpu_watts_per_core),
                                       done_box.append)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            last: dict[str, Any] = {}
            async for chunk in inner:
                last = chunk
                yield chunk
            done = done_box[0]
            joules = self.meter.joules(before, self.meter.read(), done.cpu_seconds)
            usage = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens}
            route = await self._record(plan, body, True, usage, joules, fallback_reason=fallback_reason,
                                       limited_by=done.limited_by)
            yield _route_chunk(last, body.model, route)

        return chunks()

    async def _record(self, plan: Plan, body: ChatCompletionRequest, stream: bool, usage: dict[str, Any],
                      joules: Joules | None, *, fallback_reason: str | None = None, limited_by: str | None = None,
                      upstream_route: dict[str, Any] | None = None) -> dict[str, Any]:
        fell_back = fallback_reason is not None
        plane = "local" if fell_back or plan.upstream is None else plan.plane
        if joules is None:  # the upstream did the work: its evidence carries the joules, when it sends any
            up = upstream_route or {}
            raw, est = up.get("raw_joules"), float(up.get("estimated_joules") or 0.0)
            joules = Joules(raw, est, float(up.get("billable_joules") or billable(raw, est)),
                            f"upstream:{up.get('joules_method', 'unreported')}")
        principal = plan.principal
        rec = await evidence.record(self.db, {
            "execution_plane": plane, "policy": plan.policy, "privacy_tier": plan.tier, "model": body.model,
            "provider": plan.upstream.provider if plane != "local" and plan.upstream else "tarx-local",
            "latency_ms": round((time.perf_counter() - plan.started) * 1000, 1),
            **joules.evidence(), "fallback": fell_back, "fallback_reason": fallback_reason,
            "limited_by": limited_by, "stream": stream,
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "key_id": principal.key_id if principal else None, "user_id": principal.user.id if principal else None,
            "project_id": plan.project_id,
        })
        return route_view(rec)

    def capacity(self) -> dict[str, dict[str, Any]]:
        classes = self.chat.engine.capacity()
        classes.setdefault("enterprise", {"depth": 0, "in_flight": 0, "limit": self.settings.queue_max,
                                          "backpressure_state": "normal"})
        for name, n in self.upstream_in_flight.items():
            classes[name]["upstream_in_flight"] = n
            classes[name]["in_flight"] += n
        return classes


def route_view(rec: dict[str, Any]) -> dict[str, Any]:
    """The `tarx_route` object (seed 000's evidence fields, plus how the joules were obtained)."""
    keys = ("execution_plane", "policy", "privacy_tier", "model", "provider", "latency_ms", "raw_joules",
            "estimated_joules", "billable_joules", "fallback", "fallback_reason")
    return {**{k: rec[k] for k in keys}, "evidence_id": rec["id"], "joules_method": rec["joules_method"],
            "limited_by": rec["limited_by"], "recorded_at": rec["time"]}


def _route_chunk(last: dict[str, Any], model: str, route: dict[str, Any]) -> dict[str, Any]:
    return {"id": last.get("id", route["evidence_id"]), "object": "chat.completion.chunk",
            "created": last.get("created", int(time.time())), "model": model, "choices": [], "tarx_route": route}


__all__ = ["ALLOWED_TIERS", "POLICIES", "ROUTE_HEADERS", "TIERS", "Router"]
