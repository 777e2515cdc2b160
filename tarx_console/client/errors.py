"""What can go wrong talking to a runtime, as the client's own exceptions: callers never see httpx's.

    ClientError                       any failure; `message` is fit to show a person
    ├── Unreachable                   no answer: refused, reset, timed out, the connection lost mid-stream
    ├── BadURL                        the runtime's URL is not one (no scheme, a port out of range…)
    ├── UnexpectedResponse            something answered, but not as a tarx runtime does
    └── Refused(status, message)      the runtime answered with an error, in whichever family's envelope
        ├── BadRequest                400, 422
        ├── Unauthorized              401
        │   └── KeyRevoked            401 for a revoked key
        ├── Forbidden                 402, 403
        ├── NotFound                  404
        ├── Conflict                  409
        ├── RateLimited               429
        └── Unavailable               500 and above
"""

from __future__ import annotations

from typing import Any

REVOKED_CODES = ("tarx_api_key_revoked", "API_KEY_REVOKED")  # seed 000's and seed 001's code for a revoked key


class ClientError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(ClientError):
    """No runtime answered at all (or the connection broke): worth retrying later."""


class BadURL(ClientError):
    """The URL given for the runtime cannot be one (checked before anything is sent)."""


class UnexpectedResponse(ClientError):
    """Whatever answered did not speak the tarx API (not JSON, or not the shape expected)."""


class Refused(ClientError):
    """The runtime answered and said no. `code` is the envelope's machine-readable code, when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.status})"


class BadRequest(Refused):
    pass


class Unauthorized(Refused):
    pass


class KeyRevoked(Unauthorized):
    pass


class Forbidden(Refused):
    pass


class NotFound(Refused):
    pass


class Conflict(Refused):
    pass


class RateLimited(Refused):
    pass


class Unavailable(Refused):
    pass


_BY_STATUS: dict[int, type[Refused]] = {400: BadRequest, 422: BadRequest, 401: Unauthorized, 402: Forbidden,
                                        403: Forbidden, 404: NotFound, 409: Conflict, 429: RateLimited}


def refused(status: int, message: str, code: str | None = None) -> Refused:
    """The Refused subclass for this status (and code)."""
    if status == 401 and code in REVOKED_CODES:
        return KeyRevoked(status, message, code)
    cls = _BY_STATUS.get(status) or (Unavailable if status >= 500 else Refused)
    return cls(status, message, code)


def from_body(status: int, body: Any, text: str) -> Refused:
    """The error an answer carries, read from any of the three envelopes."""
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # /v1, /api/keys, /api/version, /api/account (seed 000)
            return refused(status, str(body["error"].get("message", "")), body["error"].get("code"))
        if "detail" in body:  # /api/v1 (seed 001)
            return refused(status, str(body["detail"]), body.get("error_code"))
        if "message" in body:  # /api/compute, /v0 (seeds 003, 004)
            return refused(status, str(body["message"]), body.get("status"))
    return refused(status, text[:200])
