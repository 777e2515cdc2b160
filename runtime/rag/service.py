"""`RagService`: sources (inline text, a directory on disk, a URL fetched once under the http_request address
policy), indexing through the chat seam's embeddings, the directory watchers, and hybrid retrieval (FTS5 BM25 and
vector similarity, fused by reciprocal rank)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from runtime.agents import addresses
from runtime.agents.addresses import AddressRefused, BodyTooLarge
from runtime.auth.access import ProjectContext
from runtime.errors import InvalidRequest, ModelNotFound, NotFound
from runtime.inference.chat import ChatService
from runtime.inference.schemas import EmbeddingRequest
from runtime.rag.chunking import SUFFIXES, bytes_text, chunk, content_kind, file_text
from runtime.store import Database
from runtime.store import rag as store

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("tarx.rag")

KINDS = ("text", "directory", "url")
RRF_K = 60
# Each ranking contributes its head only (this many per requested result, at least FUSE_MIN): a deep tail of one
# list must not outvote the other's top hits. bench/rag.py's labelled set: recall@5 hybrid 0.90 with depth 50,
# 1.00 (tarx-embed) and 0.97 (SmolLM2 vectors) with depth 10, never below either ranking alone.
FUSE_PER_RESULT = 2
FUSE_MIN = 10
STOPWORDS = frozenset(
    "a about all also an and any are as at be been but by can could did do does for from had has have how i if in "
    "into is it its me my no not of on or our so than that the their them then there these they this those to "
    "us was we were what when where which while who whom why will with would you your".split())
EMBED_BATCH = 32
MAX_FILES = 10_000
MAX_FILE_BYTES = 20 * 1024 * 1024
URL_TIMEOUT = 30.0
WATCH_DEBOUNCE_MS = 400
INLINE_PATH = "inline"
SearchMode = Literal["hybrid", "lexical", "vector"]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. `score` is its reciprocal-rank fusion score; the ranks (1-based) are its places in
    the BM25 and vector lists, None where it was not in that list."""

    chunk_id: int
    source_id: str
    document: str
    text: str
    score: float
    bm25_rank: int | None
    vector_rank: int | None


def _not_found(source_id: str) -> NotFound:
    return NotFound(f"RAG source '{source_id}' was not found.", extra={"error_code": "NOT_FOUND"})


def _project_id(project: ProjectContext | str) -> str:
    return project if isinstance(project, str) else project.project.id


def fts_query(text: str) -> str | None:
    """Any of the query's words but common English function words, each quoted (FTS5 syntax in the query is never
    interpreted). Dropping "how", "the", "of"... keeps BM25 from ranking every chunk that shares only those,
    a long noisy list that would outvote the vector ranking in the fusion (bench/rag.py: recall@5 0.80 -> 0.90)."""
    words = [w for w in re.findall(r"\w+", text.lower()) if len(w) > 1 and w not in STOPWORDS]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words)) or None


def rrf(*rankings: Sequence[int], k: int = RRF_K) -> dict[int, float]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for place, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + place)
    return scores


def _stack(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, one row per vector) of a source's stored float32 blobs."""
    import numpy as np  # on first use: an API process that never retrieves does not map numpy (15 MiB)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = (np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]) if rows
              else np.zeros((0, 0), dtype=np.float32))
    return ids, matrix


def _scan_top(matrices: Sequence[tuple[np.ndarray, np.ndarray]], q: np.ndarray,
              limit: int) -> list[tuple[float, int]]:
    """(similarity, chunk id) of each source's `limit` best chunks for the query vector `q` (sources whose vectors
    have another dimension are skipped)."""
    import numpy as np

    scored: list[tuple[float, int]] = []
    for ids, matrix in matrices:
        if not len(ids) or matrix.shape[1] != q.shape[0]:
            continue
        sims = matrix @ q
        top = np.argpartition(-sims, limit)[:limit] if len(sims) > limit else np.arange(len(sims))
        scored.extend((float(sims[i]), int(ids[i])) for i in top)
    return scored


def _scan(root: Path) -> dict[str, tuple[Path, str]]:
    """relative path -> (file, digest of its bytes) for the supported files under `root` (blocking)."""
    found: dict[str, tuple[Path, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in SUFFIXES:
            continue
        try:
            if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            found[rel.as_posix()] = (path, hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError:
            continue
        if len(found) >= MAX_FILES:
            break
    return found


async def fetch_url(url: str, allow_private: bool, transport: httpx.AsyncBaseTransport | None = None) -> str:
    """The text of the document at `url`, fetched under the address policy (runtime/agents/addresses.py)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=URL_TIMEOUT, transport=transport) as client:
        try:
            response = await addresses.fetch(client, "GET", url, allow_private=allow_private,
                                                    max_bytes=MAX_FILE_BYTES)
        except AddressRefused as exc:
            raise InvalidRequest(str(exc), code="address_refused") from exc
        except BodyTooLarge as exc:
            raise InvalidRequest(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise InvalidRequest(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc
    if response.status != 200:
        raise InvalidRequest(f"fetching {url} answered HTTP {response.status}")
    kind = content_kind(response.headers.get("content-type"), response.url)
    return await asyncio.to_thread(bytes_text, response.body, kind)


class RagService:
    def __init__(self, db: Database, chat: ChatService, default_model: str) -> None:
        self.db = db
        self.chat = chat
        self.default_model = default_model
        try:
            chat.engine.registry.get(default_model)
        except ModelNotFound:  # tarx-embed's package is missing: embed with the chat model rather than not at all
            log.warning("embedding model %s is not available; RAG uses %s", default_model,
                        chat.settings.default_model)
            self.default_model = chat.settings.default_model
        self._vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # source id -> (chunk ids, unit vectors)
        self._generation: dict[str, int] = {}  # source id -> count of finished indexings (cache validity)
        self._locks: dict[str, asyncio.Lock] = {}
        self._indexing: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self.vector_backend = "numpy_scan"  # float32 blobs in rag_chunks, scanned per source (cached)

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-scan and watch every directory source (files may have changed while the runtime was down)."""
        for source in await store.all_sources(self.db, "directory"):
            self._schedule(source)
            self._watch(source)

    async def close(self) -> None:
        for source_id in list(self._watchers):
            await self._unwatch(source_id)
        tasks = list(self._indexing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def health(self) -> tuple[bool, bool]:
        """(the local index answers, the default embedding model can be loaded)."""
        try:
            embedder = self.chat.engine.registry.get(self.default_model).available()
        except ModelNotFound:
            embedder = False
        return await store.reachable(self.db), embedder

    # ---- sources ----------------------------------------------------------------------------------------------

    def _config(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        if kind == "text":
            text = config.get("text")
            if not isinstance(text, str) or not text.strip():
                raise InvalidRequest("A text source needs config.text, a non-empty string.")
            return {"text": text}
        if kind == "directory":
            path = config.get("path")
            if not isinstance(path, str) or not path:
                raise InvalidRequest("A directory source needs config.path, a directory on the runtime's disk.")
            resolved = Path(path).expanduser().resolve()
            if not resolved.is_dir():
                raise InvalidRequest(f"config.path '{path}' is not a directory on the runtime's disk.")
            return {"path": str(resolved)}
        if kind == "url":
            url = config.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
                raise InvalidRequest("A url source needs config.url, an absolute http(s) URL.")
            return {"url": url}
        raise InvalidRequest(f"Unknown RAG source kind '{kind}'; expected one of: {', '.join(KINDS)}.")

    async def create(self, project: ProjectContext | str, *, created_by: str, name: str, description: str,
                     kind: str, config: dict[str, Any], embedding_model: str | None) -> dict[str, Any]:
        model = embedding_model or self.default_model
        self.chat.engine.registry.get(model)  # 404 for a model this runtime does not serve
        clean = self._config(kind, config)
        if kind == "url":
            await self._check_address(clean["url"])
        async with self.db.transaction() as tx:
            source = await store.insert_source(tx, project_id=_project_id(project), name=name,
                                               description=description, kind=kind, config=clean,
                                               embedding_model=model, created_by=created_by)
        self._schedule(source)
        if kind == "directory":
            self._watch(source)
        return source

    async def get(self, project: ProjectContext | str, source_id: str) -> dict[str, Any]:
        source = await store.get_source(self.db, _project_id(project), source_id)
        if source is None:
            raise _not_found(source_id)
        return source

    async def list(self, project: ProjectContext | str) -> list[dict[str, Any]]:
        return await store.list_sources(self.db, _project_id(project))

    async def update(self, project: ProjectContext | str, source_id: str, *, name: str | None,
                     description: str | None, config: dict[str, Any] | None) -> dict[str, Any]:
        source = await self.get(project, source_id)
        clean = self._config(source["kind"], config) if config is not None else source["config"]
        if config is not None and source["kind"] == "url":
            await self._check_address(clean["url"])
        async with self.db.transaction() as tx:
            await store.update_source(tx, source["project_id"], source_id, name=name or source["name"],
                                      description=source["description"] if description is None else description,
                                      config=clean)
            if config is not None:
                await store.set_state(tx, source_id, "indexing")
        source = await self.get(project, source_id)
        if config is not None:
            self._schedule(source)
            if source["kind"] == "directory":
                await self._unwatch(source_id)
                self._watch(source)
        return source

    @property
    def allow_private(self) -> bool:
        """The http_request tool's setting: url sources follow the same address policy."""
        return self.chat.settings.agent_http_allow_private

    async def _check_address(self, url: str) -> None:
        try:
            await addresses.check_url(url, self.allow_private)
        except AddressRefused as exc:
            raise InvalidRequest(f"config.url is refused: {exc}", code="address_refused") from exc

    async def delete(self, project: ProjectContext | str, source_id: str) -> None:
        source = await self.get(project, source_id)
        await self._unwatch(source_id)
        task = self._indexing.pop(source_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        async with self.db.transaction() as tx:
            await store.delete_source(tx, source["project_id"], source_id)
        self._vectors.pop(source_id, None)
        self._locks.pop(source_id, None)
        self._generation.pop(source_id, None)

    # ---- indexing ---------------------------------------------------------------------------------------------

    def _schedule(self, source: dict[str, Any]) -> None:
        """(Re-)index the source in the background; a request while one runs queues one more pass."""
        source_id = source["id"]
        previous = self._indexing.get(source_id)

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self._index(source)

        task = asyncio.create_task(run(), name=f"tarx-rag-index-{source_id}")
        self._indexing[source_id] = task
        task.add_done_callback(lambda t: self._indexing.pop(source_id, None) if self._indexing.get(
            source_id) is t else None)

    def _max_chars(self, model: str) -> int | None:
        """Characters of a text the model can always take whole: a WordPiece token covers at least one character,
        and [CLS] and [SEP] are added, so context_length - 2 characters never exceed the model's positions (a
        longer input would abort llama.cpp). None for models without such a limit."""
        limit = self.chat.engine.registry.get(model).context_length
        return None if limit is None else limit - 2

    async def embed(self, model: str, texts: list[str]) -> list[bytes]:
        """Float32 vector blobs for `texts`; a text longer than the model can take is embedded by its start."""
        cap = self._max_chars(model)
        if cap is not None:
            texts = [t[:cap] for t in texts]
        out: list[bytes] = []
        for start in range(0, len(texts), EMBED_BATCH):
            result = await self.chat.embed(EmbeddingRequest(model=model, input=texts[start:start + EMBED_BATCH]))
            out.extend(array.array("f", v).tobytes() for v in result.vectors)  # float32, as numpy reads them
        return out

    async def _index(self, source: dict[str, Any]) -> None:
        source_id, project_id = source["id"], source["project_id"]
        lock = self._locks.setdefault(source_id, asyncio.Lock())
        async with lock:
            try:
                current = await store.get_source(self.db, project_id, source_id)
                if current is None:
                    return
                async with self.db.transaction() as tx:
                    await store.set_state(tx, source_id, "indexing")
                await self._index_documents(current)
                async with self.db.transaction() as tx:
                    await store.set_state(tx, source_id, "ready")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("indexing RAG source %s failed: %s", source_id, exc)
                async with self.db.transaction() as tx:
                    await store.set_state(tx, source_id, "error", str(exc) or type(exc).__name__)
            finally:
                self._generation[source_id] = self._generation.get(source_id, 0) + 1
                self._vectors.pop(source_id, None)

    async def _index_documents(self, source: dict[str, Any]) -> None:
        source_id, project_id, model = source["id"], source["project_id"], source["embedding_model"]
        indexed = await store.digests(self.db, source_id)
        fetched: str | None = None
        if source["kind"] == "text":
            text = source["config"]["text"]
            files = {INLINE_PATH: (None, hashlib.sha256(text.encode()).hexdigest())}
        elif source["kind"] == "url":
            # Fetched once per creation or change of the URL, under the address policy.
            fetched = await fetch_url(source["config"]["url"], self.allow_private)
            files = {source["config"]["url"]: (None, hashlib.sha256(fetched.encode()).hexdigest())}
        else:
            files = await asyncio.to_thread(_scan, Path(source["config"]["path"]))
        for rel, (path, digest) in files.items():
            if indexed.get(rel) == digest:
                continue
            if fetched is not None:
                body = fetched
            elif path is None:
                body = source["config"]["text"]
            else:
                try:
                    body = await asyncio.to_thread(file_text, path)
                except Exception as exc:  # an unreadable or malformed file is skipped, not the whole source
                    log.warning("RAG source %s: cannot read %s: %s", source_id, path, exc)
                    continue
            pieces = chunk(body)
            blobs = await self.embed(model, pieces) if pieces else []
            async with self.db.transaction() as tx:
                await store.replace_document(tx, project_id=project_id, source_id=source_id, path=rel,
                                             digest=digest, chunks=list(zip(pieces, blobs, strict=True)))
                await store.set_state(tx, source_id, "indexing")  # the counts so far: progress
        gone = set(indexed) - set(files)
        if gone:
            async with self.db.transaction() as tx:
                for rel in gone:
                    await store.delete_document(tx, source_id, rel)

    # ---- the directory watcher --------------------------------------------------------------------------------

    def _watch(self, source: dict[str, Any]) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self._watch_loop(source, stop), name=f"tarx-rag-watch-{source['id']}")
        self._watchers[source["id"]] = (task, stop)

    async def _unwatch(self, source_id: str) -> None:
        found = self._watchers.pop(source_id, None)
        if found is not None:
            task, stop = found
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _watch_loop(self, source: dict[str, Any], stop: asyncio.Event) -> None:
        from watchfiles import awatch  # only a runtime with a directory source pays for the watcher

        root = source["config"]["path"]
        while not stop.is_set():
            try:
                async for _changes in awatch(root, stop_event=stop, debounce=WATCH_DEBOUNCE_MS, step=50,
                                             recursive=True):
                    self._schedule(source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the directory vanished, or the watcher failed: retry until it is back
                log.warning("watching RAG source %s (%s) failed: %s", source["id"], root, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5)

    # ---- retrieval --------------------------------------------------------------------------------------------

    async def _matrix(self, project_id: str, source_id: str) -> tuple[np.ndarray, np.ndarray]:
        cached = self._vectors.get(source_id)
        if cached is None:
            generation = self._generation.get(source_id, 0)
            rows = await store.vectors(self.db, project_id, source_id)
            cached = await asyncio.to_thread(_stack, rows)  # a copy of every vector: not on the event loop
            # Never cache a half-indexed source, nor rows read before an indexing that finished meanwhile.
            if source_id not in self._indexing and self._generation.get(source_id, 0) == generation:
                self._vectors[source_id] = cached
        return cached

    async def _vector_ranking(self, project_id: str, sources: list[dict[str, Any]], query: str,
                              limit: int) -> list[int]:
        import numpy as np

        by_model: dict[str, list[str]] = {}
        for source in sources:
            by_model.setdefault(source["embedding_model"], []).append(source["id"])
        scored: list[tuple[float, int]] = []
        for model, source_ids in by_model.items():
            q = np.frombuffer((await self.embed(model, [query]))[0], dtype=np.float32)
            matrices = [await self._matrix(project_id, source_id) for source_id in source_ids]
            # The scan runs in a worker thread (numpy releases the GIL in the product), so it overlaps BM25 on
            # the database thread and never holds up the event loop's other requests.
            scored.extend(await asyncio.to_thread(_scan_top, matrices, q, limit))
        scored.sort(key=lambda s: -s[0])
        return [chunk_id for _, chunk_id in scored[:limit]]

    async def search(self, project: ProjectContext | str, source_ids: Sequence[str] | None, query: str,
                     k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        """The `k` best chunks for `query` among the project's sources (`source_ids`; None: all of them). Ids
        that are not the project's sources are ignored: a project never retrieves another project's chunks.
        `mode` "lexical" or "vector" ranks by that list alone (the benchmark compares the three)."""
        project_id = _project_id(project)
        sources = await store.list_sources(self.db, project_id)
        if source_ids is not None:
            wanted = set(source_ids)
            sources = [s for s in sources if s["id"] in wanted]
        if not sources or not query.strip() or k < 1:
            return []
        depth = max(FUSE_MIN, FUSE_PER_RESULT * k)
        match = fts_query(query)

        async def lexical_ranking() -> list[int]:
            if not match or mode == "vector":
                return []
            return await store.bm25(self.db, project_id, [s["id"] for s in sources], match, depth)

        async def vector_ranking() -> list[int]:
            return [] if mode == "lexical" else await self._vector_ranking(project_id, sources, query, depth)

        # Side by side: BM25 runs on the database thread while the query is embedded in the model's runner.
        lexical, semantic = await asyncio.gather(lexical_ranking(), vector_ranking())
        fused = rrf(lexical, semantic)
        best = sorted(fused, key=lambda c: -fused[c])[:k]
        rows = await store.chunks(self.db, project_id, best)
        lex_rank = {c: i for i, c in enumerate(lexical, start=1)}
        vec_rank = {c: i for i, c in enumerate(semantic, start=1)}
        return [Hit(chunk_id=c, source_id=rows[c]["source_id"], document=rows[c]["path"], text=rows[c]["text"],
                    score=fused[c], bm25_rank=lex_rank.get(c), vector_rank=vec_rank.get(c))
                for c in best if c in rows]
