"""The OpenAPI document, told truthfully: every operation lists the error statuses it can answer, each with its
family's envelope (runtime/api/errors.py), instead of FastAPI's default `422 HTTPValidationError`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from runtime.api.families import Family, family

ENVELOPES: dict[str, dict[str, Any]] = {
    "OpenAIError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "code": {"type": ["string", "null"]}, "docs_url": {"type": "string"}},
            "additionalProperties": True}},
    },
    "PlatformError": {
        "type": "object", "required": ["detail", "error_code", "status"],
        "properties": {"detail": {"type": "string"}, "error_code": {"type": "string"},
                       "status": {"type": "integer"},
                       "node_ids": {"type": "array", "items": {"type": "string"},
                                    "description": "a workflow's offending node ids (validation errors)"}},
    },
    "ComputeError": {
        "type": "object", "required": ["status", "message", "payload"],
        "properties": {"status": {"type": "string", "enum": ["ERROR", "UNAUTHORIZED", "FORBIDDEN", "RATE_LIMITED"]},
                       "message": {"type": "string"}, "payload": {"type": "null"}},
    },
}
_ENVELOPE_OF = {Family.openai: "OpenAIError", Family.platform: "PlatformError", Family.compute: "ComputeError",
                Family.compute_v0: "ComputeError"}
_DESCRIPTIONS = {
    400: "Malformed JSON, a field of the wrong type or value, or a request the runtime cannot take",
    401: "No credential, or one that is malformed, unknown, revoked or expired",
    402: "Hosted execution without the key scope or entitlement it needs",
    403: "The credential's kind, role or project does not allow this; or a Host header this runtime does not "
         "answer to",
    404: "An unknown id, or another project's (never revealed)",
    409: "The resource is not in a state that allows this",
    413: "The body is larger than max_body_bytes",
    422: "A field of the wrong type or value (seed 001's VALIDATION_ERROR)",
    429: "A rate limit, a full queue, or too much queued work; see Retry-After",
    500: "An internal error (logged; never a traceback)",
    503: "The model or upstream cannot serve now",
}


def _statuses(path: str, method: str, fam: Family) -> list[int]:
    validation = 422 if fam is Family.platform else 400
    statuses = {validation, 400, 401, 403, 404, 429, 500}
    if method in ("post", "put", "patch", "delete"):
        statuses |= {409, 413}
    if fam is Family.openai and method == "post":
        statuses |= {402, 503}
    if path in ("/api/version", "/v1/health"):
        statuses = {403, 500} | ({503} if path == "/v1/health" else set())
    return sorted(statuses)


def document(app: FastAPI) -> dict[str, Any]:
    """Build (once) the OpenAPI document with every error response declared."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(ENVELOPES)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        fam = family(path)
        ref = {"$ref": f"#/components/schemas/{_ENVELOPE_OF[fam]}"}
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status in _statuses(path, method, fam):
                responses[str(status)] = {"description": _DESCRIPTIONS[status],
                                          "content": {"application/json": {"schema": ref}}}
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
