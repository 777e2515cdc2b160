"""`tarx` as a user scripts it: against a running runtime over HTTP, and on the database when none runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import REPO, Runtime
from support.identity import bearer


def tarx(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tarx_console", *args], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def local_env(rt: Runtime) -> dict[str, str]:
    return {"TARX_DATA_DIR": str(rt.data_dir), "TARX_PORT": str(rt.port),
            "TARX_CONFIG_DIR": str(rt.data_dir.parent / "cli-config")}


def test_create_use_revoke_rejected_over_http(make_runtime) -> None:
    rt = make_runtime(name="cli")
    env = local_env(rt)
    made = tarx("keys", "create", "--kind", "platform", "--name", "script", "--json", env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(key["key"])).status_code == 200
    listed = tarx("keys", "list", "--json", env=env)
    assert listed.returncode == 0 and key["id"] in listed.stdout and key["key"] not in listed.stdout
    # It went over HTTP to the running runtime: the runtime logged the calls.
    assert '"POST /api/v1/platform-keys" 201' in rt.log()
    revoked = tarx("keys", "revoke", key["id"], env=env)
    assert revoked.returncode == 0, revoked.stderr
    r = httpx.get(rt.url + "/api/v1/auth/me", headers=bearer(key["key"]))
    assert r.status_code == 401 and r.json()["error_code"] == "API_KEY_REVOKED"
    again = tarx("keys", "revoke", "key_missing", env=env)
    assert again.returncode == 1 and "not found" in again.stderr
    assert tarx("keys", "create", "--kind", "wizard", "--name", "x", env=env).returncode == 2
    assert tarx("keys", "create", "--kind", "platform", "--scope", "supercomputer", "--name", "x",
                env=env).returncode == 2


def test_tarx_key_entitlement_and_projects(make_runtime) -> None:
    rt = make_runtime(name="cli2")
    env = local_env(rt)
    refused = tarx("keys", "create", "--kind", "tarx", "--scope", "supercomputer", "--name", "h", env=env)
    assert refused.returncode == 1 and "entitlement" in refused.stderr
    assert tarx("entitlements", "grant", "supercomputer", env=env).returncode == 0
    made = tarx("keys", "create", "--kind", "tarx", "--scope", "supercomputer", "--name", "h", env=env)
    assert made.returncode == 0 and made.stdout.strip().splitlines()[-1].startswith("tarx_")
    assert tarx("projects", "create", "Research", env=env).returncode == 0
    projects = json.loads(tarx("projects", "list", "--json", env=env).stdout)
    assert [p["slug"] for p in projects] == ["default", "research"]


def test_works_on_the_database_when_no_runtime_runs(tmp_path: Path, make_runtime) -> None:
    env = {"TARX_DATA_DIR": str(tmp_path / "data"), "TARX_PORT": "9",  # nothing listens on the discard port
           "TARX_CONFIG_DIR": str(tmp_path / "cfg")}
    made = tarx("keys", "create", "--kind", "compute", "--name", "offline", "--max-jobs-per-hour", "3", "--json",
                env=env)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert (tmp_path / "data" / "owner.key").exists()
    rt = make_runtime()  # same data dir: the key minted offline works once a runtime starts
    r = httpx.post(rt.url + "/api/compute/api-keys/list", headers={"X-API-Key": key}, json={})
    assert r.status_code == 200 and r.json()["payload"][0]["maxJobsPerHour"] == 3


def test_login_and_contexts(make_runtime, tmp_path: Path) -> None:
    remote = make_runtime(name="remote")
    env = {"TARX_DATA_DIR": str(tmp_path / "elsewhere"), "TARX_PORT": "9", "TARX_CONFIG_DIR": str(tmp_path / "cfg")}
    key = (remote.data_dir / "owner.key").read_text().strip()
    bad = tarx("login", "--url", remote.url, "--key", "sk-tarx-" + "x" * 38, "--name", "prod", env=env)
    assert bad.returncode == 1
    ok = tarx("login", "--url", remote.url, "--key", key, "--name", "prod", env=env)
    assert ok.returncode == 0, ok.stderr
    contexts = tmp_path / "cfg" / "contexts.json"
    assert stat.S_IMODE(contexts.stat().st_mode) == 0o600
    made = tarx("projects", "create", "Remote Only", env=env)
    assert made.returncode == 0
    assert "remote-only" in [p["slug"] for p in httpx.get(remote.url + "/api/v1/projects",
                                                         headers=bearer(key)).json()["items"]]
    assert tarx("context", "use", "local", env=env).returncode == 0
    local = json.loads(tarx("projects", "list", "--json", env=env).stdout)
    assert "remote-only" not in [p["slug"] for p in local]
    listed = json.loads(tarx("--context", "prod", "projects", "list", "--json", env=env).stdout)
    assert "remote-only" in [p["slug"] for p in listed]
    assert tarx("context", "use", "nope", env=env).returncode == 1


def test_an_unreachable_or_malformed_url_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    env = {"TARX_DATA_DIR": str(tmp_path / "data"), "TARX_CONFIG_DIR": str(tmp_path / "cfg")}
    for url in ("http://127.0.0.1:9", "http://127.0.0.1:99999", "http://[::1", "localhost:9", "not a url"):
        for args in (("--url", url, "keys", "list"), ("--url", url, "jobs", "list"),
                     ("login", "--url", url, "--key", "sk-tarx-x", "--name", "prod")):
            done = tarx(*args, env=env)
            assert done.returncode == 1, (args, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("tarx: ") and "Traceback" not in done.stderr, (args, lines)
            assert done.stdout == ""
            if url == "http://127.0.0.1:9":  # the line says which runtime it could not reach
                assert lines[0].startswith(f"tarx: cannot reach {url}: "), (args, lines)
    assert not (tmp_path / "cfg" / "contexts.json").exists()  # a failed login saved nothing


def test_jobs_submit_list_logs_follow_and_cancel(make_runtime) -> None:
    rt = make_runtime(name="cli-jobs")
    env = local_env(rt)
    made = tarx("jobs", "submit", "for i in 1 2 3; do echo out-$i; done", "--timeout", "60", "--json", env=env)
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    assert job["command"].startswith("for i") and job["timeoutSeconds"] == 60
    followed = tarx("jobs", "logs", job["id"], "--follow", "--json", env=env)  # the in-process node runs it
    assert followed.returncode == 0, followed.stderr
    records = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [r["text"] for r in records if "text" in r] == ["out-1", "out-2", "out-3"]
    assert records[-1]["end"]["state"] == "SUCCEEDED"
    plain = tarx("jobs", "logs", job["id"], env=env)
    assert plain.returncode == 0 and plain.stdout.split() == ["out-1", "out-2", "out-3"]
    failing = json.loads(tarx("jobs", "submit", "echo nope; exit 3", "--json", env=env).stdout)
    ended = tarx("jobs", "logs", failing["id"], "-f", env=env)
    assert ended.returncode == 1 and ended.stdout.strip() == "nope" and "FAILED" in ended.stderr
    slow = json.loads(tarx("jobs", "submit", "sleep 60", "--label", "nobody=has-it", "--json", env=env).stdout)
    assert slow["labels"] == {"nobody": "has-it"} and slow["state"] == "QUEUED"  # no node takes it
    cancelled = tarx("jobs", "cancel", slow["id"], "--json", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "CANCELLED"
    listed = json.loads(tarx("jobs", "list", "--json", env=env).stdout)
    assert listed["total"] == 3 and {j["id"] for j in listed["items"]} == {job["id"], failing["id"], slow["id"]}
    only = json.loads(tarx("jobs", "list", "--state", "CANCELLED", "--json", env=env).stdout)
    assert [j["id"] for j in only["items"]] == [slow["id"]]
    table = tarx("jobs", "list", "--limit", "2", env=env)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["ID", "STATE"]
    assert len(table.stdout.splitlines()) == 3 and "2 of 3" in table.stderr
    missing = tarx("jobs", "logs", "job_nope", env=env)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert tarx("jobs", "submit", "true", "--label", "novalue", env=env).returncode == 2
    # A second project does not break it: jobs act in `default` unless --project says otherwise.
    assert tarx("projects", "create", "Other", env=env).returncode == 0
    assert json.loads(tarx("jobs", "list", "--json", env=env).stdout)["total"] == 3
    assert json.loads(tarx("jobs", "list", "--project", "other", "--json", env=env).stdout)["total"] == 0
    assert tarx("jobs", "list", "--project", "nope", env=env).returncode == 2


def test_project_members_list_add_remove(make_runtime) -> None:
    rt = make_runtime(name="cli-members")
    env = local_env(rt)
    assert tarx("projects", "create", "Team", env=env).returncode == 0
    added = tarx("projects", "members", "add", "team", "pat@example.com", "--role", "editor", "--json", env=env)
    assert added.returncode == 0, added.stderr
    listed = json.loads(tarx("projects", "members", "list", "team", "--json", env=env).stdout)
    roles = {m["email"]: m["role"] for m in listed}
    assert roles["pat@example.com"] == "editor" and "owner" in roles.values()
    text = tarx("projects", "members", "list", "team", env=env).stdout
    assert "pat@example.com" in text and text.splitlines()[0].split() == ["USER", "EMAIL", "NAME", "ROLE"]
    removed = tarx("projects", "members", "remove", "team", "PAT@example.com", "--json", env=env)
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] is True
    after = json.loads(tarx("projects", "members", "list", "team", "--json", env=env).stdout)
    assert "pat@example.com" not in {m["email"] for m in after}
    assert tarx("projects", "members", "remove", "team", "pat@example.com", env=env).returncode == 2
    assert tarx("projects", "members", "list", "nope", env=env).returncode == 2
    bad = tarx("projects", "members", "add", "team", "not-an-email", env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
