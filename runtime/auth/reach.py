"""What each kind of credential may reach, and what a key may mint.

A credential is a sign-in session (`jwt`) or a key of one kind (`platform`, `tarx`, `compute`, `node`). Every
route declares one `Reach` (runtime/api/reach.py); a caller whose kind is not in it is refused before the handler
runs, whatever their role. Inside its reach a caller is still held to their role in the project (access.py).

- sessions and platform keys are the user's own credentials: every family, by role (seed 001: a platform key
  "authenticates as you"; the console and CLI run on the owner's platform key).
- TARX keys (`tarx_…`): `/v1/*` and `/api/keys` only (seed 000).
- compute keys (`tnv_…`): the compute API (`/api/compute/*` jobs, nodes, artifacts, billing, keys; `/v0/*` jobs,
  agents, billing, webhooks), in their own workspace; never projects, members, audit or other families.
- node keys (`tnn_…`): the node plane only (heartbeat, poll, result, logs, drain, rotate-key, artifact presign for
  jobs the node holds).

Minting never yields more than the minting key holds: a key mints only keys of kinds it may mint, a developer TARX
key never a supercomputer one, a compute key only compute keys within its own quotas and workspace, and no key
outlives the key that mints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.auth import expiry
from runtime.auth.access import PermissionDenied
from runtime.auth.keys import KeyKind
from runtime.auth.principal import AuthError, Principal
from runtime.store import Database, audit

SESSION = "jwt"
KINDS = (SESSION, KeyKind.platform.value, KeyKind.tarx.value, KeyKind.compute.value, KeyKind.node.value)

_LABELS = {SESSION: "A sign-in session", "platform": "A platform key (sk-tarx-…)", "tarx": "A TARX key (tarx_…)",
           "compute": "A compute key (tnv_…)", "node": "A node key (tnn_…)"}
_SCOPE = {"tarx": "TARX keys reach only /v1/* and /api/keys",
          "compute": "compute keys reach only the compute API (/api/compute/*, /v0 jobs, agents, billing and "
                     "webhooks) of their workspace",
          "node": "node keys reach only the node plane"}


@dataclass(frozen=True)
class Reach:
    """Who may call a route: `kinds` of credential, or anyone (`public`: the route takes no credential)."""

    name: str
    kinds: frozenset[str]
    public: bool = False

    def admits(self, kind: str) -> bool:
        return self.public or kind in self.kinds

    @property
    def node_only(self) -> bool:
        return self.kinds == {KeyKind.node.value}


_USER = frozenset({SESSION, KeyKind.platform.value})
PUBLIC = Reach("public", frozenset(KINDS), public=True)
USER = Reach("user", _USER)  # the user's own credentials only: every family, by role
TARX = Reach("tarx", _USER | {KeyKind.tarx.value})  # seed 000: /v1/* and /api/keys
COMPUTE = Reach("compute", _USER | {KeyKind.compute.value})  # the compute API of a workspace
WORKER = Reach("worker", _USER | {KeyKind.compute.value, KeyKind.node.value})  # a node acting on itself, or a user
NODE = Reach("node", frozenset({KeyKind.node.value}))  # the node plane: only a node's own key


def kind_of(principal: Principal) -> str:
    return principal.via


async def enforce(db: Database, principal: Principal, reach: Reach, method: str, path: str) -> None:
    """Refuse a caller outside the route's reach: 401 on the node plane (the credential is not a node's), else
    403, audited against the key's workspace when it has one."""
    kind = kind_of(principal)
    if reach.admits(kind):
        return
    if reach.node_only:
        raise AuthError("This endpoint needs a node key (tnn_…), sent as X-API-Key.", "node_key_required")
    key = principal.key
    async with db.transaction() as tx:
        await audit.write(tx, principal.actor, "key.out_of_reach", target=principal.key_id,
                          project_id=key.project_id if key else None, outcome="denied",
                          detail={"kind": kind, "method": method, "path": path})
    raise PermissionDenied(f"{_LABELS.get(kind, 'This credential')} cannot call {method} {path}: "
                           f"{_SCOPE.get(kind, 'it is outside its reach')}.")


# ---- minting -------------------------------------------------------------------------------------------------

MINTS: dict[str, frozenset[str]] = {
    SESSION: frozenset(k.value for k in KeyKind),
    KeyKind.platform.value: frozenset(k.value for k in KeyKind),
    KeyKind.tarx.value: frozenset({KeyKind.tarx.value}),
    KeyKind.compute.value: frozenset({KeyKind.compute.value}),
    KeyKind.node.value: frozenset(),
}
_CEILINGS = ("maxJobsPerHour", "maxConcurrentJobs")


def mint_bounds(principal: Principal, kind: KeyKind, *, scope: str | None, project_id: str | None,
                quotas: dict[str, Any] | None, expires_at: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The quotas and expiry a new key gets, never more than the minting key holds; 403 when asked for more."""
    minter = kind_of(principal)
    if kind.value not in MINTS.get(minter, frozenset()):
        raise PermissionDenied(f"{_LABELS.get(minter, 'This credential')} cannot create {kind.value} keys.")
    key = principal.key
    if key is None:  # a session: the user's own reach
        return quotas, expires_at
    if minter == KeyKind.tarx.value and key.scope != "supercomputer" and scope == "supercomputer":
        raise PermissionDenied("A developer_runtime key cannot create a supercomputer key.")
    if minter == KeyKind.compute.value:
        if project_id != key.project_id:
            raise PermissionDenied("A compute key creates keys only for its own workspace.")
        quotas = _within(dict(quotas or {}), key.quotas or {})
    if key.expires_at is not None:  # compared as instants: the minter's row may predate the one stored format
        if expires_at is None:
            expires_at = expiry.canonical(key.expires_at)
        elif expiry.later(expires_at, key.expires_at):
            raise PermissionDenied("A key cannot outlive the key that creates it "
                                   f"(expires {expiry.canonical(key.expires_at)}).")
    return quotas or None, expires_at


def _within(asked: dict[str, Any], held: dict[str, Any]) -> dict[str, Any]:
    """A compute key's quotas bounded by the minting key's: unset means the minter's own limit."""
    for name in _CEILINGS:
        limit = held.get(name)
        if limit is None:
            continue
        if asked.get(name) is None:
            asked[name] = limit
        elif asked[name] > limit:
            raise PermissionDenied(f"{name} cannot exceed this key's own ({limit}).")
    allowed = held.get("allowedJobTypes")
    if allowed is not None:
        if asked.get("allowedJobTypes") is None:
            asked["allowedJobTypes"] = list(allowed)
        elif not set(asked["allowedJobTypes"]) <= set(allowed):
            raise PermissionDenied(f"allowedJobTypes cannot go beyond this key's own ({allowed}).")
    return asked
