"""Who is calling: a key (any kind) or a JWT session, resolved to a user. Errors carry seed 000's codes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runtime.auth import expiry, keys
from runtime.auth.secretbox import SecretBox
from runtime.errors import TarxError
from runtime.store import Database, api_keys, identity
from runtime.store.api_keys import ApiKey
from runtime.store.audit import Actor
from runtime.store.identity import User

JWT_ALGORITHM = "HS256"
TOUCH_EVERY_SECONDS = 30  # last_used_at is refreshed at most this often per key, to keep writes off hot paths
CACHE_SECONDS = 2.0  # verified keys are remembered this long; any key change in this process clears the cache


class AuthError(TarxError):
    status, type = 401, "authentication_error"

    def __init__(self, message: str, code: str, platform_code: str = "AUTH_REQUIRED") -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"},
                         extra={"error_code": platform_code})


def required() -> AuthError:
    return AuthError("Authentication required", "tarx_api_key_required")


@dataclass
class Principal:
    user: User
    via: str  # tarx | platform | compute | node | jwt
    key: ApiKey | None
    client: str | None

    @property
    def actor(self) -> Actor:
        return Actor(self.user.id, self.key.id if self.key else None, self.client)

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None


class Authenticator:
    def __init__(self, db: Database, box: SecretBox, session_seconds: int) -> None:
        self.db = db
        self.box = box
        self.session_seconds = session_seconds
        self._touched: dict[str, float] = {}
        self._cache: dict[str, tuple[float, ApiKey, User]] = {}

    def invalidate(self) -> None:
        """Forget verified keys: called whenever a key is revoked, rotated or its node removed."""
        self._cache.clear()

    async def from_key(self, plaintext: str, client: str | None) -> Principal:
        parsed = keys.parse(plaintext)
        if parsed is None:  # malformed or checksum broken: no lookup
            raise AuthError("The API key is malformed.", "tarx_api_key_invalid")
        now = time.monotonic()
        cached = self._cache.get(parsed.hash)
        if cached is not None and cached[0] > now:
            _, key, user = cached
        else:
            found = await api_keys.by_hash(self.db, parsed.hash)
            if found is None:
                raise AuthError("The API key is not valid.", "tarx_api_key_invalid")
            key = found
            owner = await identity.get_user(self.db, key.user_id)
            if owner is None:
                raise AuthError("The API key's account no longer exists.", "tarx_api_key_invalid")
            user = owner
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[parsed.hash] = (now + CACHE_SECONDS, key, user)
        if key.revoked_at is not None:
            raise AuthError("The API key was revoked.", "tarx_api_key_revoked", "API_KEY_REVOKED")
        if key.expires_at is not None and expiry.has_passed(key.expires_at):  # an unreadable expiry has passed
            raise AuthError("The API key has expired.", "tarx_api_key_expired", "API_KEY_EXPIRED")
        if now - self._touched.get(key.id, -TOUCH_EVERY_SECONDS) >= TOUCH_EVERY_SECONDS:
            self._touched[key.id] = now
            await api_keys.touch(self.db, key.id)
        return Principal(user, key.kind, key, client)

    def issue_session(self, user: User) -> tuple[str, datetime]:
        import jwt  # on first use, as SecretBox's cryptography: PyJWT imports cryptography (6 MiB) with it

        expires = datetime.now(UTC) + timedelta(seconds=self.session_seconds)
        token = jwt.encode({"sub": user.id, "typ": "session", "exp": expires, "iat": datetime.now(UTC)},
                           self.box.jwt_secret, algorithm=JWT_ALGORITHM)
        return token, expires

    async def from_jwt(self, token: str, client: str | None) -> Principal:
        import jwt

        try:
            claims = jwt.decode(token, self.box.jwt_secret, algorithms=[JWT_ALGORITHM],
                                options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("The session has expired; sign in again.", "session_expired") from None
        except jwt.InvalidTokenError:
            raise AuthError("The session token is not valid.", "session_invalid") from None
        user = await identity.get_user(self.db, claims["sub"])
        if user is None:
            raise AuthError("The session's account no longer exists.", "session_invalid")
        return Principal(user, "jwt", None, client)

    async def resolve(self, authorization: str | None, x_api_key: str | None, token: str | None,
                      client: str | None) -> Principal | None:
        """The caller, or None when no credential was sent. A credential that fails is an error, never anonymous."""
        if x_api_key:
            return await self.from_key(x_api_key.strip(), client)
        credential = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError("Use 'Authorization: Bearer <key>'.", "tarx_api_key_invalid")
            credential = value.strip()
        elif token:
            credential = token
        if credential is None:
            return None
        if credential.count(".") == 2 and not keys.parse(credential):
            return await self.from_jwt(credential, client)
        return await self.from_key(credential, client)
