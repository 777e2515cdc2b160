"""RAG: indexing throughput, retrieval latency by mode, and recall@5 on a labelled question set.

In-process against the real services (`Services.open` on a temporary data dir, the bundled models):

1. A directory source of N generated files (one chunk each, default 10,000) is indexed through the real pipeline
   (read, chunk, embed with tarx-embed, FTS5 + vectors in SQLite); prints chunks/s.
2. Retrieval latency at k=5 over those N chunks for FTS-only, vector-only and hybrid (the query's embedding
   included): p50 and p99, with the ratio of p99 to the 50 ms goal.
3. recall@5 on tests/data/rag_eval.json (30 passages, one question each) for each mode, with tarx-embed and with
   SmolLM2 (tarx-local) mean-pooled vectors.
4. If `sqlean.py` and `sqlite-vec` are importable: the same vector top-50 through a sqlite-vec vec0 table in the
   same SQLite file against the numpy scan the runtime uses.

    python bench/rag.py [--chunks 10000] [--queries 100] [--words 100]

Goals (issue 13): retrieval p99 <= 50 ms at 10,000 chunks; hybrid recall@5 >= either mode alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EVAL = REPO / "tests" / "data" / "rag_eval.json"
GOAL_P99_MS = 50.0
MODES = ("lexical", "vector", "hybrid")

NOUNS = ("harbour engineer valve storm island orchard lantern glacier meadow falcon copper ledger violin reactor "
         "canyon saddle quarry beacon compass turbine archive vineyard tunnel crystal furnace monastery orbit "
         "lagoon pepper marble ferry tractor satellite garden bridge sculpture telescope harvest thunder pilgrim "
         "cathedral circuit dolphin glacier ribbon spindle tapestry volcano walrus yeast zephyr").split()
VERBS = ("repaired measured painted carried polished inspected buried launched traded mapped sealed tuned "
         "harvested welded catalogued rescued sketched weighed guarded restored").split()
ADJS = ("quiet northern crimson ancient hollow brisk silver patient distant humble vivid frozen rusty "
        "gentle bitter luminous narrow restless solemn tidy").split()


SYLLABLES = "ka lo mi ren tu sa vel dor pi an qu est rho mar lin bo zu fen ti gar".split()


def vocabulary(size: int) -> list[str]:
    """The nouns of the generated text: the list above, then made-up words, `size` words in all. The default
    (about 100 in all) makes every 4-word query match about half the chunks: BM25's worst case."""
    rng = random.Random(size)
    words = list(dict.fromkeys(NOUNS))
    while len(words) < size - len(VERBS) - len(ADJS):
        words.append("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
        words = list(dict.fromkeys(words))
    return words


def sentence(rng: random.Random, nouns: list[str] = NOUNS) -> str:
    return (f"The {rng.choice(ADJS)} {rng.choice(nouns)} {rng.choice(VERBS)} {rng.randint(2, 99)} "
            f"{rng.choice(ADJS)} {rng.choice(nouns)}s near the {rng.choice(nouns)} of {rng.choice(nouns)}.")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def wait_ready(svc: object, project_id: str, source_id: str, limit_s: float) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        source = await svc.rag.get(project_id, source_id)  # type: ignore[attr-defined]
        if source["state"] in ("ready", "error"):
            return source
        if time.monotonic() > deadline:
            raise TimeoutError(f"indexing did not finish in {limit_s} s: {source}")
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, tmp: Path) -> None:
    os.environ["TARX_DATA_DIR"] = str(tmp / "data")
    os.environ["TARX_CONFIG_DIR"] = str(tmp / "config")
    from runtime.config import Settings
    from runtime.inference.schemas import EmbeddingRequest
    from runtime.services import Services
    from runtime.store import identity

    svc = await Services.open(Settings())
    try:
        owner = await identity.owner(svc.db)
        assert owner is not None
        project_id = (await identity.projects_for(svc.db, owner.id))[0].id
        embed_model = svc.rag.default_model
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
              f"{platform.python_version()}; embedding model {embed_model}; vectors: {svc.rag.vector_backend}")

        # ---- 1. indexing ----------------------------------------------------------------------------------------
        rng = random.Random(13)
        nouns = vocabulary(args.words)
        corpus = tmp / "corpus"
        for i in range(args.chunks):
            folder = corpus / f"d{i // 1000:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:05d}.txt").write_text(" ".join(sentence(rng, nouns) for _ in range(2)))
        await svc.chat.embed(EmbeddingRequest(model=embed_model, input="warm up"))  # load outside the timing
        started = time.perf_counter()
        source = await svc.rag.create(project_id, created_by=owner.id, name="bench", description="", kind="directory",
                                      config={"path": str(corpus)}, embedding_model=None)
        source = await wait_ready(svc, project_id, source["id"], args.index_timeout)
        elapsed = time.perf_counter() - started
        print(f"generated text over {len(nouns) + len(VERBS) + len(ADJS)} words")
        print(f"indexed {source['chunks']} chunks from {source['documents']} files in {elapsed:.1f} s: "
              f"{source['chunks'] / elapsed:.1f} chunks/s (state {source['state']})")

        # ---- 2. retrieval latency -------------------------------------------------------------------------------
        files = sorted(corpus.rglob("*.txt"))
        queries = []
        for path in rng.sample(files, min(args.queries, len(files))):
            words = [w.strip(".") for w in path.read_text().split() if len(w) > 3]
            queries.append(" ".join(rng.sample(words, min(4, len(words)))))
        for mode in MODES:
            for q in queries[:5]:
                await svc.rag.search(project_id, [source["id"]], q, 5, mode)  # warm caches
            times = []
            for q in queries:
                t = time.perf_counter()
                await svc.rag.search(project_id, [source["id"]], q, 5, mode)
                times.append((time.perf_counter() - t) * 1000)
            p99 = pct(times, 99)
            print(f"retrieval k=5 {mode:8s} over {source['chunks']} chunks: p50 {statistics.median(times):6.1f} ms  "
                  f"p99 {p99:6.1f} ms  (p99 / {GOAL_P99_MS:.0f} ms goal = {p99 / GOAL_P99_MS:.2f})")

        # ---- 3. recall@5 ----------------------------------------------------------------------------------------
        data = json.loads(EVAL.read_text())
        eval_dir = tmp / "eval"
        eval_dir.mkdir()
        for name, text in data["passages"].items():
            (eval_dir / f"{name}.txt").write_text(text)
        for model in (embed_model, "tarx-local"):
            made = await svc.rag.create(project_id, created_by=owner.id, name=f"eval-{model}", description="",
                                        kind="directory", config={"path": str(eval_dir)}, embedding_model=model)
            made = await wait_ready(svc, project_id, made["id"], 600)
            scores = {}
            for mode in MODES:
                found = 0
                for item in data["questions"]:
                    hits = await svc.rag.search(project_id, [made["id"]], item["q"], 5, mode)
                    found += any(h.document == f"{item['passage']}.txt" for h in hits)
                scores[mode] = found / len(data["questions"])
            best_single = max(scores["lexical"], scores["vector"])
            ratio = scores["hybrid"] / best_single if best_single else float("inf")
            print(f"recall@5 with {model:10s}: " + "  ".join(f"{m} {scores[m]:.2f}" for m in MODES)
                  + f"  (hybrid / best single mode = {ratio:.2f})")

        # ---- 4. sqlite-vec against the numpy scan ---------------------------------------------------------------
        await compare_sqlite_vec(svc, project_id, source["id"], queries[:50])
    finally:
        await svc.close()


async def compare_sqlite_vec(svc: object, project_id: str, source_id: str, queries: list[str]) -> None:
    try:
        import sqlean  # type: ignore[import-not-found]
        import sqlite_vec  # type: ignore[import-not-found]
    except ImportError:
        print("sqlite-vec: not installed (pip install sqlean.py sqlite-vec to compare); skipped")
        return
    import numpy as np

    from runtime.inference.schemas import EmbeddingRequest
    from runtime.store import rag as store

    rows = await store.vectors(svc.db, project_id, source_id)  # type: ignore[attr-defined]
    dim = len(rows[0][1]) // 4
    conn = sqlean.connect(str(svc.settings.db_path))  # type: ignore[attr-defined]
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute(f"CREATE VIRTUAL TABLE bench_vec USING vec0(embedding float[{dim}] distance_metric=cosine)")
    conn.executemany("INSERT INTO bench_vec (rowid, embedding) VALUES (?, ?)", rows)
    conn.commit()
    matrix = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in rows])
    vec_ms, scan_ms, agree = [], [], 0
    for q in queries:
        emb = await svc.chat.embed(EmbeddingRequest(model=svc.rag.default_model, input=q))  # type: ignore
        qv = np.asarray(emb.vectors[0], dtype=np.float32)
        t = time.perf_counter()
        got = [r[0] for r in conn.execute("SELECT rowid FROM bench_vec WHERE embedding MATCH ? AND k = 50",
                                          (qv.tobytes(),))]
        vec_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        sims = matrix @ qv
        top = np.argpartition(-sims, 50)[:50]
        scan_ms.append((time.perf_counter() - t) * 1000)
        agree += len({rows[i][0] for i in top} & set(got))
    conn.execute("DROP TABLE bench_vec")
    conn.commit()
    conn.close()
    print(f"vector top-50 over {len(rows)} vectors: sqlite-vec vec0 p50 {statistics.median(vec_ms):.1f} ms "
          f"p99 {pct(vec_ms, 99):.1f} ms; numpy scan p50 {statistics.median(scan_ms):.1f} ms "
          f"p99 {pct(scan_ms, 99):.1f} ms (vec0 / numpy at p50 = "
          f"{statistics.median(vec_ms) / max(statistics.median(scan_ms), 1e-9):.1f}); "
          f"same top-50: {agree / (50 * len(queries)):.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--words", type=int, default=100, help="vocabulary of the generated text (default 100)")
    ap.add_argument("--index-timeout", type=float, default=3600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tarx-bench-rag-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
