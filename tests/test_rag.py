"""RAG over HTTP: inline text and directory sources, hybrid retrieval, project isolation, RBAC, live re-indexing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Runtime
from support.identity import bearer, owner_key, user_key
from support.redirects import FINAL, FOLLOWED, PUBLIC, REFUSED, redirecting

PASSAGES = [
    "The lighthouse on the northern cape was automated in 1987. Before that, a keeper climbed the spiral stairs "
    "every evening to light the lamp and wind the clockwork that turned the great lens.",
    "Sourdough bread rises because of a starter: a culture of wild yeast and lactic acid bacteria kept alive by "
    "regular feeding with flour and water. The bacteria give the loaf its sour taste.",
    "In the coldest winter months honeybees cluster tightly around their queen and generate heat by shivering "
    "their flight muscles, so the middle of the colony stays near thirty degrees.",
    "Volcanic eruptions are driven by gas dissolved in magma. As magma rises the pressure drops, bubbles form and "
    "expand, and the foam can fragment explosively into ash.",
    "The Sicilian Defence is the most popular reply to the king's pawn opening in chess; Black fights for the "
    "centre from the side with the c-pawn instead of mirroring White.",
    "Tide pools on rocky shores hold anemones, limpets and small crabs that must survive being exposed to air and "
    "sun twice a day when the sea goes out.",
]
WAIT = 90.0  # bounded, generous: the machine running the tests may be busy


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica (enough for pypdf's text extraction)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module({"TARX_RATE_LIMITS": "false"})  # the waits below poll


@pytest.fixture(scope="module")
def owner(rt: Runtime) -> dict[str, str]:
    key = bearer(owner_key(rt))
    default = httpx.get(rt.url + "/api/v1/projects", headers=key).json()["items"][0]
    return {**key, "X-Project-ID": default["id"]}


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def create(rt: Runtime, headers: dict, **body: object) -> dict:
    r = httpx.post(rt.url + "/api/v1/rags", json=body, headers=headers)
    assert r.status_code == 201, r.text
    source = r.json()
    assert source["id"].startswith("rag_") and source["state"] in ("indexing", "ready")
    return source


def ready(rt: Runtime, headers: dict, source_id: str) -> dict:
    found: dict = {}

    def done() -> bool:
        found.update(httpx.get(rt.url + f"/api/v1/rags/{source_id}", headers=headers).json())
        assert found["state"] != "error", found
        return found["state"] == "ready"

    wait_for(done, f"source {source_id} to be indexed")
    return found


def search(rt: Runtime, headers: dict, source_id: str, query: str, k: int = 3) -> list[dict]:
    r = httpx.post(rt.url + f"/api/v1/rags/{source_id}/test", json={"query": query, "k": k}, headers=headers,
                   timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def test_text_source_retrieves_a_paraphrased_passage(rt: Runtime, owner: dict) -> None:
    source = create(rt, owner, name="Notes", kind="text", config={"text": "\n\n".join(PASSAGES * 2)})
    indexed = ready(rt, owner, source["id"])
    assert indexed["documents"] == 1 and indexed["chunks"] >= 2 and indexed["embedding_model"] == "tarx-embed"
    hits = search(rt, owner, source["id"], "How do bees keep warm when it is cold outside in winter?")
    assert "shivering" in hits[0]["text"], hits
    assert hits[0]["source_id"] == source["id"] and hits[0]["vector_rank"] is not None
    assert hits[0]["bm25_rank"] is not None  # hybrid: both lists contributed
    listed = httpx.get(rt.url + "/api/v1/rags", headers=owner).json()
    assert source["id"] in [s["id"] for s in listed["items"]] and listed["page"] == 1

    r = httpx.put(rt.url + f"/api/v1/rags/{source['id']}", headers=owner,
                  json={"name": "Renamed", "config": {"text": PASSAGES[1]}})
    assert r.status_code == 200 and r.json()["name"] == "Renamed", r.text
    assert ready(rt, owner, source["id"])["chunks"] == 1
    assert "shivering" not in search(rt, owner, source["id"], "honeybees winter")[0]["text"]
    assert httpx.delete(rt.url + f"/api/v1/rags/{source['id']}", headers=owner).status_code == 204
    assert httpx.get(rt.url + f"/api/v1/rags/{source['id']}", headers=owner).status_code == 404


def test_invalid_sources_are_refused(rt: Runtime, owner: dict, tmp_path: Path) -> None:
    for body in ({"name": "x", "kind": "text", "config": {}},
                 {"name": "x", "kind": "directory", "config": {"path": str(tmp_path / "missing")}},
                 {"name": "x", "kind": "ftp", "config": {}}):
        r = httpx.post(rt.url + "/api/v1/rags", json=body, headers=owner)
        assert r.status_code in (400, 422) and r.json()["error_code"], r.text
    r = httpx.post(rt.url + "/api/v1/rags", headers=owner,
                   json={"name": "x", "kind": "text", "config": {"text": "hi"}, "embedding_model": "no-such"})
    assert r.status_code == 404 and r.json()["status"] == 404


def test_a_project_never_retrieves_another_projects_chunks(rt: Runtime, owner: dict) -> None:
    other = httpx.post(rt.url + "/api/v1/projects", json={"name": "RAG other"}, headers=owner).json()
    theirs = {**owner, "X-Project-ID": other["id"]}
    secret = create(rt, theirs, name="Secret", kind="text",
                    config={"text": "The zanzibar marmalade recipe uses bitter oranges and cloves."})
    mine = create(rt, owner, name="Mine", kind="text", config={"text": PASSAGES[0]})
    ready(rt, theirs, secret["id"])
    ready(rt, owner, mine["id"])
    # The other project's source is invisible here, as if it did not exist.
    for method, path, body in (("GET", f"/api/v1/rags/{secret['id']}", None),
                               ("POST", f"/api/v1/rags/{secret['id']}/test", {"query": "zanzibar marmalade"}),
                               ("PUT", f"/api/v1/rags/{secret['id']}", {"name": "stolen"}),
                               ("DELETE", f"/api/v1/rags/{secret['id']}", None)):
        r = httpx.request(method, rt.url + path, json=body, headers=owner)
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", (method, path, r.text)
    assert secret["id"] not in [s["id"] for s in httpx.get(rt.url + "/api/v1/rags", headers=owner).json()["items"]]
    hits = search(rt, owner, mine["id"], "zanzibar marmalade oranges cloves", k=10)
    assert all(h["source_id"] == mine["id"] and "zanzibar" not in h["text"] for h in hits)
    assert "zanzibar" in search(rt, theirs, secret["id"], "zanzibar marmalade")[0]["text"]


def test_members_read_and_editors_write(rt: Runtime, owner: dict) -> None:
    project = httpx.post(rt.url + "/api/v1/projects", json={"name": "RAG team"}, headers=owner).json()
    keys = {}
    for role in ("member", "editor"):
        email = f"rag-{role}@example.com"
        r = httpx.post(rt.url + f"/api/v1/projects/{project['id']}/members", headers=owner,
                       json={"email": email, "role": role})
        assert r.status_code == 201, r.text
        keys[role] = {**bearer(user_key(rt, email)), "X-Project-ID": project["id"]}
    body = {"name": "Team notes", "kind": "text", "config": {"text": PASSAGES[3]}}
    r = httpx.post(rt.url + "/api/v1/rags", json=body, headers=keys["member"])
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    source = create(rt, keys["editor"], **body)
    ready(rt, keys["member"], source["id"])
    assert "magma" in search(rt, keys["member"], source["id"], "what makes a volcano explode")[0]["text"]
    for method, extra in (("PUT", {"name": "no"}), ("DELETE", None)):
        r = httpx.request(method, rt.url + f"/api/v1/rags/{source['id']}", json=extra, headers=keys["member"])
        assert r.status_code == 403, r.text
    # A directory source reads the host's files: editors may not add one, only the runtime's owner.
    r = httpx.post(rt.url + "/api/v1/rags", headers=keys["editor"],
                   json={"name": "disk", "kind": "directory", "config": {"path": "/"}})
    assert r.status_code == 403, r.text


def test_directory_source_follows_edits_and_deletes(rt: Runtime, owner: dict, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "tides.md").write_text("# Tide pools\n\n" + PASSAGES[5])
    (docs / "sub" / "bread.html").write_text(f"<html><head><style>p {{}}</style></head><body><p>{PASSAGES[1]}"
                                             "</p><script>var hidden = 1;</script></body></html>")
    (docs / "chess.txt").write_text(PASSAGES[4])
    (docs / "glaciers.pdf").write_bytes(tiny_pdf("Glaciers carve U-shaped valleys as they move downhill."))
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    (docs / ".hidden.md").write_text("never indexed")
    source = create(rt, owner, name="Docs", kind="directory", config={"path": str(docs)})
    assert ready(rt, owner, source["id"])["documents"] == 4
    glacier = search(rt, owner, source["id"], "glaciers carve valleys")[0]
    assert glacier["document"] == "glaciers.pdf" and "U-shaped" in glacier["text"]
    bread = search(rt, owner, source["id"], "sourdough starter yeast")[0]
    assert bread["document"] == "sub/bread.html" and "<p>" not in bread["text"] and "hidden" not in bread["text"]

    (docs / "tides.md").write_text("# Quokkas\n\nQuokkas are small wallabies that live on Rottnest Island.")
    (docs / "chess.txt").unlink()

    def updated() -> bool:
        hits = search(rt, owner, source["id"], "quokka wallabies island anemones limpets Sicilian chess", k=10)
        texts = " ".join(h["text"] for h in hits)
        return "Rottnest" in texts and "limpets" not in texts and "Sicilian" not in texts

    wait_for(updated, "the edit and the delete to be re-indexed")
    indexed = ready(rt, owner, source["id"])
    assert indexed["documents"] == 3
    assert httpx.delete(rt.url + f"/api/v1/rags/{source['id']}", headers=owner).status_code == 204


# ---- url sources: fetched once, under the http_request address policy ----------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:9/page", "http://169.254.169.254/latest/meta-data/",
                                 "http://localhost/", "http://[::1]/", "http://10.0.0.1/", "ftp://8.8.8.8/x",
                                 "file:///etc/passwd"])
def test_url_sources_refuse_private_addresses(rt: Runtime, owner: dict, url: str) -> None:
    r = httpx.post(rt.url + "/api/v1/rags", json={"name": "u", "kind": "url", "config": {"url": url}},
                   headers=owner)
    assert r.status_code == 400 and r.json()["error_code"], r.text
    assert all(s["name"] != "u" for s in httpx.get(rt.url + "/api/v1/rags", headers=owner).json()["items"])


def test_url_source_redirects_are_checked_hop_by_hop() -> None:
    """A public page that redirects to loopback or the metadata address is refused at the redirect (the network
    is a mock transport, so nothing leaves this machine); a public redirect is followed and its HTML read."""
    import asyncio

    from runtime.errors import InvalidRequest
    from runtime.rag.service import fetch_url

    seen: list[str] = []
    transport = redirecting(seen, html="<html><script>x()</script><p>Owls hunt at night.</p></html>")
    for path in REFUSED:
        with pytest.raises(InvalidRequest, match="refused"):
            asyncio.run(fetch_url(PUBLIC + path, False, transport))
    assert seen == [PUBLIC + path for path in REFUSED]
    for path in FOLLOWED:
        seen.clear()
        assert asyncio.run(fetch_url(PUBLIC + path, False, transport)).strip() == "Owls hunt at night."
        assert seen == [PUBLIC + path, PUBLIC + FINAL]
