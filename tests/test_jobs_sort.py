"""`GET /v0/jobs?sort=&order=`: the runtime sorts every job of the workspace, then pages, so a page of a sort is
that part of the whole order (the console's column sort); only the columns of an allow-list sort, and anything
else is a 400 in the v0 envelope, never SQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import Runtime
from support.identity import bearer, owner_key

COMMANDS = ["echo kilo", "echo alpha", "echo mike", "echo delta", "echo bravo", "echo lima", "echo charlie"]


@pytest.fixture(scope="module")
def api(make_runtime_module) -> httpx.Client:  # type: ignore[no-untyped-def]
    rt: Runtime = make_runtime_module({"TARX_LOCAL_NODE": "false"}, name="jobs-sort")
    with httpx.Client(base_url=rt.url, headers=bearer(owner_key(rt)), timeout=30) as c:
        for n, command in enumerate(COMMANDS):  # no node: they stay queued
            assert c.post("/v0/jobs", json={"command": command, "priority": n % 3}).status_code == 201
        yield c


def every_page(api: httpx.Client, size: int, **params: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    page = 1
    while True:
        r = api.get("/v0/jobs", params={"pageSize": size, "page": page, **params})
        assert r.status_code == 200, r.text
        jobs += r.json()["items"]
        if len(r.json()["items"]) < size:
            return jobs
        page += 1


def test_a_sort_orders_every_job_then_pages(api: httpx.Client) -> None:
    ascending = [j["command"] for j in every_page(api, 3, sort="command", order="asc")]
    assert ascending == sorted(COMMANDS)
    first = api.get("/v0/jobs", params={"pageSize": 3, "sort": "command", "order": "desc"}).json()
    assert [j["command"] for j in first["items"]] == sorted(COMMANDS, reverse=True)[:3] and first["total"] == 7
    newest = api.get("/v0/jobs", params={"pageSize": 3}).json()["items"]  # the default: newest first, as before
    assert [j["command"] for j in newest] == COMMANDS[::-1][:3]


def test_the_other_columns_sort_too(api: httpx.Client) -> None:
    by_id = [j["id"] for j in every_page(api, 2, sort="id", order="asc")]
    assert by_id == sorted(by_id) and len(by_id) == 7
    created = [j["createdAt"] for j in every_page(api, 2, sort="createdAt", order="asc")]
    assert created == sorted(created)
    states = every_page(api, 4, sort="state", order="asc", state="QUEUED")  # with the state filter
    assert len(states) == 7 and {j["state"] for j in states} == {"QUEUED"}
    for column in ("labels", "agentId", "attempt", "exitCode", "updatedAt", "priority"):
        assert len(every_page(api, 5, sort=column, order="desc")) == 7, column


@pytest.mark.parametrize("params", [
    {"sort": "created_at; DROP TABLE jobs --"},
    {"sort": "command DESC, (SELECT 1)"},
    {"sort": "created_at"},  # the column's own name is not the wire name
    {"sort": ""},
    {"sort": "x" * 500},
    {"sort": "command", "order": "sideways"},
    {"sort": "command", "order": "asc; DELETE FROM jobs"},
])
def test_a_hostile_sort_is_refused(api: httpx.Client, params: dict[str, str]) -> None:
    r = api.get("/v0/jobs", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "ERROR" and ("sort" in body["message"] or "order" in body["message"]), body
    assert api.get("/v0/jobs", params={"pageSize": 50}).json()["total"] == 7  # nothing happened to the jobs
