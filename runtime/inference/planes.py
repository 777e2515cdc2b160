"""Execution planes: the same chat request runs locally, on a hosted upstream, or on a project's enterprise
upstream, as `x-tarx-execution-policy` asks and `x-tarx-privacy-tier` allows, with explicit fallback and a route
evidence record for every completion.

Upstreams speak the OpenAI-compatible API (another tarx runtime, or any compatible server). The request is sent
with policy `local`, so an upstream tarx runs it itself and never routes it further.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.auth.access import resolve_project
from runtime.auth.accounts import HOSTED_ENTITLEMENT
from runtime.auth.principal import Principal
from runtime.auth.secretbox import SecretBox
from runtime.config import Settings
from runtime.errors import InvalidRequest, NotFound, TarxError
from runtime.inference.energy import EnergyMeter, Joules, Reading, billable
from runtime.inference.local import Limits, LocalChat
from runtime.inference.results import (
    ChatEvent,
    ChatResult,
    Final,
    Generated,
    RouteEvidence,
    TextDelta,
    ToolCall,
    ToolCalls,
    Usage,
)
from runtime.inference.schemas import ChatCompletionRequest
from runtime.inference.work import QueueClass
from runtime.store import Database, evidence, identity, upstreams
from runtime.store import secrets as secret_store
from runtime.store.inference_log import InferenceRecord

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
                 "x-tarx-max-latency-ms", "x-tarx-llm-key-id")


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
    """Where and how one chat call will run (from `PlaneRouter.plan`). Its evidence id is known up front, so a
    stream can name it in a response header before the record exists; so is the call's id, which names the
    completion, its stream chunks and its log row whichever plane runs it."""

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
    evidence_id: str = field(default_factory=evidence.new_evidence_id)
    call_id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))

    def limits(self, watts_per_core: float) -> Limits:
        """The deadline and CPU budget standing for this call's latency and joules limits."""
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
    if not number > 0 or number == float("inf"):  # NaN and infinity are not budgets
        raise InvalidRequest(f"{name} must be a positive number", code="invalid_route_header")
    return number


@dataclass
class _Outcome:
    """How a call ended on its plane, before it is recorded."""

    generated: Generated
    plane: str
    joules: Joules | None = None  # None: the upstream did the work (its evidence carries the joules)
    fallback_reason: str | None = None
    upstream_route: dict[str, Any] | None = None


class PlaneRouter:
    """Runs chat calls on the plane their policy and privacy tier allow, with explicit fallback to local, and
    records each call's log row and route evidence together."""

    def __init__(self, settings: Settings, db: Database, local: LocalChat, box: SecretBox) -> None:
        self.settings = settings
        self.db = db
        self.local = local
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
        project_id = await self._attribution(principal, headers.get("x-tarx-project-id"), plane == "enterprise")
        upstream = None
        if plane == "supercomputer":
            upstream = await self._hosted(principal)
        elif plane == "enterprise":
            upstream = await self._enterprise(principal, project_id, headers.get("x-tarx-llm-key-id"))
        queue = QueueClass.deep if cls == QueueClass.deep else QueueClass.interactive
        asked = (headers.get("x-tarx-queue-class") or "").strip().lower()
        if asked:
            if asked not in QueueClass.__members__:
                raise InvalidRequest(f"x-tarx-queue-class must be one of {list(QueueClass.__members__)}")
            queue = QueueClass(asked)
        return Plan(policy, plane, tier, queue, upstream, max_latency, max_joules, project_id, principal)

    async def _attribution(self, principal: Principal | None, value: str | None, must_exist: bool) -> str | None:
        """The project a call is attributed to. Seed 000: for the local plane the header is a label, counted in
        /v1/usage as given when it names none of the caller's projects; only the enterprise plane, which needs
        the project's own upstream, requires the project to exist."""
        value = (value or "").strip()[:200] or None
        if value is None:
            return None
        if principal is not None:
            try:
                by_id = value.startswith("proj_")
                ctx = await resolve_project(self.db, principal, value if by_id else None, None if by_id else value)
                return ctx.project.id
            except NotFound:
                if must_exist:
                    raise
        elif must_exist:
            raise NotFound(f"Project '{value}' was not found.")
        return value

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

    async def _enterprise(self, principal: Principal | None, project_id: str | None,
                          key_id: str | None = None) -> Upstream:
        if principal is None:
            raise TarxError("Enterprise execution needs an API key.", status=401, type="authentication_error",
                            code="tarx_api_key_required")
        if project_id is None:
            projects = await identity.projects_for(self.db, principal.user.id)
            if len(projects) != 1:
                raise InvalidRequest("Name the project whose enterprise upstream to use with x-tarx-project-id.",
                                     code="project_required")
            project_id = projects[0].id
        # An agent names its own BYOK key (x-tarx-llm-key-id); anything else gets the project's newest one.
        row = await secret_store.enterprise_upstream(self.db, project_id, (key_id or "").strip() or None)
        if row is None:
            raise NotFound("This project has no enterprise upstream: add a BYOK LLM key with a base_url."
                           if not key_id else f"LLM key '{key_id}' is not a key with a base_url in this project.",
                           code="upstream_not_configured")
        return Upstream("enterprise", row["base_url"], self.box.open(row["ciphertext"]), row["provider"] or "byok")

    async def _owner_configured(self) -> Upstream | None:
        if not self._configured_loaded:
            row = await upstreams.get(self.db, "supercomputer")
            self._configured = None if row is None else Upstream(
                "supercomputer", row["url"], self.box.open(row["key_cipher"]) if row["key_cipher"] else None,
                "tarx-supercomputer")
            self._configured_loaded = True
        return self._configured

    async def hosted_configured(self) -> bool:
        return bool(self.settings.supercomputer_url) or await self._owner_configured() is not None

    async def set_hosted(self, url: str, key: str | None) -> None:
        await upstreams.put(self.db, "supercomputer", url.rstrip("/"), self.box.seal(key) if key else None)
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

    async def complete(self, plan: Plan, body: ChatCompletionRequest) -> ChatResult:
        """Run the call to the end on its plane (or local, on fallback) and return its recorded result."""
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
                    outcome = _Outcome(_from_upstream(data, plan.call_id), plan.plane,
                                       upstream_route=data.get("tarx_route"))
                    return await self._record(plan, body, False, outcome)
                fallback_reason = f"upstream_status_{r.status_code}"
            except httpx.TimeoutException:
                fallback_reason = "upstream_timeout"
            except (httpx.TransportError, ValueError, KeyError, TypeError, AttributeError, IndexError):
                fallback_reason = "upstream_unavailable"
            finally:
                self.upstream_in_flight[slot] -= 1
        # Local: the plane asked for, or the fallback (local is inside every privacy boundary).
        before = self.meter.read()
        events = await self._start_local(plan, body, False, before, fallback_reason)
        generated: Generated | None = None
        async with aclosing(events):  # a caller cancelled (client gone) stops the generation at once
            async for event in events:
                if isinstance(event, Generated):
                    generated = event
        assert generated is not None
        self._check_budget(plan, generated)
        joules = self.meter.joules(before, self.meter.read(), generated.cpu_seconds)
        return await self._record(plan, body, False, _Outcome(generated, "local", joules, fallback_reason))

    def _check_budget(self, plan: Plan, generated: Generated) -> None:
        if generated.limited_by == "max_joules" and generated.completion_tokens == 0:
            raise TarxError(f"x-tarx-max-joules={plan.max_joules:g} does not cover even the prompt on this route.",
                            status=422, type="invalid_request_error", code="joules_budget_exceeded")

    async def stream(self, plan: Plan, body: ChatCompletionRequest) -> AsyncIterator[ChatEvent]:
        """Start the call and return its events, ending with `Final`. Raises before returning when the call
        cannot start anywhere, so the caller can still answer with an error status."""
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
        before = self.meter.read()
        events = await self._start_local(plan, body, True, before, fallback_reason)
        return self._local_events(plan, body, events, before, fallback_reason)

    async def _start_local(self, plan: Plan, body: ChatCompletionRequest, stream: bool, before: Reading,
                           fallback_reason: str | None) -> AsyncIterator[Any]:
        async def abandoned(generated: Generated) -> None:
            # The caller left mid-generation: the tokens, CPU time and Joules spent still count.
            joules = self.meter.joules(before, self.meter.read(), generated.cpu_seconds)
            await self._record(plan, body, stream, _Outcome(generated, "local", joules, fallback_reason))

        return await self.local.start(body, plan.queue_class, plan.limits(self.settings.cpu_watts_per_core),
                                      plan.call_id, abandoned)

    async def _local_events(self, plan: Plan, body: ChatCompletionRequest, events: AsyncIterator[Any],
                            before: Reading, fallback_reason: str | None) -> AsyncIterator[ChatEvent]:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Generated):
                    joules = self.meter.joules(before, self.meter.read(), event.cpu_seconds)
                    outcome = _Outcome(event, "local", joules, fallback_reason)
                    yield Final(await self._record(plan, body, True, outcome))
                else:
                    yield event

    async def _relay(self, plan: Plan, body: ChatCompletionRequest, response: httpx.Response, slot: str
                     ) -> AsyncIterator[ChatEvent]:
        """An upstream's OpenAI stream as typed events; its tool calls are assembled by index and released whole."""
        usage: dict[str, Any] = {}
        upstream_route = None
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish = "stop"
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                try:
                    chunk = json.loads(line[5:])
                except ValueError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                upstream_route = chunk.get("tarx_route") or upstream_route
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                        yield TextDelta(delta["content"])
                    for call in delta.get("tool_calls") or []:
                        slot_call = calls.setdefault(int(call.get("index", len(calls))),
                                                     {"id": "", "name": "", "arguments": ""})
                        fn = call.get("function") or {}
                        slot_call["id"] = call.get("id") or slot_call["id"]
                        slot_call["name"] += fn.get("name") or ""
                        slot_call["arguments"] += fn.get("arguments") or ""
                    finish = choice.get("finish_reason") or finish
        finally:
            await response.aclose()
            self.upstream_in_flight[slot] -= 1
        tool_calls = [ToolCall(c["id"] or "call_" + secrets.token_hex(12), c["name"], c["arguments"])
                      for _, c in sorted(calls.items())]
        if tool_calls:
            yield ToolCalls(tool_calls)
        generated = Generated(plan.call_id, "".join(parts), tool_calls, finish,
                              int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), 0.0)
        yield Final(await self._record(plan, body, True, _Outcome(generated, plan.plane,
                                                                  upstream_route=upstream_route)))

    async def _record(self, plan: Plan, body: ChatCompletionRequest, stream: bool, outcome: _Outcome
                      ) -> ChatResult:
        gen = outcome.generated
        joules = outcome.joules
        if joules is None:  # the upstream did the work: its evidence carries the joules, when it sends any
            up = outcome.upstream_route if isinstance(outcome.upstream_route, dict) else {}
            raw, est = up.get("raw_joules"), float(up.get("estimated_joules") or 0.0)
            joules = Joules(raw, est, float(up.get("billable_joules") or billable(raw, est)),
                            f"upstream:{up.get('joules_method', 'unreported')}")
        local = outcome.plane == "local"
        principal = plan.principal
        log = InferenceRecord(
            id=gen.id, kind="chat", model=body.model,
            queue_class=plan.queue_class.value if local else self._slot(plan), stream=stream,
            prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
            finish_reason=gen.finish_reason, queue_ms=gen.queue_ms, ttft_ms=gen.ttft_ms,
            total_ms=gen.total_ms, cpu_seconds=gen.cpu_seconds if local else None)
        rec = await evidence.record_call(self.db, log, plan.evidence_id, {
            "execution_plane": outcome.plane, "policy": plan.policy, "privacy_tier": plan.tier, "model": body.model,
            "provider": plan.upstream.provider if not local and plan.upstream else "tarx-local",
            "latency_ms": round((time.perf_counter() - plan.started) * 1000, 1),
            **joules.evidence(), "fallback": outcome.fallback_reason is not None,
            "fallback_reason": outcome.fallback_reason, "limited_by": gen.limited_by, "stream": stream,
            "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "key_id": principal.key_id if principal else None, "user_id": principal.user.id if principal else None,
            "project_id": plan.project_id,
        })
        self.local.engine.metrics.tokens(body.model, gen.prompt_tokens, gen.completion_tokens)
        return ChatResult(id=gen.id, model=body.model, created=int(time.time()), text=gen.text,
                          tool_calls=gen.tool_calls, finish_reason=gen.finish_reason,
                          usage=Usage(gen.prompt_tokens, gen.completion_tokens), route=evidence_of(rec),
                          logprobs=gen.logprobs)

    def capacity(self) -> dict[str, dict[str, Any]]:
        classes = self.local.engine.capacity()
        classes.setdefault("enterprise", {"depth": 0, "in_flight": 0, "limit": self.settings.queue_max,
                                          "backpressure_state": "normal"})
        for name, n in self.upstream_in_flight.items():
            classes[name]["upstream_in_flight"] = n
            classes[name]["in_flight"] += n
        return classes


def _from_upstream(data: dict[str, Any], call_id: str) -> Generated:
    """An upstream's `chat.completion` as what was generated."""
    choice = data["choices"][0]
    message = choice.get("message") or {}
    calls = [ToolCall(c.get("id") or "call_" + secrets.token_hex(12), c["function"]["name"],
                      c["function"].get("arguments") or "{}") for c in message.get("tool_calls") or []]
    usage = data.get("usage") or {}
    return Generated(call_id, message.get("content") or "", calls,
                     choice.get("finish_reason") or "stop", int(usage.get("prompt_tokens") or 0),
                     int(usage.get("completion_tokens") or 0), 0.0)


def evidence_of(rec: dict[str, Any]) -> RouteEvidence:
    """A stored route evidence record as the typed value."""
    return RouteEvidence(
        evidence_id=rec["id"], execution_plane=rec["execution_plane"], policy=rec["policy"],
        privacy_tier=rec["privacy_tier"], model=rec["model"], provider=rec["provider"],
        latency_ms=rec["latency_ms"],
        joules=Joules(rec["raw_joules"], rec["estimated_joules"], rec["billable_joules"], rec["joules_method"]),
        fallback=rec["fallback"], fallback_reason=rec["fallback_reason"], limited_by=rec["limited_by"],
        recorded_at=rec["time"])


__all__ = ["ALLOWED_TIERS", "POLICIES", "ROUTE_HEADERS", "TIERS", "Plan", "PlaneRouter", "evidence_of"]
