"""Domain errors. Each API family renders them in its own envelope (runtime/api/errors.py)."""

from __future__ import annotations

from typing import Any


class TarxError(Exception):
    """A failure with an HTTP status and a machine-readable code; safe to show to the caller."""

    status: int = 400
    type: str = "invalid_request_error"
    code: str = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


class InvalidRequest(TarxError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class NotFound(TarxError):
    status, type, code = 404, "not_found_error", "not_found"


class Conflict(TarxError):
    status, type, code = 409, "invalid_request_error", "conflict"


class ModelNotFound(TarxError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class ContextLengthExceeded(TarxError):
    status, type, code = 400, "invalid_request_error", "context_length_exceeded"


class PayloadTooLarge(TarxError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class QueueFull(TarxError):
    status, type, code = 429, "rate_limit_error", "queue_full"


class ModelUnavailable(TarxError):
    status, type, code = 503, "server_error", "model_unavailable"
