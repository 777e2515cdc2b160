"""Every failure leaves in its API family's envelope, with the right status and never a traceback.

- `/v1/*`, `/api/keys`, `/api/version`: `{"error": {"message", "type", "code", "docs_url"}}` (seed 000)
- `/api/v1/*`: `{"detail", "error_code", "status"}` (seed 001)
- `/api/compute/*`, `/v0/*`: `{"status": "ERROR", "message", "payload": null}` (seeds 003, 004)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api.families import Family, family
from runtime.errors import TarxError

log = logging.getLogger("tarx.api")

DOCS_URL = "/docs/api-reference#errors"

_STATUS_CODES = {  # seed 001's error codes by status
    400: "BAD_REQUEST", 401: "AUTH_REQUIRED", 402: "PAYMENT_REQUIRED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR", 429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE",
}
_COMPUTE_STATUS = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 429: "RATE_LIMITED"}
_OPENAI_TYPES = {401: "authentication_error", 402: "insufficient_quota", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error"}


def envelope(path: str, err: TarxError) -> dict[str, Any]:
    fam = family(path)
    if fam is Family.platform:
        code = err.extra.get("error_code") or _STATUS_CODES.get(err.status, err.code.upper())
        body = {"detail": err.message, "error_code": code, "status": err.status}
        if "node_ids" in err.extra:  # a workflow's validation errors name the offending nodes (seed 001 + issue 14)
            body["node_ids"] = err.extra["node_ids"]
        return body
    if fam.compute_envelope:
        status = _COMPUTE_STATUS.get(err.status, "ERROR")
        return {"status": status, "message": err.message, "payload": None}
    body: dict[str, Any] = {"message": err.message, "type": err.type, "code": err.code, "docs_url": DOCS_URL}
    body.update({k: v for k, v in err.extra.items() if k != "error_code"})
    return {"error": body}


def error_response(request: Request, err: TarxError) -> JSONResponse:
    return JSONResponse(envelope(request.url.path, err), status_code=err.status, headers=err.headers)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _whole_body_message(error: dict[str, Any], content_type: str) -> str | None:
    """Why the body as a whole was refused, when it was missing or not sent as JSON (curl's `-d` sends a form unless
    told): pydantic's own words ("a valid dictionary or object to extract fields from") do not say what to change."""
    if error.get("type") == "missing":
        return "The request needs a JSON body."
    if not _is_json(content_type):
        sent = f"'{content_type}'" if content_type else "no content type"
        return f"The request body must be JSON sent with 'Content-Type: application/json' (it came with {sent})."
    return None


_UNION_TAGS = ("function-", "constrained-", "lax-or-strict", "json-or-python", "tagged-union", "nullable")
_TYPE_TAGS = {"str", "int", "float", "bool", "bytes", "dict", "list", "none"}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(_UNION_TAGS) or part in _TYPE_TAGS
                                      or any(c in part for c in "[(<"))


def _field_path(loc: tuple[Any, ...]) -> str:
    """The field an error is about. Pydantic puts each union member's tag in `loc` (`str`, `list[TextPart]`,
    `function-after[functools.partial(<function min_length_validator at 0x…>, …)]`): internals and memory
    addresses that name no field, so they are left out of the path."""
    return ".".join(str(p) for p in loc if p != "body" and not _is_tag(p))


def _validation_message(exc: RequestValidationError, content_type: str = "application/json") -> str:
    by_field: dict[str, list[str]] = {}  # a union's members fail one by one: one entry per field, "a or b"
    for e in exc.errors()[:8]:
        if e.get("type") == "json_invalid":
            return "The request body is not valid JSON."
        if tuple(e.get("loc", ())) == ("body",) and (whole := _whole_body_message(e, content_type)):
            return whole
        msgs = by_field.setdefault(_field_path(tuple(e.get("loc", ()))), [])
        if (msg := str(e.get("msg"))) not in msgs:
            msgs.append(msg)
    parts = [f"{loc}: {' or '.join(msgs)}" if loc else " or ".join(msgs) for loc, msgs in by_field.items()]
    return "Invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(TarxError)
    async def _tarx(request: Request, exc: TarxError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fam = family(request.url.path)
        # Seed 001 gives 422 VALIDATION_ERROR; the OpenAI family answers 400 invalid_request_error.
        status = 422 if fam is Family.platform else 400
        message = _validation_message(exc, request.headers.get("content-type", ""))
        err = TarxError(message, status=status, type="invalid_request_error",
                        code="invalid_request", extra={"error_code": "VALIDATION_ERROR"})
        return error_response(request, err)

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError) -> JSONResponse:
        # A body parsed inside a handler (not by FastAPI) that does not fit its model.
        return await _validation(request, RequestValidationError(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route for {request.method} {request.url.path}"
        err = TarxError(message, status=exc.status_code, type=_OPENAI_TYPES.get(exc.status_code,
                        "invalid_request_error"), code=_STATUS_CODES.get(exc.status_code, "error").lower())
        resp = error_response(request, err)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        err = TarxError("The runtime hit an internal error; see its log for details.", status=500,
                        type="server_error", code="internal_error")
        return error_response(request, err)
