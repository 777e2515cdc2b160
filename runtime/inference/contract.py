"""What the runtime says about its routes: the route catalogue (/v1/routes), the evidence contract
(/v1/evidence) and usage truth (/v1/usage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.auth.principal import Principal
from runtime.config import Settings
from runtime.inference.energy import EnergyMeter
from runtime.inference.planes import ALLOWED_TIERS, DEFAULT_POLICY, DEFAULT_TIER, POLICIES, ROUTE_HEADERS, TIERS
from runtime.store import Database, evidence

EVIDENCE_FIELDS = {
    "execution_plane": "local | supercomputer | enterprise: where the completion actually ran",
    "policy": "the x-tarx-execution-policy applied",
    "privacy_tier": "the x-tarx-privacy-tier applied (personal | private | mesh_safe | public)",
    "model": "the model requested",
    "provider": "tarx-local, tarx-supercomputer, or the BYOK provider of an enterprise upstream",
    "latency_ms": "time from the request's arrival to the end of the completion",
    "raw_joules": "energy measured (RAPL package counters, NVML GPU energy), null when nothing was measurable",
    "estimated_joules": "CPU time of the work x cpu_watts_per_core",
    "billable_joules": "raw when measured, else estimated, rounded up to a whole joule (at least 1)",
    "fallback": "true when the request ran somewhere other than its policy asked",
    "fallback_reason": "upstream_unavailable | upstream_timeout | upstream_status_NNN, or null",
    "evidence_id": "the stored record: GET /v1/evidence/{evidence_id}; also in the x-tarx-evidence-id header",
    "joules_method": "rapl | nvml | rapl+nvml | cpu_time_model | upstream:<method>",
    "limited_by": "max_latency_ms or max_joules when a limit cut the output short, else null",
}

EVIDENCE_CONTRACT: dict[str, Any] = {
    "object": "evidence_contract",
    "request_headers": {
        "x-tarx-execution-policy": {"values": list(POLICIES), "default": DEFAULT_POLICY},
        "x-tarx-privacy-tier": {"values": list(TIERS), "default": DEFAULT_TIER,
                                "allowed_policies": {t: [p for p, ts in ALLOWED_TIERS.items() if t in ts]
                                                     for t in TIERS}},
        "x-tarx-project-id": {"meaning": "attribute usage to this project (id or slug of one of yours)"},
        "x-tarx-llm-key-id": {"meaning": "enterprise plane: the project's BYOK LLM key to use (default: its newest "
                                         "key with a base_url)"},
        "x-tarx-max-joules": {"meaning": "energy budget; generation stops when the work reaches it (limited_by), "
                                         "and a budget below the prompt's cost fails with 422"},
        "x-tarx-max-latency-ms": {"meaning": "latency budget; an upstream slower than this falls back to local, "
                                             "and local generation stops at the deadline (limited_by)"},
    },
    "response": {"non_stream": "top-level tarx_route object", "stream": "tarx_route in the last chunk before "
                 "[DONE]", "header": "x-tarx-evidence-id"},
    "tarx_route_schema": {"type": "object", "properties": {k: {"description": v} for k, v in EVIDENCE_FIELDS.items()},
                          "required": list(EVIDENCE_FIELDS)},
    "cors_allowed_headers": list(ROUTE_HEADERS),
}


def routing_catalogue(settings: Settings, hosted_configured: bool) -> list[dict[str, Any]]:
    out = []
    for policy, (plane, cls) in POLICIES.items():
        needs: dict[str, Any] = {"api_key": settings.inference_needs_key if plane == "local" else True}
        if plane == "supercomputer":
            needs.update(key_scope="supercomputer", entitlement="supercomputer",
                         upstream="settings supercomputer_url or PUT /api/planes/supercomputer")
        if plane == "enterprise":
            needs.update(upstream="a BYOK LLM key with a base_url in the project (POST /api/v1/llm-keys)")
        out.append({"policy": policy, "execution_plane": plane,
                    "queue_class": "enterprise" if plane == "enterprise" else str(cls),
                    "privacy_tiers": list(ALLOWED_TIERS[policy]), "requires": needs,
                    "available": plane != "supercomputer" or hosted_configured,
                    "fallback": "local" if plane != "local" else None})
    return out


async def usage_report(db: Database, settings: Settings, meter: EnergyMeter, caller: Principal) -> dict[str, Any]:
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    since = month.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    mine = await evidence.totals(db, since, "AND user_id = ?", (caller.user.id,))
    key = await evidence.totals(db, since, "AND key_id = ?", (caller.key_id,)) if caller.key_id else None
    return {
        "object": "usage",
        "period": {"start": since, "end": (month + timedelta(days=32)).replace(day=1).isoformat().replace(
            "+00:00", "Z")},
        "joules_used_this_month": mine["joules"],
        "joules_plan": settings.monthly_joules_plan,
        "joules_remaining": max(settings.monthly_joules_plan - mine["joules"], 0.0),
        "requests_this_month": mine["requests"],
        "daily": await evidence.daily(db, since, caller.user.id),
        "key": {"key_id": caller.key_id, **key} if key else None,
        "keys": await evidence.grouped(db, "key_id", since, caller.user.id),
        "projects": await evidence.grouped(db, "project_id", since, caller.user.id),
        "source_descriptor": {
            "source": "route_evidence ledger in this runtime's SQLite database",
            "scope": "requests made with your keys or sessions; anonymous local calls are not attributed",
            "ledger_keys": ["key_id", "project_id (from x-tarx-project-id)", "day"],
            "joules_methods_available": meter.methods,
            "billing_grade": False,
        },
    }
