"""`tarx-embed` (all-MiniLM-L6-v2 converted to GGUF on first use), seed 000's `/v1/rag/status` and
`/v1/rag/jobs`, and RAG sources of kind `url` under the http_request address policy."""

from __future__ import annotations

import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import Runtime
from support.identity import bearer, owner_key

SIMILAR = ("A man is eating food.", "A man is eating a piece of bread.")
UNRELATED = ("The stock market fell sharply on Tuesday.", "The girl is carrying a baby.")


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    # private addresses allowed: the url source test serves its page from this machine
    return make_runtime_module({"TARX_RATE_LIMITS": "false", "TARX_AGENT_HTTP_ALLOW_PRIVATE": "true"})


@pytest.fixture(scope="module")
def key(rt: Runtime) -> dict[str, str]:
    return bearer(owner_key(rt))


@pytest.fixture(scope="module")
def project(rt: Runtime, key: dict[str, str]) -> dict[str, str]:
    default = httpx.get(rt.url + "/api/v1/projects", headers=key).json()["items"][0]
    return {**key, "X-Project-ID": default["id"]}


def embed(rt: Runtime, key: dict, inputs: list) -> np.ndarray:
    r = httpx.post(rt.url + "/v1/embeddings", json={"model": "tarx-embed", "input": inputs}, headers=key,
                   timeout=120)
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


# ---- tarx-embed ----------------------------------------------------------------------------------------------


def test_tarx_embed_is_listed_and_converted_on_first_use(rt: Runtime, key: dict) -> None:
    models = {m["id"]: m for m in httpx.get(rt.url + "/v1/models", headers=key).json()["data"]}
    assert models["tarx-embed"]["available"] is True
    vectors = embed(rt, key, [SIMILAR[0]])
    assert vectors.shape == (1, 384)
    gguf = rt.data_dir / "bundled" / "all-MiniLM-L6-v2.f16.gguf"
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert not list(gguf.parent.glob("*.partial-*"))


def test_tarx_embed_similarities_are_sensible(rt: Runtime, key: dict) -> None:
    v = embed(rt, key, [*SIMILAR, *UNRELATED])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert float(v[0] @ v[1]) > 0.7  # the reference model gives 0.755 for this pair
    for i, j in ((0, 2), (0, 3), (1, 2), (2, 3)):
        assert float(v[i] @ v[j]) < 0.3, (i, j, float(v[i] @ v[j]))


def _reference(ids: list[int]) -> np.ndarray:
    """all-MiniLM-L6-v2 in numpy from the package's safetensors: BERT encoder, mean pooling, L2 norm."""
    import json
    import tempfile
    import zipfile
    from pathlib import Path

    from gguf.utility import SafetensorsLocal

    from runtime.inference.embed_model import model_zip

    source = model_zip()
    assert source is not None
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(source) as zf:
            zf.extract("model.safetensors", tmp)
            config = json.loads(zf.read("config.json"))
        with SafetensorsLocal(Path(tmp) / "model.safetensors") as tensors:
            w = {n: np.array(np.frombuffer(t.mmap_bytes(), dtype=np.float32).reshape(t.shape))
                 for n, t in tensors.items() if t.dtype == "F32"}
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]

    def norm(x: np.ndarray, p: str) -> np.ndarray:
        m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * w[p + ".weight"] + w[p + ".bias"]

    def dense(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    erf = np.vectorize(math.erf)
    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q, k, v = (dense(x, f"{p}.attention.self.{m}").reshape(n, heads, -1).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        a = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = norm(dense((a @ v).transpose(1, 0, 2).reshape(n, -1), f"{p}.attention.output.dense") + x,
                 f"{p}.attention.output.LayerNorm")
        h = dense(x, f"{p}.intermediate.dense")
        x = norm(dense(0.5 * h * (1 + erf(h / math.sqrt(2))), f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    e = x.mean(0)
    return e / np.linalg.norm(e)


def test_tarx_embed_matches_a_numpy_reference_of_the_checkpoint(rt: Runtime, key: dict) -> None:
    # bert-base-uncased ids of "[CLS] a man is eating food . [SEP]": the GGUF's WordPiece vocabulary must give them
    ids = [101, 1037, 2158, 2003, 5983, 2833, 1012, 102]
    by_text, by_ids = embed(rt, key, [SIMILAR[0]])[0], embed(rt, key, [ids])[0]
    assert float(by_text @ by_ids) > 0.9999  # the converted tokenizer splits the text into exactly these ids
    assert float(by_ids @ _reference(ids)) > 0.999  # F16 weights against the F32 checkpoint


def test_tarx_embed_refuses_empty_and_foreign_token_ids(rt: Runtime, key: dict) -> None:
    for bad in ([], [[1, 2, 99999]]):
        r = httpx.post(rt.url + "/v1/embeddings", json={"model": "tarx-embed", "input": bad}, headers=key)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_tarx_embed_is_the_default_for_embeddings_and_never_chats(rt: Runtime, key: dict) -> None:
    r = httpx.post(rt.url + "/v1/embeddings", json={"input": "a quiet lake at dawn"}, headers=key, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tarx-embed" and len(r.json()["data"][0]["embedding"]) == 384
    r = httpx.post(rt.url + "/v1/chat/completions", headers=key, timeout=60, json={
        "model": "tarx-embed", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 400 and "embedding model" in r.json()["error"]["message"], r.text
    # chat models stay available for embeddings by name
    r = httpx.post(rt.url + "/v1/embeddings", json={"model": "tarx-local", "input": "a lake"}, headers=key,
                   timeout=120)
    assert r.status_code == 200 and r.json()["model"] == "tarx-local", r.text


def test_rag_sources_default_to_tarx_embed(rt: Runtime, project: dict) -> None:
    r = httpx.post(rt.url + "/api/v1/rags", headers=project,
                   json={"name": "default-embedder", "kind": "text", "config": {"text": "Owls hunt at night."}})
    assert r.status_code == 201, r.text
    assert r.json()["embedding_model"] == "tarx-embed"
    httpx.delete(rt.url + f"/api/v1/rags/{r.json()['id']}", headers=project)


# ---- /v1/rag/status and /v1/rag/jobs ---------------------------------------------------------------------------


def test_rag_status_is_truthful(rt: Runtime, key: dict) -> None:
    assert httpx.get(rt.url + "/v1/rag/status").status_code == 200  # like /v1/capacity: keyless on loopback
    assert httpx.post(rt.url + "/v1/rag/jobs", json={"job_class": "x", "data_boundary": "y"}).status_code == 401
    body = httpx.get(rt.url + "/v1/rag/status", headers=key).json()
    assert body["object"] == "rag.status"
    assert body["bridge_health_reachable"] is True and body["bridge_memory_search_reachable"] is True
    assert body["local_index"]["reachable"] is True
    assert body["local_index"]["embedding_model"] == "tarx-embed"
    assert body["modes"]["hybrid_rrf"] == "live_here" and body["modes"]["graph_summary"] == "planned"
    assert set(body["data_boundaries"]) == {"computer", "account_supercomputer_sync", "private_supercomputer",
                                            "global_public_only"}


def test_rag_jobs_contract(rt: Runtime, key: dict) -> None:
    body = httpx.get(rt.url + "/v1/rag/jobs", headers=key).json()
    assert body["job_classes"]["account_or_private_rerank"]["live_here_on"] == ["computer"]
    assert body["job_classes"]["account_or_private_graph_summary"]["live_here_on"] == []
    assert body["not_live_code"] == "rag_job_runner_not_live"


def post_job(rt: Runtime, headers: dict, **body: object) -> httpx.Response:
    return httpx.post(rt.url + "/v1/rag/jobs", json=body, headers=headers, timeout=120)


def me(rt: Runtime, key: dict) -> str:
    return httpx.get(rt.url + "/api/account", headers=key).json()["id"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"job_class": "account_or_private_everything", "data_boundary": "computer"}, 400, "invalid_job_class"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "the_moon"}, 400, "invalid_data_boundary"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "computer", "privacy_tier": "secret"}, 400,
     "invalid_privacy_tier"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "global_public_only", "privacy_tier": "personal"},
     403, "rag_data_boundary_violation"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "global_public_only", "privacy_tier": "private"},
     403, "rag_data_boundary_violation"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "global_public_only", "privacy_tier": "public",
      "source_ids": ["rag_any"], "query": "q"}, 403, "rag_data_boundary_violation"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "account_supercomputer_sync",
      "privacy_tier": "personal"}, 400, "account_required"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "private_supercomputer",
      "account_id": "acct_example"}, 403, "account_mismatch"),
    ({"job_class": "account_or_private_rerank", "data_boundary": "computer", "query": "q"}, 400, "invalid_request"),
    ({"job_class": 7, "data_boundary": "computer"}, 400, None),
])
def test_rag_jobs_boundary_rules(rt: Runtime, key: dict, body: dict, status: int, code: str | None) -> None:
    r = post_job(rt, key, **body)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code


def test_rag_jobs_valid_but_not_live(rt: Runtime, key: dict) -> None:
    for body in ({"job_class": "account_or_private_rerank", "data_boundary": "account_supercomputer_sync",
                  "privacy_tier": "personal", "account_id": me(rt, key)},
                 {"job_class": "account_or_private_graph_summary", "data_boundary": "computer"},
                 {"job_class": "account_or_private_visual_rag", "data_boundary": "global_public_only",
                  "privacy_tier": "public"}):
        r = post_job(rt, key, **body)
        assert r.status_code == 501, r.text
        assert r.json()["error"]["code"] == "rag_job_runner_not_live"


def test_rag_job_reranks_documents_locally(rt: Runtime, key: dict) -> None:
    docs = ["Tide pools hold anemones and small crabs.", "Sourdough rises because of wild yeast in the starter.",
            "The lighthouse keeper lit the lamp every evening."]
    r = post_job(rt, key, job_class="account_or_private_rerank", data_boundary="computer", privacy_tier="personal",
                 query="why does sourdough bread rise?", documents=docs, k=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["execution_plane"] == "local" and body["candidates"] == 3
    assert body["results"][0]["index"] == 1
    assert len(body["results"]) == 2 and body["results"][0]["score"] > body["results"][1]["score"]


def test_rag_job_reranks_a_source(rt: Runtime, project: dict) -> None:
    text = ("Honeybees cluster around their queen in winter and shiver to make heat.\n\n"
            "Volcanic eruptions are driven by gas dissolved in magma.\n\n"
            "The Sicilian Defence is a chess opening for Black.")
    r = httpx.post(rt.url + "/api/v1/rags", headers=project,
                   json={"name": "rerank-me", "kind": "text", "config": {"text": text}})
    source_id = r.json()["id"]
    deadline = time.monotonic() + 90
    while httpx.get(rt.url + f"/api/v1/rags/{source_id}", headers=project).json()["state"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = post_job(rt, project, job_class="account_or_private_rerank", data_boundary="computer",
                 query="how do bees keep warm", source_ids=[source_id], k=1)
    assert r.status_code == 200, r.text
    (best,) = r.json()["results"]
    assert best["source_id"] == source_id and "bees" in best["text"].lower()
    missing = post_job(rt, project, job_class="account_or_private_rerank", data_boundary="computer",
                       query="bees", source_ids=["rag_nope"])
    assert missing.status_code == 404, missing.text


# ---- url sources (private addresses allowed by this runtime's settings) --------------------------------------


def test_url_source_is_fetched_once_and_searchable(rt: Runtime, project: dict) -> None:
    hits: list[str] = []

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/guide.html")
                self.end_headers()
                return
            body = (b"<html><head><style>p{}</style></head><body><h1>Field guide</h1><p>The barn owl hunts "
                    b"voles at night, locating them by sound alone.</p><p>Kestrels hover by day.</p></body></html>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/moved"
        r = httpx.post(rt.url + "/api/v1/rags", headers=project,
                       json={"name": "owls-url", "kind": "url", "config": {"url": url}})
        assert r.status_code == 201, r.text
        source_id = r.json()["id"]
        deadline = time.monotonic() + 90
        while (got := httpx.get(rt.url + f"/api/v1/rags/{source_id}", headers=project).json())["state"] != "ready":
            assert got["state"] != "error" and time.monotonic() < deadline, got
            time.sleep(0.2)
        assert got["documents"] == 1 and got["chunks"] >= 1
        r = httpx.post(rt.url + f"/api/v1/rags/{source_id}/test", headers=project,
                       json={"query": "how does the barn owl find voles", "k": 1})
        (hit,) = r.json()["hits"]
        assert "barn owl" in hit["text"] and "p{}" not in hit["text"] and hit["document"] == url
        assert hits == ["/moved", "/guide.html"]  # fetched once: the redirect, then the page
    finally:
        server.shutdown()
        server.server_close()


# ---- `tarx rag`: indexing progress on the CLI ----------------------------------------------------------------


def test_cli_follows_indexing_progress(rt: Runtime, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    for i in range(3):
        (tmp_path / f"note{i}.md").write_text(f"# Note {i}\n\nThe tarx CLI follows indexing, note number {i}.")
    base = [sys.executable, "-m", "tarx_console", "--url", rt.url, "--key", owner_key(rt), "rag"]
    done = subprocess.run([*base, "add", "--name", "cli-notes", "--dir", str(tmp_path), "--follow"], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "ready: 3 documents, 3 chunks" in lines[-1] and lines[-1].startswith("rag_")
    assert any(line.startswith("[") and "cli-notes" in line for line in lines)  # the progress lines
    source_id = lines[-1].split()[0]
    listed = subprocess.run([*base, "list"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and source_id in listed.stdout
    missing = subprocess.run([*base, "status", "rag_nope"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "rag_nope" in missing.stderr and "Traceback" not in missing.stderr


def test_dense_text_never_overflows_the_embedders_positions(rt: Runtime, project: dict) -> None:
    """One CJK character is one WordPiece token: chunks of such text come near tarx-embed's 512 positions, and an
    input past them would abort llama.cpp. The source indexes, and the runtime lives on."""
    text = "東京都の図書館では毎週土曜日に子供向けの読み聞かせ会が開かれます。" * 120
    r = httpx.post(rt.url + "/api/v1/rags", headers=project,
                   json={"name": "dense", "kind": "text", "config": {"text": text}})
    assert r.status_code == 201, r.text
    source_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while (got := httpx.get(rt.url + f"/api/v1/rags/{source_id}", headers=project).json())["state"] != "ready":
        assert got["state"] != "error" and time.monotonic() < deadline, got
        time.sleep(0.3)
    assert got["chunks"] >= 8
    r = post_job(rt, project, job_class="account_or_private_rerank", data_boundary="computer", query="図書館",
                 documents=["図" * 1000, "short"], k=2)
    assert r.status_code == 200, r.text
    assert httpx.get(rt.url + "/v1/health").status_code == 200
