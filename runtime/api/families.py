"""Which API family a path belongs to: the one place that decides envelopes, rate limits and the v0 header.

- `openai`: `/v1/*`, `/api/keys`, `/api/version`, `/api/account`, `/api/planes` (seed 000)
- `platform`: `/api/v1/*` (seed 001)
- `compute`: `/api/compute/*` and `/api/auth/*` (seed 003)
- `compute_v0`: `/v0/*` (seed 004)
"""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    openai = "openai"
    platform = "platform"
    compute = "compute"
    compute_v0 = "compute_v0"

    @property
    def compute_envelope(self) -> bool:
        """Seeds 003 and 004 share the `{"status", "message", "payload"}` envelope."""
        return self in (Family.compute, Family.compute_v0)


PLATFORM_PREFIX = "/api/v1"
V0_PREFIX = "/v0/"
# The node plane (heartbeat, poll, log push) is machine traffic paced by the protocol itself; artifact URLs carry
# their own authorization. Seed 003's user limits do not apply to them.
UNLIMITED_COMPUTE = ("/api/compute/nodes/", "/api/compute/artifacts/")
# GET routes that stream events: EventSource cannot send headers, so seed 001 allows `?token=` on them only.
SSE_SUFFIXES = ("/stream", "/logs", "/events")


def family(path: str) -> Family:
    if path == PLATFORM_PREFIX or path.startswith(PLATFORM_PREFIX + "/"):
        return Family.platform
    if path.startswith(V0_PREFIX):
        return Family.compute_v0
    if path.startswith(("/api/compute/", "/api/auth/")):
        return Family.compute
    return Family.openai


def rate_limit_family(path: str) -> str | None:
    """The rate-limit policy a path counts against, or None when none applies."""
    fam = family(path)
    if fam is Family.platform:
        return "platform"
    if fam is Family.compute and path.startswith("/api/compute/") and not path.startswith(UNLIMITED_COMPUTE):
        return "compute"
    return None


def accepts_query_token(method: str, path: str) -> bool:
    return method == "GET" and path.endswith(SSE_SUFFIXES)
