"""The runtime as a process: settings sources, the store, model discovery, health, release truth, shutdown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import LONG_PROMPT, REPO, Runtime, chat_body, free_port
from runtime.inference.registry import smollm2_path
from runtime.store.db import migrations


def test_version_is_release_truth_and_not_cached(runtime: Runtime) -> None:
    r = httpx.get(runtime.url + "/api/version")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    for key in ("version", "build", "commit", "deployment", "download_url", "updater_manifest_url", "notes"):
        assert key in body
    assert body["release"]["tarx"] == body["version"]
    assert {"web", "electron"} <= set(body["release"])
    assert "version" in body["web"] and {"version", "released_at"} <= set(body["electron"])


def test_openapi_and_docs_are_served(runtime: Runtime) -> None:
    spec = httpx.get(runtime.url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"] and "/api/version" in spec["paths"]
    docs = httpx.get(runtime.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_one_log_line_per_request(runtime: Runtime) -> None:
    marker = f"/v1/models/log-probe-{time.monotonic_ns()}"
    httpx.get(runtime.url + marker)
    time.sleep(0.2)
    lines = [line for line in runtime.log().splitlines() if marker in line]
    assert len(lines) == 1 and '"GET ' in lines[0] and " 404 " in lines[0]


def test_store_is_one_wal_database_with_migrations_and_request_log(make_runtime) -> None:
    rt = make_runtime()
    with rt.client() as c:
        for _ in range(3):
            assert c.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": "x"}).status_code == 200
    assert rt.stop() == 0
    db = rt.data_dir / "tarx.db"
    assert db.is_file()
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0  # closed cleanly
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    applied = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert applied == [version for version, _, _ in migrations()] and applied[0] == 1
    kinds = [r[0] for r in con.execute("SELECT kind FROM inference_requests ORDER BY created_at")]
    assert kinds == ["chat", "chat", "chat", "embedding"]
    assert con.execute("SELECT SUM(completion_tokens) FROM inference_requests").fetchone()[0] == 6
    con.close()


def test_restart_keeps_identity_and_reapplies_no_migration(make_runtime) -> None:
    first = make_runtime()
    instance = first.health()["instance_id"]
    assert first.stop() == 0
    second = make_runtime()  # same data dir name -> same database
    assert second.health()["instance_id"] == instance


def test_sigterm_ends_streams_and_exits_cleanly(make_runtime) -> None:
    rt = make_runtime()
    with rt.client() as c, c.stream("POST", "/v1/chat/completions",
                                    json=chat_body(LONG_PROMPT, max_tokens=3000, stream=True)) as r:
        lines = r.iter_lines()
        while '"content":"' not in next(lines):
            pass
        rt.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rest = list(lines)  # the stream ends instead of running to 3,000 tokens
        assert time.monotonic() - started < 10
    # The stream closes properly with an in-band error saying why, not a cut connection.
    assert any("runtime_shutting_down" in line for line in rest), rest
    assert rt.proc.wait(15) == 0
    assert "database closed" in rt.log()


def test_sigint_exits_cleanly(make_runtime) -> None:
    rt = make_runtime()
    rt.proc.send_signal(signal.SIGINT)
    assert rt.proc.wait(15) == 0


def test_settings_from_toml_file(make_runtime, tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.toml").write_text('default_model = "gemma"\nqueue_max = 3\n')
    rt = make_runtime(config_dir=config)
    health = rt.health()
    assert health["default_model"] == "gemma"
    assert health["queues"]["deep"]["limit"] == 3


def test_env_port_and_host(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TARX_PORT": str(port), "TARX_HOST": "127.0.0.1", "TARX_DATA_DIR": str(tmp_path / "d"),
           "TARX_CONFIG_DIR": str(tmp_path / "c")}
    proc = subprocess.Popen([sys.executable, "-m", "tarx_console", "serve", "--headless"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert (tmp_path / "d" / "tarx.db").is_file()
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_gguf_dropped_in_models_dir_is_served(make_runtime, tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    smol = smollm2_path()
    assert smol is not None
    (models / "my-mini.gguf").symlink_to(smol)
    rt = make_runtime()
    with rt.client() as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert "my-mini" in ids
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=3) | {"model": "my-mini"})
        assert r.status_code == 200 and r.json()["model"] == "my-mini"
        # Added while running: appears without a restart.
        (models / "later.gguf").symlink_to(smol)
        assert "later" in [m["id"] for m in c.get("/v1/models").json()["data"]]


# ChatML that refuses system messages, as some models' templates refuse roles that do not alternate.
REFUSING_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System messages are not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_chat_template_that_refuses_the_messages_is_a_400_and_the_model_serves_on(make_runtime,
                                                                                     tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    smol = smollm2_path()
    assert smol is not None
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--force", "--chat-template",
                    REFUSING_TEMPLATE, str(smol), str(models / "strict.gguf")], check=True, capture_output=True)
    rt = make_runtime()
    with rt.client() as c:
        body = chat_body(max_tokens=3) | {"model": "strict"}
        refused = c.post("/v1/chat/completions", json=body | {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "invalid_messages" and "System messages are not supported" in error["message"]
        r = c.post("/v1/chat/completions", json=body)  # the same runner, still up
        assert r.status_code == 200, r.text
    assert rt.health()["models"]["strict"]["stats"]["loads"] == 1


def test_health_is_503_when_default_model_is_missing(make_runtime) -> None:
    rt = make_runtime({"TARX_DEFAULT_MODEL": "not-installed"})
    r = httpx.get(rt.url + "/v1/health")
    assert r.status_code == 503
    assert "not-installed" in r.json()["error"]


def test_health_is_503_when_default_model_fails_to_load(make_runtime, tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / "broken.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    rt = make_runtime({"TARX_DEFAULT_MODEL": "broken"})
    assert httpx.get(rt.url + "/v1/health").status_code == 200  # not tried yet; the file looks like a GGUF
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body() | {"model": "broken"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "model_unavailable"
    health = httpx.get(rt.url + "/v1/health")
    assert health.status_code == 503 and health.json()["models"]["broken"]["state"] == "error"
    # The bundled model is unaffected.
    with rt.client() as c:
        assert c.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
