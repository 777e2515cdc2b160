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
