"""Throttling of sign-in by one-time code (`/api/auth/*`), per email and per client address.

- Code requests: one per email every `code_interval_seconds`, and `codes_per_hour` per client address.
- Verifications: `email_failures` failed verifications of one email (or `address_failures` from one address)
  lock it for `lockout_seconds`; each further lockout doubles, up to `lockout_max_seconds`. A success clears
  the email's count. The count is forgotten after a day without failures.
- While an email or address is locked, requests and verifications both answer 429 with `Retry-After`, even with
  the right code.

Emails are counted whether or not an account has them, so answers never reveal which accounts exist. IPv6
clients are counted per /64 (one host usually holds the whole prefix). The state lives in memory: a restart clears
it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.errors import TarxError

FORGET_SECONDS = 86_400.0  # a subject's failures and lockout level are forgotten after this long without failures
MAX_SUBJECTS = 100_000  # tracked emails and addresses, beyond which the stalest are dropped


@dataclass(frozen=True)
class SigninPolicy:
    code_interval_seconds: float = 30.0
    codes_per_hour: int = 10
    code_attempts: int = 5
    email_failures: int = 3
    address_failures: int = 10
    lockout_seconds: float = 30.0
    lockout_max_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: object) -> SigninPolicy:
        return cls(**{name: getattr(settings, f"signin_{name}") for name in cls.__dataclass_fields__})


class SigninThrottled(TarxError):
    status, type, code = 429, "rate_limit_error", "signin_rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        seconds = max(math.ceil(retry_after), 1)
        super().__init__(f"{message} Try again in {seconds} s.", headers={"Retry-After": str(seconds)},
                         extra={"error_code": "RATE_LIMIT_EXCEEDED"})
        self.retry_after = seconds


@dataclass
class _Subject:
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0
    last_code: float = -math.inf
    codes: deque[float] = field(default_factory=deque)

    def touched(self) -> float:
        return max(self.locked_until, self.last_failure, self.last_code, self.codes[-1] if self.codes else 0.0)


class SigninLimits:
    def __init__(self, policy: SigninPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or SigninPolicy()
        self.clock = clock
        self._subjects: dict[str, _Subject] = {}
        self._ops = 0

    # ---- the three moments of a sign-in ---------------------------------------------------------------------

    def code_requested(self, email: str, address: str | None) -> None:
        """Count a code request, or refuse it (429) when the email or address is locked or asked too often."""
        now = self._tick()
        by_email, by_address = self._get(_email_key(email)), self._get(_address_key(address))
        self._refuse_locked(now, by_email, by_address)
        wait = by_email.last_code + self.policy.code_interval_seconds - now
        if wait > 0:
            raise SigninThrottled("A code was requested for this email a moment ago.", wait)
        recent = by_address.codes
        while recent and recent[0] <= now - 3600:
            recent.popleft()
        if len(recent) >= self.policy.codes_per_hour:
            raise SigninThrottled("Too many code requests from this address.", recent[0] + 3600 - now)
        by_email.last_code = now
        recent.append(now)

    def check_verify(self, email: str, address: str | None) -> None:
        """Refuse a verification (429) while the email or the address is locked."""
        now = self._tick()
        self._refuse_locked(now, self._get(_email_key(email)), self._get(_address_key(address)))

    def failed(self, email: str, address: str | None) -> None:
        """Count a failed verification against both; either may lock."""
        now = self.clock()
        self._fail(self._get(_email_key(email)), now, self.policy.email_failures)
        self._fail(self._get(_address_key(address)), now, self.policy.address_failures)

    def succeeded(self, email: str) -> None:
        """The email signed in: its failures and lockout level are cleared (the address's are not)."""
        self._subjects.pop(_email_key(email), None)

    # ---- internals ------------------------------------------------------------------------------------------

    def _refuse_locked(self, now: float, by_email: _Subject, by_address: _Subject) -> None:
        until = max(by_email.locked_until, by_address.locked_until)
        if until > now:
            raise SigninThrottled("Too many failed sign-in attempts; sign-in is locked for a while.", until - now)

    def _fail(self, subject: _Subject, now: float, threshold: int) -> None:
        if now - max(subject.last_failure, subject.locked_until) > FORGET_SECONDS:
            subject.failures = subject.lockouts = 0
        subject.failures += 1
        subject.last_failure = now
        if subject.failures >= max(threshold, 1):
            subject.failures = 0
            subject.lockouts += 1
            growth = self.policy.lockout_seconds * 2.0 ** min(subject.lockouts - 1, 40)
            subject.locked_until = max(subject.locked_until, now + min(growth, self.policy.lockout_max_seconds))

    def _get(self, key: str) -> _Subject:
        found = self._subjects.get(key)
        if found is None:
            found = self._subjects[key] = _Subject()
        return found

    def _tick(self) -> float:
        now = self.clock()
        self._ops += 1
        if self._ops % 1000 == 0 or len(self._subjects) > MAX_SUBJECTS:
            self._prune(now)
        return now

    def _prune(self, now: float) -> None:
        horizon = max(FORGET_SECONDS, 3600.0, self.policy.code_interval_seconds)
        for key, subject in list(self._subjects.items()):
            if now - subject.touched() > horizon:
                del self._subjects[key]
        if len(self._subjects) > MAX_SUBJECTS:  # a flood of fresh names: keep the locked, then the most recent
            ranked = sorted(self._subjects.items(), key=lambda kv: (kv[1].locked_until > now, kv[1].touched()),
                            reverse=True)
            self._subjects = dict(ranked[: MAX_SUBJECTS // 2])


def _email_key(email: str) -> str:
    return "email:" + email.strip().lower()


def _address_key(address: str | None) -> str:
    if not address:
        return "addr:unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "addr:" + address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


__all__ = ["SigninLimits", "SigninPolicy", "SigninThrottled"]
