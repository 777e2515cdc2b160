"""The OpenAPI document tells the truth: schemathesis drives every operation of every family with bounded,
generated input, with a key of the family's own kind, and requires no 5xx, documented statuses and responses
that fit their declared schemas (the family's error envelope included)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from conftest import Runtime
from support.identity import bearer, owner_key

# Operations that would send traffic off this machine (outbound webhooks, hosted and enterprise upstreams named
# by the request) are left out: this test only talks to the runtime itself. So are MCP servers, whose connection and
# discovery reach the URL or run the program (stdio command) the request names.
OFF_MACHINE = ("/v0/webhooks", "/api/planes/supercomputer", "/api/v1/llm-keys", "/api/v1/mcp", "/api/v1/mcp/discover")


@pytest.fixture(scope="module")
def fuzz_runtime(make_runtime_module) -> Runtime:
    # No local node: generated job commands must never run.
    return make_runtime_module({"TARX_LOCAL_NODE": "false", "TARX_RATE_LIMITS": "false"}, name="fuzz")


@pytest.fixture(scope="module")
def family_keys(fuzz_runtime: Runtime) -> dict[str, dict[str, str]]:
    owner = bearer(owner_key(fuzz_runtime))
    with httpx.Client(base_url=fuzz_runtime.url, headers=owner, timeout=30) as c:
        tarx = c.post("/api/keys", json={"name": "fuzz"}).json()["key"]
        compute = c.post("/api/compute/api-keys/create", json={"name": "fuzz"}).json()["payload"]["key"]
    return {"openai": bearer(tarx), "platform": owner, "compute": bearer(compute)}


@pytest.fixture(scope="module")
def api_schema(fuzz_runtime: Runtime) -> Any:
    schema = schemathesis.openapi.from_url(fuzz_runtime.url + "/openapi.json")
    return schema.exclude(path=list(OFF_MACHINE))


schema = schemathesis.pytest.from_fixture("api_schema")


def _headers_for(path: str, keys: dict[str, dict[str, str]]) -> dict[str, str]:
    if path.startswith("/api/v1"):
        return keys["platform"]
    if path.startswith(("/api/compute", "/v0", "/api/auth")):
        return keys["compute"]
    return keys["openai"]


def _bounded(case: Any) -> None:
    """Token-generating routes get tiny budgets, so the run stays short."""
    body = case.body
    if not isinstance(body, dict):
        return
    if case.path == "/v1/chat/completions":
        body["max_tokens"] = 2
        body.pop("max_completion_tokens", None)
    if case.path == "/v1/completions":
        body["max_tokens"] = 2
    if case.path == "/v1/responses":
        body["max_output_tokens"] = 2
    if case.path == "/v1/embeddings" and isinstance(body.get("input"), list):
        body["input"] = body["input"][:4]


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_document(case: Any, fuzz_runtime: Runtime,
                                                     family_keys: dict[str, dict[str, str]]) -> None:
    _bounded(case)
    case.call_and_validate(base_url=fuzz_runtime.url, headers=_headers_for(case.path, family_keys), timeout=60,
                           checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


def test_the_document_declares_each_familys_envelope(fuzz_runtime: Runtime) -> None:
    doc = httpx.get(fuzz_runtime.url + "/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    assert {"401", "402", "404", "413", "429", "500"} <= set(chat)
    projects = doc["paths"]["/api/v1/projects"]["post"]["responses"]
    assert projects["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/PlatformError")
    jobs = doc["paths"]["/v0/jobs"]["post"]["responses"]
    assert jobs["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ComputeError")
    assert "422" not in jobs
