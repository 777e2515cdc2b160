"""Issue 12 §2: sign-in by one-time code is throttled with growing lockouts, and key expiries are real times."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from conftest import Runtime
from runtime.auth import expiry
from runtime.auth.signin_limits import SigninLimits, SigninPolicy, SigninThrottled
from support.identity import bearer, owner_key

OWNER = "owner@localhost"


def code_from_log(rt: Runtime, email: str, seen: int = 0) -> str:
    """The newest code the runtime logged for `email`, once more than `seen` of them are there."""
    pattern = re.compile(rf"one-time sign-in code for {re.escape(email)}: (\d{{6}})")
    deadline = time.monotonic() + 5
    while len(codes := pattern.findall(rt.log())) <= seen:
        assert time.monotonic() < deadline, "no code in the runtime log"
        time.sleep(0.05)
    return codes[-1]


def request_code(rt: Runtime, email: str) -> httpx.Response:
    return httpx.post(rt.url + "/api/auth/request-otp", json={"email": email})


def verify(rt: Runtime, email: str, code: str) -> httpx.Response:
    return httpx.post(rt.url + "/api/auth/verify-otp", json={"email": email, "code": code})


def wrong(code: str, n: int) -> str:
    """The n-th six-digit code that is not `code`."""
    return f"{(int(code) + 1 + n) % 10**6:06d}"


def assert_throttled(r: httpx.Response) -> int:
    """429 in the compute envelope with a Retry-After; returns its seconds."""
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["status"] == "RATE_LIMITED" and body["payload"] is None and body["message"], body
    retry = int(r.headers["Retry-After"])
    assert retry >= 1
    return retry


def shape(r: httpx.Response) -> tuple[int, str]:
    """What a caller can tell from an answer, with the seconds taken out."""
    return r.status_code, re.sub(r"\d+", "N", r.json()["message"])


# ---- the limiter alone ---------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockouts_double_up_to_the_cap_and_success_clears_the_email() -> None:
    clock = Clock()
    limits = SigninLimits(SigninPolicy(email_failures=3, address_failures=100, lockout_seconds=30,
                                       lockout_max_seconds=100), clock)
    waits = []
    for _ in range(4):
        for _ in range(3):
            limits.check_verify(OWNER, "10.0.0.1")
            limits.failed(OWNER, "10.0.0.1")
        with pytest.raises(SigninThrottled) as refused:
            limits.check_verify(OWNER, "10.0.0.2")  # locked by email, from any address
        waits.append(refused.value.retry_after)
        clock.now += refused.value.retry_after
    assert waits == [30, 60, 100, 100]
    limits.check_verify(OWNER, "10.0.0.1")
    limits.succeeded(OWNER)
    for _ in range(3):
        limits.failed(OWNER, "10.0.0.1")
    with pytest.raises(SigninThrottled) as refused:
        limits.check_verify(OWNER, "10.0.0.1")
    assert refused.value.retry_after == 30  # the level started again after the success


def test_addresses_lock_across_emails_and_ipv6_counts_per_64() -> None:
    clock = Clock()
    limits = SigninLimits(SigninPolicy(email_failures=100, address_failures=4), clock)
    for n in range(4):
        limits.failed(f"user{n}@example.com", f"2001:db8::{n + 1}")
    with pytest.raises(SigninThrottled):
        limits.check_verify("fresh@example.com", "2001:db8::ffff")
    with pytest.raises(SigninThrottled):
        limits.code_requested("fresh@example.com", "2001:db8::ffff")
    limits.check_verify("fresh@example.com", "2001:db8:0:1::1")  # another /64


def test_code_requests_per_email_and_per_address() -> None:
    clock = Clock()
    limits = SigninLimits(SigninPolicy(code_interval_seconds=30, codes_per_hour=3), clock)
    limits.code_requested(OWNER, "10.0.0.1")
    with pytest.raises(SigninThrottled) as refused:
        limits.code_requested(OWNER.upper(), "10.0.0.2")
    assert refused.value.retry_after == 30
    limits.code_requested("a@example.com", "10.0.0.1")
    limits.code_requested("b@example.com", "10.0.0.1")
    with pytest.raises(SigninThrottled):
        limits.code_requested("c@example.com", "10.0.0.1")
    clock.now += 3601
    limits.code_requested("c@example.com", "10.0.0.1")


@pytest.mark.parametrize("value, utc", [
    ("2026-11-23T05:32:36+09:00", "2026-11-22T20:32:36.000Z"),
    ("2026-11-23t05:32:36.5-01:30", "2026-11-23T07:02:36.500Z"),
    ("2026-11-23 05:32:36.123456789z", "2026-11-23T05:32:36.123Z"),
    ("never", None), ("not a date", None), ("2026-11-23", None), ("2026-11-23T05:32:36", None),
    ("2026-11-23T05:32Z", None), ("2026-02-30T00:00:00Z", None), ("2026-11-23T05:32:36+24:00", None),
    ("", None),
])
def test_rfc3339_is_the_input_format(value: str, utc: str | None) -> None:
    parsed = expiry.parse_rfc3339(value)
    assert (expiry.canonical(value) if parsed else None) == utc


def test_stored_expiries_compare_as_instants() -> None:
    an_hour_ago_in_tokyo = (datetime.now(timezone(timedelta(hours=9))) - timedelta(hours=1)).isoformat("T", "seconds")
    assert an_hour_ago_in_tokyo > expiry.canonical(an_hour_ago_in_tokyo)  # as text it would still be valid
    assert expiry.has_passed(an_hour_ago_in_tokyo)
    assert expiry.has_passed("never") and expiry.has_passed("not a date")  # unreadable: fail closed
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")  # "+00:00", no fraction
    assert not expiry.has_passed(in_an_hour)
    in_two_hours_z = expiry.canonical((datetime.now(UTC) + timedelta(hours=2)).isoformat())
    assert expiry.later(in_two_hours_z, an_hour_ago_in_tokyo) and not expiry.later(an_hour_ago_in_tokyo, in_an_hour)


# ---- sign-in over HTTP ---------------------------------------------------------------------------------------------

def test_guessing_a_code_is_stopped_within_a_few_tries_for_known_and_unknown_emails(make_runtime) -> None:
    rt = make_runtime(name="guard")  # the default limits
    asked = request_code(rt, OWNER)
    assert asked.status_code == 200
    code = code_from_log(rt, OWNER)
    answers = []
    for n in range(30):  # at ~550 guesses/s unthrottled, a 10**6 space falls in half an hour
        r = verify(rt, OWNER, wrong(code, n))
        answers.append(r)
        if r.status_code == 429:
            break
    assert [r.status_code for r in answers] == [401, 401, 401, 429], [r.text for r in answers]
    assert 1 <= assert_throttled(answers[-1]) <= 30
    assert_throttled(verify(rt, OWNER, code))  # locked: even the right code is refused
    assert_throttled(request_code(rt, OWNER))  # and no fresh code to guess at

    # An email with no account answers exactly the same, so guessing tells nothing about who exists.
    nobody = "nobody@example.com"
    unknown_asked = request_code(rt, nobody)
    assert unknown_asked.status_code == 200 and unknown_asked.json() == asked.json()
    unknown = [verify(rt, nobody, wrong(code, n)) for n in range(4)]
    assert [shape(r) for r in unknown] == [shape(r) for r in answers]
    assert_throttled(request_code(rt, nobody))

    # Spreading guesses over many emails from one address locks the address (10 failures by default: 6 so far).
    fresh = [verify(rt, f"spray{n}@example.com", "123456") for n in range(4)]
    assert [r.status_code for r in fresh] == [401] * 4
    assert_throttled(verify(rt, "yet-another@example.com", "123456"))
    assert_throttled(request_code(rt, "yet-another@example.com"))


def test_lockouts_grow_and_hold_even_the_right_code(make_runtime) -> None:
    rt = make_runtime({"TARX_SIGNIN_LOCKOUT_SECONDS": "1", "TARX_SIGNIN_LOCKOUT_MAX_SECONDS": "2",
                       "TARX_SIGNIN_EMAIL_FAILURES": "2", "TARX_SIGNIN_CODE_ATTEMPTS": "10"}, name="lockout")
    assert request_code(rt, OWNER).status_code == 200
    code = code_from_log(rt, OWNER)
    waits = []
    for round_ in range(3):
        assert [verify(rt, OWNER, wrong(code, 2 * round_ + n)).status_code for n in range(2)] == [401, 401]
        started = time.monotonic()
        waits.append(assert_throttled(verify(rt, OWNER, code)))  # the right code, refused while locked
        if round_ == 1:  # halfway through the doubled lockout: still locked
            time.sleep(max(1.1 - (time.monotonic() - started), 0))
            assert_throttled(verify(rt, OWNER, code))
        time.sleep(max(waits[-1] + 0.2 - (time.monotonic() - started), 0))
    assert waits == [1, 2, 2]  # 1 s, doubled, then held at the 2 s cap
    r = verify(rt, OWNER, code)  # the lockout is over: the same live code signs in
    assert r.status_code == 200, r.text
    assert r.json()["payload"]["token"].count(".") == 2


def test_a_code_is_void_after_a_few_wrong_guesses(make_runtime) -> None:
    rt = make_runtime({"TARX_SIGNIN_EMAIL_FAILURES": "100", "TARX_SIGNIN_CODE_ATTEMPTS": "2"}, name="void")
    assert request_code(rt, OWNER).status_code == 200
    code = code_from_log(rt, OWNER)
    assert [verify(rt, OWNER, wrong(code, n)).status_code for n in range(2)] == [401, 401]
    assert verify(rt, OWNER, code).status_code == 401


# ---- key expiries --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module(name="expiry")


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    return bearer(owner_key(rt))


FAMILIES = ("tarx", "platform", "compute")


def create(rt: Runtime, owner: dict, family: str, expires_at: str) -> httpx.Response:
    if family == "tarx":
        return httpx.post(rt.url + "/api/keys", json={"name": "exp", "expires_at": expires_at}, headers=owner)
    if family == "platform":
        return httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "exp", "expires_at": expires_at},
                          headers=owner)
    return httpx.post(rt.url + "/api/compute/api-keys/create", json={"name": "exp", "expiresAt": expires_at},
                      headers=owner)


def created(family: str, r: httpx.Response) -> dict[str, Any]:
    """The new key as {"key", "expires_at", "id"}."""
    assert r.status_code == (200 if family == "compute" else 201), r.text
    body = r.json()["payload"] if family == "compute" else r.json()
    return {"key": body["key"], "id": body["id"],
            "expires_at": body["expiresAt"] if family == "compute" else body["expires_at"]}


def refusal(family: str, r: httpx.Response) -> str:
    """The message of a 400 in the family's envelope."""
    assert r.status_code == 400, r.text
    body = r.json()
    if family == "tarx":
        assert body["error"]["code"] == "invalid_expiry"
        return body["error"]["message"]
    if family == "platform":
        assert body["status"] == 400 and body["error_code"]
        return body["detail"]
    assert body["status"] == "ERROR" and body["payload"] is None
    return body["message"]


def use(rt: Runtime, family: str, key: str) -> httpx.Response:
    if family == "tarx":
        return httpx.get(rt.url + "/api/keys", headers=bearer(key))
    if family == "platform":
        return httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(key))
    return httpx.post(rt.url + "/api/compute/api-keys/list", json={}, headers={"X-API-Key": key})


def assert_expired(family: str, r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    if family == "tarx":
        assert body["error"]["code"] == "tarx_api_key_expired"
    elif family == "platform":
        assert body["error_code"] == "API_KEY_EXPIRED"
    else:
        assert body["status"] == "UNAUTHORIZED" and "expired" in body["message"]


def in_zone(hours: float, seconds: float, timespec: str = "seconds") -> str:
    """Now plus `seconds`, written in the zone UTC+`hours`."""
    return (datetime.now(timezone(timedelta(hours=hours))) + timedelta(seconds=seconds)).isoformat("T", timespec)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_past_expiry_with_an_offset_is_refused(rt: Runtime, owner: dict, family: str) -> None:
    an_hour_ago_in_tokyo = in_zone(9, -3600)
    message = refusal(family, create(rt, owner, family, an_hour_ago_in_tokyo))
    assert "future" in message and an_hour_ago_in_tokyo in message


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("value", ["never", "not a date", "2030-01-01", "2030-01-01T00:00:00", "1e12", ""])
def test_an_expiry_that_is_not_rfc_3339_is_refused(rt: Runtime, owner: dict, family: str, value: str) -> None:
    assert "RFC 3339" in refusal(family, create(rt, owner, family, value))


@pytest.mark.parametrize("family", FAMILIES)
def test_an_offset_expiry_is_stored_in_utc_and_the_key_works(rt: Runtime, owner: dict, family: str) -> None:
    in_a_day_in_tokyo = in_zone(9, 86400, "milliseconds")
    key = created(family, create(rt, owner, family, in_a_day_in_tokyo))
    utc = datetime.fromisoformat(in_a_day_in_tokyo).astimezone(UTC)
    assert key["expires_at"] == utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert use(rt, family, key["key"]).status_code == 200


def test_keys_expire_on_time_in_every_family(rt: Runtime, owner: dict) -> None:
    soon = in_zone(5.5, 3, "milliseconds")  # India: as text this is hours after any UTC time of today
    keys = {family: created(family, create(rt, owner, family, soon)) for family in FAMILIES}
    for family, key in keys.items():
        assert use(rt, family, key["key"]).status_code == 200, family
    time.sleep(max((datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds(), 0) + 0.3)
    for family, key in keys.items():
        assert_expired(family, use(rt, family, key["key"]))


def test_rows_written_in_other_formats_compare_as_times(rt: Runtime, owner: dict) -> None:
    """Keys stored before expiries were normalised: an offset, no fraction, or no time at all."""
    rows = {"past_offset": in_zone(9, -3600), "future_offset": in_zone(9, 3600), "never": "never",
            "naive_past": (datetime.now(UTC) - timedelta(minutes=5)).replace(tzinfo=None).isoformat()}
    keys = {name: created("platform", create(rt, owner, "platform", in_zone(0, 86400))) for name in rows}
    with sqlite3.connect(rt.data_dir / "tarx.db", timeout=10) as db:
        for name, value in rows.items():
            db.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", (value, keys[name]["id"]))
    for name in ("past_offset", "never", "naive_past"):
        assert_expired("platform", use(rt, "platform", keys[name]["key"]))
    minter = bearer(keys["future_offset"]["key"])
    assert httpx.get(rt.url + "/api/v1/auth/me", headers=minter).status_code == 200
    # Minting compares the same way: a child may not outlive its minter, and inherits its expiry in UTC.
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    r = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "child", "expires_at": later}, headers=minter)
    assert r.status_code == 403, r.text
    child = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "child"}, headers=minter)
    assert child.status_code == 201
    assert child.json()["expires_at"] == expiry.canonical(rows["future_offset"])
    assert child.json()["expires_at"].endswith(".000Z")
