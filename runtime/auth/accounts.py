"""Account operations behind every API family: keys, entitlements, projects, members, secrets, sessions.

Each mutation and its audit record commit in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.auth import expiry, keys, reach
from runtime.auth.access import ADMIN, OWNER, READ, PermissionDenied, ProjectContext, require, require_owner
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Authenticator, Principal
from runtime.auth.secretbox import SecretBox, mask
from runtime.auth.signin_limits import SigninLimits
from runtime.errors import Conflict, InvalidRequest, NotFound, TarxError
from runtime.store import Database, api_keys, audit, identity, otp_codes
from runtime.store import secrets as secret_store
from runtime.store.api_keys import ApiKey
from runtime.store.audit import Actor
from runtime.store.db import iso
from runtime.store.identity import Project, User

log = logging.getLogger("tarx.auth")

TARX_SCOPES = ("developer_runtime", "supercomputer")
HOSTED_ENTITLEMENT = "supercomputer"
ENTITLEMENTS = (HOSTED_ENTITLEMENT,)
OTP_TTL = timedelta(minutes=10)


@dataclass
class MintedKey:
    key: ApiKey
    plaintext: str

    def public(self) -> dict[str, Any]:
        return {**self.key.public(), "key": self.plaintext}


class Accounts:
    def __init__(self, db: Database, box: SecretBox, auth: Authenticator, limits: SigninLimits | None = None
                 ) -> None:
        self.db = db
        self.box = box
        self.auth = auth
        self.limits = limits or SigninLimits()
        # Verifications run one at a time, so concurrent guesses cannot all pass the lockout check (and the
        # code's attempt count) before the first failure is counted.
        self._verifying = asyncio.Lock()

    # ---- keys -------------------------------------------------------------------------------------------------

    async def create_key(self, principal: Principal, kind: KeyKind, name: str, *, scope: str | None = None,
                         project_id: str | None = None, quotas: dict[str, Any] | None = None,
                         subject_id: str | None = None, expires_at: str | None = None) -> MintedKey:
        if expires_at is not None:  # RFC 3339, in the future; stored as UTC `…Z` (400 invalid_expiry otherwise)
            expires_at = expiry.normalise(expires_at)
        if kind is KeyKind.tarx:
            if scope not in TARX_SCOPES:
                raise InvalidRequest(f"scope must be one of {list(TARX_SCOPES)}", code="invalid_scope")
            if scope == "supercomputer" and HOSTED_ENTITLEMENT not in await identity.entitlements(
                    self.db, principal.user.id):
                raise TarxError("A supercomputer key needs a hosted Supercomputer entitlement on the account.",
                                status=402, type="insufficient_quota", code="hosted_entitlement_required",
                                extra={"error_code": "PAYMENT_REQUIRED"})
        quotas, expires_at = reach.mint_bounds(principal, kind, scope=scope, project_id=project_id, quotas=quotas,
                                               expires_at=expires_at)
        plaintext = keys.generate(kind)
        async with self.db.transaction() as tx:
            key = await api_keys.insert(
                tx, kind=kind.value, user_id=principal.user.id, name=name, key_hash=keys.hash_key(plaintext),
                display_prefix=keys.display_prefix(plaintext), project_id=project_id, scope=scope, quotas=quotas,
                subject_id=subject_id, expires_at=expires_at)
            await audit.write(tx, principal.actor, "key.create", target=key.id, project_id=project_id,
                              detail={"kind": kind.value, "scope": scope, "name": name})
        return MintedKey(key, plaintext)

    async def list_keys(self, principal: Principal, kinds: tuple[KeyKind, ...]) -> list[ApiKey]:
        """The caller's keys of these kinds; a workspace-bound key sees only its workspace's."""
        return await api_keys.list_for(self.db, principal.user.id, tuple(k.value for k in kinds),
                                       project_id=_bound(principal))

    async def revoke_key(self, principal: Principal, key_id: str, kinds: tuple[KeyKind, ...]) -> ApiKey:
        key = await api_keys.get(self.db, key_id)
        bound = _bound(principal)
        # Another user's key, a key of another family or (for a workspace-bound key) of another workspace is
        # "not found": never confirm it exists.
        if (key is None or key.user_id != principal.user.id or key.kind not in {k.value for k in kinds}
                or (bound is not None and key.project_id != bound)):
            raise NotFound(f"Key '{key_id}' was not found.", extra={"error_code": "NOT_FOUND"})
        async with self.db.transaction() as tx:
            await api_keys.revoke(tx, key.id)
            await audit.write(tx, principal.actor, "key.revoke", target=key.id, project_id=key.project_id,
                              detail={"kind": key.kind})
        self.auth.invalidate()
        revoked = await api_keys.get(self.db, key_id)
        assert revoked is not None
        return revoked

    # ---- entitlements -----------------------------------------------------------------------------------------

    async def entitlements(self, principal: Principal) -> list[str]:
        """The caller's own account entitlements."""
        return await identity.entitlements(self.db, principal.user.id)

    async def set_entitlement(self, principal: Principal, name: str, granted: bool, email: str | None) -> list[str]:
        require_owner(principal, "Only the runtime's owner can change entitlements.")
        if name not in ENTITLEMENTS:
            raise InvalidRequest(f"entitlement must be one of {list(ENTITLEMENTS)}", code="invalid_entitlement")
        target = principal.user if email is None else await identity.user_by_email(self.db, email)
        if target is None:
            raise NotFound(f"No account with email '{email}'.", extra={"error_code": "NOT_FOUND"})
        async with self.db.transaction() as tx:
            if granted:
                await identity.grant(tx, target.id, name, principal.user.id)
            else:
                await identity.revoke_entitlement(tx, target.id, name)
            await audit.write(tx, principal.actor, "entitlement.grant" if granted else "entitlement.revoke",
                              target=target.id, detail={"entitlement": name})
        return await identity.entitlements(self.db, target.id)

    # ---- projects and members ----------------------------------------------------------------------------------

    async def projects(self, principal: Principal) -> list[Project]:
        """The projects the caller is a member of, each with the caller's role, oldest first."""
        return await identity.projects_for(self.db, principal.user.id)

    async def create_project(self, principal: Principal, name: str, slug: str | None = None,
                             description: str = "", default_region: str = "local") -> Project:
        slug = identity.slugify(slug or name)
        async with self.db.transaction() as tx:
            if await identity.slug_taken(tx, principal.user.id, slug):
                raise Conflict(f"You already have a project with slug '{slug}'.", extra={"error_code": "CONFLICT"})
            project = await identity.create_project(tx, principal.user.id, name, slug, description, default_region)
            await audit.write(tx, principal.actor, "project.create", target=project.id, project_id=project.id,
                              detail={"name": name, "slug": slug})
        return project

    async def update_project(self, ctx: ProjectContext, fields: dict[str, Any]) -> Project:
        await require(self.db, ctx, ADMIN, "project.update")
        async with self.db.transaction() as tx:
            await identity.update_project(tx, ctx.project.id, fields)
            await audit.write(tx, ctx.principal.actor, "project.update", target=ctx.project.id,
                              project_id=ctx.project.id, detail=fields)
        updated = await identity.project_for(self.db, ctx.principal.user.id, ctx.project.id)
        assert updated is not None
        return updated

    async def members(self, ctx: ProjectContext) -> list[dict[str, Any]]:
        await require(self.db, ctx, READ, "member.list")
        return await identity.members(self.db, ctx.project.id)

    async def add_member(self, ctx: ProjectContext, email: str, role: str, name: str | None = None
                         ) -> dict[str, Any]:
        await require(self.db, ctx, ADMIN, "member.add")
        if role == OWNER and ctx.role != OWNER:
            raise PermissionDenied("Only an owner can make another owner.")
        async with self.db.transaction() as tx:
            user = await identity.user_by_email(tx, email)
            if user is None:  # invite: a local account, which signs in with a one-time code
                user = await identity.create_user(tx, email, name or email.split("@")[0])
            await identity.set_member(tx, ctx.project.id, user.id, role)
            await audit.write(tx, ctx.principal.actor, "member.add", target=user.id, project_id=ctx.project.id,
                              detail={"email": user.email, "role": role})
        return {"user_id": user.id, "email": user.email, "name": user.name, "role": role}

    async def remove_member(self, ctx: ProjectContext, user_id: str) -> None:
        await require(self.db, ctx, ADMIN, "member.remove")
        if user_id == ctx.project.owner_id:
            raise InvalidRequest("The project's creator cannot be removed.", code="owner_required")
        async with self.db.transaction() as tx:
            if not await identity.remove_member(tx, ctx.project.id, user_id):
                raise NotFound(f"'{user_id}' is not a member of this project.", extra={"error_code": "NOT_FOUND"})
            await audit.write(tx, ctx.principal.actor, "member.remove", target=user_id, project_id=ctx.project.id)

    # ---- secrets: BYOK LLM keys and credentials -----------------------------------------------------------------

    async def list_secrets(self, ctx: ProjectContext, kind: str) -> list[dict[str, Any]]:
        await require(self.db, ctx, READ, f"{kind}.list")
        return await secret_store.list_for(self.db, ctx.project.id, kind)

    async def add_secret(self, ctx: ProjectContext, kind: str, name: str, value: str, provider: str | None,
                         base_url: str | None = None) -> dict[str, Any]:
        await require(self.db, ctx, ADMIN, f"{kind}.create")
        async with self.db.transaction() as tx:
            if await secret_store.exists(tx, ctx.project.id, kind, name):
                raise Conflict(f"A {kind.replace('_', ' ')} named '{name}' already exists.",
                               extra={"error_code": "CONFLICT"})
            row = await secret_store.insert(tx, kind=kind, project_id=ctx.project.id, name=name, provider=provider,
                                            masked=mask(value), ciphertext=self.box.seal(value),
                                            created_by=ctx.principal.user.id, base_url=base_url)
            await audit.write(tx, ctx.principal.actor, f"{kind}.create", target=row["id"],
                              project_id=ctx.project.id, detail={"name": name, "provider": provider})
        return row

    async def delete_secret(self, ctx: ProjectContext, kind: str, secret_id: str) -> None:
        await require(self.db, ctx, ADMIN, f"{kind}.delete")
        async with self.db.transaction() as tx:
            if not await secret_store.delete(tx, ctx.project.id, kind, secret_id):
                raise NotFound(f"'{secret_id}' was not found in this project.", extra={"error_code": "NOT_FOUND"})
            await audit.write(tx, ctx.principal.actor, f"{kind}.delete", target=secret_id, project_id=ctx.project.id)

    # ---- one-time codes and sessions ---------------------------------------------------------------------------

    async def request_code(self, email: str, client: str | None) -> str | None:
        """Issue a one-time code for an existing account; it is delivered on the runtime's log (no mail here).

        Throttled per email and per client address (429), known or not. Returns the code for in-process callers
        (the console shows it); the HTTP answer never includes it.
        """
        self.limits.code_requested(email, client)
        user = await identity.user_by_email(self.db, email)
        if user is None:
            log.info("one-time code requested for unknown account %s; nothing sent", email)
            return None
        code = f"{secrets.randbelow(10**6):06d}"
        async with self.db.transaction() as tx:
            await otp_codes.replace(tx, user.id, _code_hash(user.id, code), iso(datetime.now(UTC) + OTP_TTL))
            await audit.write(tx, Actor(user.id, None, client), "session.code_requested", target=user.id)
        log.warning("one-time sign-in code for %s: %s (valid %d minutes)", user.email, code,
                    OTP_TTL.seconds // 60)
        return code

    async def verify_code(self, email: str, code: str, client: str | None) -> tuple[str, datetime, User]:
        """A session for the right live code; 401 otherwise, and 429 while the email or address is locked out
        (runtime/auth/signin_limits.py), whatever the code."""
        self.limits.check_verify(email, client)
        async with self._verifying:
            self.limits.check_verify(email, client)  # failures counted while this one waited
            found = await self._check_code(email, code)
            if found is None:
                self.limits.failed(email, client)
                raise TarxError("The code is not valid.", status=401, type="authentication_error",
                                code="otp_invalid")
            user, code_id = found
            async with self.db.transaction() as tx:
                await otp_codes.use(tx, code_id)
                await audit.write(tx, Actor(user.id, None, client), "session.create", target=user.id)
            self.limits.succeeded(email)
        token, expires = self.auth.issue_session(user)
        return token, expires, user

    async def _check_code(self, email: str, code: str) -> tuple[User, str] | None:
        """The account and its live code's id when `code` is that code; None for anything else. A wrong guess
        counts against the live code, which is void after `code_attempts` of them."""
        user = await identity.user_by_email(self.db, email)
        if user is None:
            return None
        live = await otp_codes.live(self.db, user.id)
        if live is None or expiry.has_passed(live.expires_at) or live.attempts >= self.limits.policy.code_attempts:
            return None
        if not secrets.compare_digest(live.code_hash, _code_hash(user.id, code)):
            await otp_codes.count_attempt(self.db, live.id)
            return None
        return user, live.id


def _bound(principal: Principal) -> str | None:
    """The workspace a compute or node key is bound to (None for the user's own credentials and TARX keys)."""
    return principal.key.project_id if principal.key is not None else None


def _code_hash(user_id: str, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{code}".encode()).hexdigest()


__all__ = ["Accounts", "MintedKey"]
