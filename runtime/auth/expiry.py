"""Key expiries: RFC 3339 on input, stored in the database's one time format (UTC, `…T05:32:36.000Z`).

Expiries are compared as instants, never as text: a row written in another format (an offset such as `+09:00`, no
fraction, a space for `T`) is parsed when it is compared, and the parse is cached. A stored value that is no time
at all (`never`) cannot say when the key ends, so the key counts as expired: it fails closed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from runtime.errors import InvalidRequest
from runtime.store.db import iso

# RFC 3339 section 5.6 `date-time`: full date, `T` (or a space, as the RFC allows), time with seconds, optional
# fraction, and a mandatory offset (`Z` or ±hh:mm). Case-insensitive `T` and `Z`.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$")
EXAMPLE = "2030-01-31T12:00:00Z"


def parse_rfc3339(value: str) -> datetime | None:
    """The instant `value` names (aware, UTC), or None when it is not an RFC 3339 date-time."""
    m = _RFC3339.match(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zulu, sign, off_h, off_m = m.groups()[6:]
    if hour > 23 or minute > 59 or second > 60 or (not zulu and (int(off_h) > 23 or int(off_m) > 59)):
        return None
    try:
        offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(hours=int(off_h),
                                                                                   minutes=int(off_m))
        moment = datetime(year, month, day, hour, minute, min(second, 59),
                          int((fraction or "0")[:6].ljust(6, "0")), tzinfo=timezone(offset))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # 2030-02-30, or beyond year 9999 once in UTC
        return None


def normalise(value: str, *, field: str = "expires_at") -> str:
    """An expiry from a request, in the database's format; 400 `invalid_expiry` unless it is an RFC 3339
    date-time in the future."""
    moment = parse_rfc3339(value)
    if moment is None:
        raise InvalidRequest(f"{field} must be an RFC 3339 date-time with a time zone, such as '{EXAMPLE}' or "
                             f"'2030-01-31T21:00:00+09:00'; got {value[:64]!r}.", code="invalid_expiry")
    if moment <= datetime.now(UTC):
        raise InvalidRequest(f"{field} must be in the future; {value!r} is {iso(moment)} UTC, which has passed.",
                             code="invalid_expiry")
    return iso(moment)


@lru_cache(maxsize=4096)
def stored_instant(value: str) -> datetime | None:
    """A stored expiry as an instant: RFC 3339, or anything ISO 8601 that `datetime` reads (a time without a zone
    is taken as UTC). None when it is no time at all."""
    moment = parse_rfc3339(value)
    if moment is not None:
        return moment
    try:
        found = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).astimezone(UTC)


def has_passed(value: str, now: datetime | None = None) -> bool:
    """Whether a stored expiry has come (an unreadable one always has: fail closed)."""
    moment = stored_instant(value)
    return moment is None or moment <= (now or datetime.now(UTC))


def later(a: str, b: str) -> bool:
    """Whether stored expiry `a` comes after stored expiry `b`. An unreadable value reads as no time: as `a` it
    never ends (later), as `b` it has already ended (earlier)."""
    ma, mb = stored_instant(a), stored_instant(b)
    return ma is None or mb is None or ma > mb


def canonical(value: str) -> str:
    """A stored expiry in the database's format when it can be read, else unchanged."""
    moment = stored_instant(value)
    return iso(moment) if moment is not None else value
