"""TarxClient's seam: every failure leaves as one of its own errors, whichever family's envelope carried it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tarx_console.client.api import TarxClient
from tarx_console.client.connect import PortState, probe
from tarx_console.client.errors import (
    ClientError,
    Forbidden,
    KeyRevoked,
    NotFound,
    Refused,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    Unreachable,
)


def client(answer: Callable[[httpx.Request], httpx.Response]) -> TarxClient:
    return TarxClient(httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://tarx.test"), "k")


def run(call: Callable[[TarxClient], Any], answer: Callable[[httpx.Request], httpx.Response]) -> Any:
    async def main() -> Any:
        async with client(answer) as c:
            return await call(c)

    return asyncio.run(main())


@pytest.mark.parametrize(("status", "body", "expected", "message"), [
    (401, {"error": {"message": "The API key was revoked.", "code": "tarx_api_key_revoked"}}, KeyRevoked,
     "The API key was revoked."),
    (401, {"detail": "The API key was revoked.", "error_code": "API_KEY_REVOKED", "status": 401}, KeyRevoked,
     "The API key was revoked."),
    (401, {"error": {"message": "Authentication required", "code": "tarx_api_key_required"}}, Unauthorized,
     "Authentication required"),
    (403, {"detail": "Owners only.", "error_code": "PERMISSION_DENIED", "status": 403}, Forbidden, "Owners only."),
    (404, {"status": "ERROR", "message": "Job 'job_x' was not found.", "payload": None}, NotFound,
     "Job 'job_x' was not found."),
    (503, "<html>bad gateway</html>", Unavailable, "<html>bad gateway</html>"),
])
def test_refusals_are_typed_from_every_envelope(status: int, body: Any, expected: type, message: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=body)

    with pytest.raises(expected) as caught:
        run(lambda c: c.job("job_x"), answer)
    assert isinstance(caught.value, Refused) and caught.value.status == status and caught.value.message == message
    assert str(caught.value) == f"{message} ({status})"


def test_no_answer_is_unreachable_and_never_an_httpx_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    for call in (lambda c: c.list_projects(), lambda c: c.health()):
        with pytest.raises(Unreachable, match="connection refused") as caught:
            run(call, answer)
        assert not isinstance(caught.value, httpx.HTTPError) and isinstance(caught.value, ClientError)


def test_an_answer_that_is_not_the_api_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponse):
        run(lambda c: c.list_projects(), lambda r: httpx.Response(200, text="<html>a router's login page</html>"))
    with pytest.raises(UnexpectedResponse):  # seed 003 answers always carry their envelope
        run(lambda c: c.retry_job("job_x"), lambda r: httpx.Response(200, json={"id": "job_x"}))


def test_compute_answers_are_unwrapped_and_v0_answers_are_not() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/compute/"):
            return httpx.Response(200, json={"status": "SUCCESS", "message": "OK", "payload": {"id": "job_x"}})
        return httpx.Response(200, json={"id": "job_x", "state": "QUEUED"})

    assert run(lambda c: c.retry_job("job_x"), answer) == {"id": "job_x"}
    assert run(lambda c: c.job("job_x"), answer) == {"id": "job_x", "state": "QUEUED"}


def test_probe_finds_a_port_nothing_listens_on_free() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert asyncio.run(probe("127.0.0.1", port)) is PortState.FREE
