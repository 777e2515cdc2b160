"""Workflow cron schedules (issue 14): the next five run times for a time zone, computed here independently of
APScheduler (crontab weekday numbers: 0 = Sunday); bad input is a 422 in the platform envelope; a schedule fires
and starts executions with trigger `schedule`; it is rebuilt from the database after a restart on the same data
dir, and stops when disabled.

Firing is tested for real, on the wall clock: the schedule uses the six-field form with a leading seconds field
(`*/2 * * * * *`, every two seconds), which the API accepts for anyone, not a test hook."""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from conftest import Runtime
from support.identity import bearer, owner_in_default_project, user_key
from support.workflows import create_graph, executions, polling_owner, polling_rt, wait  # noqa: F401 (fixtures)

GRAPH = {
    "nodes": [
        {"id": "start", "type": "trigger", "config": {"trigger_type": "schedule"}},
        {"id": "out", "type": "outputNode", "config": {"template": "tick"}},
    ],
    "edges": [{"source": "start", "target": "out"}],
}
EVERY_2S = "*/2 * * * * *"


def make_workflow(rt: Runtime, owner: dict[str, str], name: str = "scheduled") -> str:
    return create_graph(rt, owner, GRAPH, name)


def put_schedule(rt: Runtime, owner: dict[str, str], workflow_id: str, **body: Any) -> httpx.Response:
    return httpx.put(f"{rt.url}/api/v1/workflows/{workflow_id}/schedule", headers=owner, json=body)


def scheduled_runs(rt: Runtime, owner: dict[str, str], workflow_id: str) -> list[dict[str, Any]]:
    return [e for e in executions(rt, owner, workflow_id) if e["trigger"] == "schedule"]


def wait_for_run(rt: Runtime, owner: dict[str, str], workflow_id: str, after: str = "",
                 timeout: float = 20) -> dict[str, Any]:
    """The first scheduled execution of the workflow created after `after` (an RFC 3339 UTC time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [e for e in scheduled_runs(rt, owner, workflow_id) if e["created_at"] > after]
        if runs:
            return runs[0]
        time.sleep(0.25)
    raise AssertionError(f"no scheduled execution of {workflow_id} within {timeout} s:\n{rt.log()[-3000:]}")


def expected_runs(hour: int, minute: int, weekdays: set[int], tz: str, now: datetime) -> list[str]:
    """The next five `minute hour * * <weekdays>` times after `now`, by walking the calendar in `tz` (Python's
    weekday numbers: Monday = 0)."""
    zone, out = ZoneInfo(tz), []
    day: date = now.astimezone(zone).date()
    while len(out) < 5:
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if day.weekday() in weekdays and local > now:
            out.append(local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        day += timedelta(days=1)
    return out


@pytest.mark.parametrize("cron,tz,hour,minute,weekdays", [
    ("30 9 * * 1-5", "America/New_York", 9, 30, {0, 1, 2, 3, 4}),  # crontab's Monday-Friday
    ("15 18 * * 0,6", "Asia/Kolkata", 18, 15, {5, 6}),  # Sunday is 0 in crontab, Saturday 6; a +05:30 zone
    ("0 23 * * 7", "Pacific/Auckland", 23, 0, {6}),  # 7 is Sunday too; a zone ahead of UTC by 13 hours
])
def test_next_five_run_times_in_a_time_zone(rt: Runtime, owner: dict[str, str], cron: str, tz: str, hour: int,
                                            minute: int, weekdays: set[int]) -> None:
    workflow_id = make_workflow(rt, owner)
    now = datetime.now(UTC)
    r = put_schedule(rt, owner, workflow_id, enabled=True, cron=cron, timezone=tz)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["enabled"] is True and got["cron"] == cron and got["timezone"] == tz
    assert got["next_run_times"] == expected_runs(hour, minute, weekdays, tz, now)
    # the same from GET, and in the workflow's own GET
    assert httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}/schedule", headers=owner).json() == got
    shown = httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}", headers=owner).json()["schedule"]
    assert shown == {"enabled": True, "cron": cron, "timezone": tz, "next_run_times": got["next_run_times"]}


def test_disabled_unset_and_bad_schedules(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    url = f"{rt.url}/api/v1/workflows/{workflow_id}/schedule"
    unset = httpx.get(url, headers=owner).json()
    assert unset["enabled"] is False and unset["cron"] is None and unset["next_run_times"] == []
    assert httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}", headers=owner).json()["schedule"] is None

    bad = [
        ({"enabled": True}, "needs a cron expression"),
        ({"enabled": True, "cron": "every day"}, "fields"),
        ({"enabled": True, "cron": "61 * * * *"}, "not valid"),
        ({"enabled": True, "cron": "* * * * 8"}, "out of range"),
        ({"enabled": True, "cron": "0 0 30 2 *"}, "never fires"),  # February 30th
        ({"enabled": True, "cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}, "time zone"),
        ({"enabled": True, "cron": "0 9 * * *", "timezone": "../../etc/passwd"}, "time zone"),
        ({"enabled": "yes", "cron": "0 9 * * *"}, "enabled"),
        ({"enabled": True, "cron": "0 9 * * *", "when": "now"}, "when"),
    ]
    for body, words in bad:
        r = httpx.put(url, headers=owner, json=body)
        assert r.status_code == 422, (body, r.text)
        err = r.json()
        assert err["status"] == 422 and err["error_code"] == "VALIDATION_ERROR" and words in err["detail"], err

    # disabling keeps the expression and shows no run times; enabling again without one reuses it
    assert put_schedule(rt, owner, workflow_id, enabled=True, cron="0 9 * * *").status_code == 200
    off = put_schedule(rt, owner, workflow_id, enabled=False).json()
    assert off["enabled"] is False and off["cron"] == "0 9 * * *" and off["next_run_times"] == []
    on = put_schedule(rt, owner, workflow_id, enabled=True).json()
    assert on["cron"] == "0 9 * * *" and on["timezone"] == "UTC" and len(on["next_run_times"]) == 5
    assert all(t.endswith("T09:00:00.000Z") for t in on["next_run_times"])

    r = put_schedule(rt, owner, "wf_missing", enabled=True, cron="0 9 * * *")
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    r = httpx.put(url, json={"enabled": True, "cron": "0 9 * * *"})
    assert r.status_code == 401 and r.json()["error_code"] == "AUTH_REQUIRED"


def test_a_cron_not_saved_is_previewed_and_bad_ones_refused(rt: Runtime, owner: dict[str, str]) -> None:
    url = f"{rt.url}/api/v1/schedules/preview"
    now = datetime.now(UTC)
    r = httpx.get(url, headers=owner, params={"cron": " 30  7 * * 1-5 ", "timezone": "Europe/Paris"})
    assert r.status_code == 200, r.text
    assert r.json() == {"cron": "30 7 * * 1-5", "timezone": "Europe/Paris",
                        "next_run_times": expected_runs(7, 30, {0, 1, 2, 3, 4}, "Europe/Paris", now)}  # Mon-Fri
    for params, words in [({"cron": "61 * * * *"}, "not valid"), ({"cron": "0 0 30 2 *"}, "never fires"),
                          ({"cron": "0 9 * * *", "timezone": "../../etc/passwd"}, "time zone"),
                          ({"cron": "x" * 201}, "cron"), ({}, "cron")]:
        r = httpx.get(url, headers=owner, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error_code"] == "VALIDATION_ERROR" and words in r.json()["detail"], r.text
    r = httpx.get(url, params={"cron": "0 9 * * *"})
    assert r.status_code == 401 and r.json()["error_code"] == "AUTH_REQUIRED"


def test_members_read_editors_change_other_projects_never_see(rt: Runtime, owner: dict[str, str]) -> None:
    workflow_id = make_workflow(rt, owner)
    assert put_schedule(rt, owner, workflow_id, enabled=True, cron="0 6 * * *").status_code == 200
    project_id = owner["X-Project-ID"]
    r = httpx.post(f"{rt.url}/api/v1/projects/{project_id}/members", headers=owner,
                   json={"email": "reader@example.com", "role": "member"})
    assert r.status_code in (200, 201), r.text
    member = {**bearer(user_key(rt, "reader@example.com")), "X-Project-ID": project_id}
    seen = httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}/schedule", headers=member)
    assert seen.status_code == 200 and seen.json()["cron"] == "0 6 * * *"
    for r in (put_schedule(rt, member, workflow_id, enabled=False),
              httpx.post(f"{rt.url}/api/v1/webhooks/setup/{workflow_id}", headers=member)):
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    assert httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}/schedule", headers=owner).json()["enabled"] is True
    other = httpx.post(rt.url + "/api/v1/projects", headers=owner, json={"name": "Elsewhere"}).json()
    elsewhere = {**owner, "X-Project-ID": other["id"]}
    assert httpx.get(f"{rt.url}/api/v1/workflows/{workflow_id}/schedule", headers=elsewhere).status_code == 404
    assert put_schedule(rt, owner | elsewhere, workflow_id, enabled=False).status_code == 404
    assert httpx.post(f"{rt.url}/api/v1/webhooks/setup/{workflow_id}", headers=elsewhere).status_code == 404


def test_a_schedule_fires_survives_a_restart_and_stops_when_disabled(rt: Runtime, owner: dict[str, str],
                                                                      make_runtime_module: Any) -> None:
    workflow_id = make_workflow(rt, owner)
    r = put_schedule(rt, owner, workflow_id, enabled=True, cron=EVERY_2S, timezone="Europe/Paris")
    assert r.status_code == 200, r.text
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in r.json()["next_run_times"]]
    assert all((b - a).total_seconds() == 2 for a, b in itertools.pairwise(times))

    first = wait_for_run(rt, owner, workflow_id)
    done = wait(rt, owner, first["id"], timeout=60)
    assert done["status"] == "completed" and done["output"] == "tick" and done["trigger"] == "schedule"

    # the same data dir, a new process: the schedule comes back from the database, nobody PUTs it again
    assert rt.stop() == 0
    restarted_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    again = make_runtime_module({"TARX_RATE_LIMITS": "false"}, name=rt.data_dir.name)
    assert again.data_dir == rt.data_dir
    owner2 = owner_in_default_project(again)
    after = wait_for_run(again, owner2, workflow_id, after=restarted_at)
    assert wait(again, owner2, after["id"], timeout=60)["status"] == "completed"
    started = re.search(r"scheduler started with (\d+) schedule\(s\)", again.log())
    assert started and int(started.group(1)) >= 1, again.log()[-3000:]

    # disabled: no new scheduled executions (one already starting when the PUT lands may still appear)
    assert put_schedule(again, owner2, workflow_id, enabled=False).status_code == 200
    time.sleep(1)
    count = len(scheduled_runs(again, owner2, workflow_id))
    time.sleep(5)
    assert len(scheduled_runs(again, owner2, workflow_id)) == count
