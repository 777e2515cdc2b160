"""Inference side by side: `tarx serve --headless` (its own process, as users run it) against `llama-server` built from
the llama.cpp that the installed llama-cpp-python vendors (bench/peer.py), and the raw binding in this process.

Same GGUF, same threads, same context, temperature 0. Every measure alternates the systems round by round, and each
round prints the load average beside it, so a busy machine is visible. Decode speed is timed from the first token
to the last.

    python bench/inference.py [--rounds 3] [--max-tokens 128] [--threads N] [--skip-peer] [--decode-only]
                              [--compute-only] [--memory-only]

Goals (issue 16), as ratios tarx / llama-server: single-stream decode >= 1.0; aggregate tok/s with 4 and 8 clients
>= 0.9; TTFT p50 with 4 clients <= 1.5; 1,500-token prefill <= 1.05; 6-turn chat <= 1.05; embeddings/s >= 1.0;
resident memory <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import free_port, start_runtime
from llama_cpp import Llama

from runtime.config import Settings
from runtime.inference.registry import smollm2_path

MODEL = "tarx-local"
PROMPT = "Write a short story about a lighthouse keeper."
LONG_PROMPT = ("The lighthouse keeper kept a log of every ship that passed, the weather, the state of the lamp and "
               "the oil, and the birds that struck the glass at night. ") * 50
TURNS = ["Hello! Who are you?", "Tell me about lighthouses.", "Why are they painted in stripes?",
         "How is the lamp kept lit?", "What happens in a storm?", "Summarise our chat in one line."]
SENTENCES = [f"Sentence number {i} is about {w} and the sea." for i, w in
             enumerate(["ships", "storms", "light", "rocks", "gulls", "fog", "tides", "oil"] * 32)]
CLK = os.sysconf("SC_CLK_TCK")


@dataclass
class Stream:
    ttft: float  # seconds to the first content token
    tokens: int
    decode_seconds: float  # first token to last
    total: float

    @property
    def tps(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.tokens > 1 and self.decode_seconds > 0 else 0.0


# ---- processes -------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (tarx's model runners), in seconds."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (tarx's model runners). Pages the API process and a runner both
    map (shared libraries) count in each: RSS, not PSS, because PSS would also split the model file's pages with the
    other systems in this benchmark that map the same GGUF."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class System:
    name: str
    url: str
    pid: int

    def close(self) -> None: ...


class Tarx(System):
    def __init__(self, folder: Path, threads: int, n_ctx: int, name: str = "tarx",
                 extra: dict[str, str] | None = None) -> None:
        self.name = "tarx"
        self.proc, self.url, _key, _env = start_runtime(folder, name, {"TARX_N_THREADS": str(threads),
                                                                      "TARX_N_CTX": str(n_ctx), **(extra or {})})
        self.pid = self.proc.pid
        self.model = MODEL

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class LlamaServer(System):
    def __init__(self, binary: Path, gguf: Path, threads: int, n_ctx: int, parallel: int, folder: Path,
                 embeddings: bool = False) -> None:
        self.name = "llama-server"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (folder / f"llama-server-np{parallel}{'-emb' if embeddings else ''}.log").open("wb")
        # --embeddings turns llama-server into an embedding server, so embeddings get an instance of their own.
        extra = ["--embeddings", "--pooling", "mean"] if embeddings else []
        self.proc = subprocess.Popen([str(binary), "-m", str(gguf), "-t", str(threads), "-tb", str(threads),
                                      "-c", str(n_ctx), "-np", str(parallel), "--host", "127.0.0.1", "--port",
                                      str(port), *extra],
                                     stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.model = MODEL
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start: see {log.name}")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# ---- one measurement against one system --------------------------------------------------------------------------


def stream(url: str, messages: list[dict], max_tokens: int) -> tuple[Stream, str]:
    body = {"model": MODEL, "messages": messages, "temperature": 0, "seed": 1, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = last = None
    n, usage, parts = 0, None, []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    n += 1
                    parts.append(choice["delta"]["content"])
    tokens = (usage or {}).get("completion_tokens") or n
    first = first or time.perf_counter()
    return Stream(first - start, tokens, (last or first) - first, time.perf_counter() - start), "".join(parts)


def raw_stream(llm: Llama, prompt: str, max_tokens: int) -> Stream:
    llm.reset()
    start = time.perf_counter()
    first = last = None
    n = 0
    for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                            temperature=0, top_k=0, min_p=0, repeat_penalty=1.0, seed=1,
                                            stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    first = first or time.perf_counter()
    return Stream(first - start, n, (last or first) - first, time.perf_counter() - start)


def clients(url: str, n: int, max_tokens: int) -> tuple[float, float]:
    """n concurrent streams: aggregate tok/s (all tokens over the wall time) and the TTFT median."""
    results: list[Stream] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        s, _ = stream(url, [{"role": "user", "content": f"{PROMPT} Number {i}."}], max_tokens)
        with lock:
            results.append(s)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return sum(s.tokens for s in results) / wall, statistics.median(s.ttft for s in results)


def chat6(url: str, max_tokens: int) -> float:
    """A 6-turn chat, the whole history resent each turn: total seconds."""
    messages: list[dict] = []
    start = time.perf_counter()
    for turn in TURNS:
        messages.append({"role": "user", "content": turn})
        _, reply = stream(url, messages, max_tokens)
        messages.append({"role": "assistant", "content": reply})
    return time.perf_counter() - start


def embeddings(url: str, model: str) -> float:
    start = time.perf_counter()
    for i in range(0, len(SENTENCES), 32):
        r = httpx.post(url + "/v1/embeddings", json={"model": model, "input": SENTENCES[i:i + 32]}, timeout=600)
        r.raise_for_status()
    return len(SENTENCES) / (time.perf_counter() - start)


# ---- the table -------------------------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, list[float]]] = {}
        self.order: list[tuple[str, bool]] = []  # (row, higher is better)

    def add(self, row: str, system: str, value: float, higher_better: bool = True) -> None:
        if row not in self.rows:
            self.rows[row] = {}
            self.order.append((row, higher_better))
        self.rows[row].setdefault(system, []).append(value)

    def print(self) -> None:
        print(f"\n{'measure':<62} {'tarx':>9} {'llama-server':>12} {'raw':>9} {'ratio':>7}")
        for row, higher in self.order:
            med = {s: statistics.median(v) for s, v in self.rows[row].items()}
            t, p, r = med.get("tarx"), med.get("llama-server"), med.get("raw")
            ratio = f"{t / p:.2f}" if t and p else ""
            if t and r and not p:
                ratio = f"{t / r:.2f} raw"
            print(f"{row:<62} {_fmt(t):>9} {_fmt(p):>12} {_fmt(r):>9} {ratio:>7}"
                  f"  ({'higher' if higher else 'lower'} is better)")


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}" if v < 100 else f"{v:.0f}"


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=Settings().threads, help="default: tarx's own default")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--clients", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--skip-peer", action="store_true", help="tarx and the raw binding only")
    ap.add_argument("--decode-only", action="store_true",
                    help="only single-stream decode, tarx and llama-server alternating, --rounds times")
    ap.add_argument("--compute-only", action="store_true",
                    help="only the compute-bound rows (1,500-token prefill, 6-turn chat, embeddings/s), tarx and "
                         "llama-server alternating, --rounds times")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory rows, after one chat and one embeddings pass on each system")
    args = ap.parse_args()
    gguf = smollm2_path()
    assert gguf is not None, "the bundled SmolLM2 is not installed"
    binary = None
    if not args.skip_peer:
        from peer import llama_server

        binary = llama_server()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
          f"{platform.release()}; threads={args.threads} n_ctx={args.n_ctx} max_tokens={args.max_tokens}; "
          f"{load()}")
    table = Table()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tarx = Tarx(folder, args.threads, args.n_ctx)
        llm = Llama(str(gguf), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
                    verbose=False)
        peers: dict[int, LlamaServer] = {}  # -np N, or 0 for the embedding instance

        def peer(np: int) -> LlamaServer | None:
            if binary is None:
                return None
            if np not in peers:
                for other in list(peers):  # one llama-server at a time: they would share the cores
                    peers.pop(other).close()
                peers[np] = LlamaServer(binary, gguf, args.threads, args.n_ctx, max(np, 1), folder, np == 0)
            return peers[np]

        try:
            stream(tarx.url, [{"role": "user", "content": "hi"}], 4)  # load the model
            raw_stream(llm, "hi", 4)
            for rnd in range(args.rounds if args.decode_only else 0):
                for system in _ordered([tarx, peer(1)], rnd % 2 == 1):
                    s, _ = stream(system.url, [{"role": "user", "content": f"Round {rnd}. {PROMPT}"}],
                                  args.max_tokens)
                    table.add("single stream decode tok/s (first to last token)", system.name, s.tps)
                print(f"round {rnd + 1}: {load()}", flush=True)
            for rnd in range(args.rounds if args.compute_only else 0):
                compute_round(table, tarx, peer, rnd)
                print(f"round {rnd + 1}: {load()}", flush=True)
            if args.memory_only:
                stream(tarx.url, [{"role": "user", "content": PROMPT}], args.max_tokens)
                embeddings(tarx.url, MODEL)
                if (emb := peer(0)) is not None:
                    embeddings(emb.url, MODEL)
            only = args.decode_only or args.compute_only or args.memory_only
            for rnd in range(0 if only else args.rounds):
                flip = rnd % 2 == 1
                print(f"round {rnd + 1}: {load()}", flush=True)
                single_round(table, tarx, peer(1), llm, args.max_tokens, flip, rnd)
                for n in args.clients:
                    for system in _ordered([tarx, peer(n)], flip):
                        tps, ttft = clients(system.url, n, args.max_tokens)
                        table.add(f"{n} clients, aggregate tok/s", system.name, tps)
                        table.add(f"{n} clients, TTFT p50 s", system.name, ttft, higher_better=False)
                    print(f"  {n} clients done: {load()}", flush=True)
                for system in _ordered([tarx, peer(1)], flip):
                    table.add("6-turn chat, history resent, total s", system.name, chat6(system.url, 32),
                              higher_better=False)
                for system in _ordered([tarx, peer(0)], flip):
                    table.add("embeddings/s, 256 sentences in batches of 32", system.name,
                              embeddings(system.url, MODEL))
                print(f"  chat and embeddings done: {load()}", flush=True)
            if not (args.decode_only or args.compute_only):
                memory_rows(table, tarx, list(peers.values()), folder, args, binary, gguf)
        finally:
            tarx.close()
            for p in peers.values():
                p.close()
            llm.close()
    table.print()


def compute_round(table: Table, tarx: Tarx, peer: Callable[[int], LlamaServer | None], rnd: int) -> None:
    """One round of the compute-bound rows alone (--compute-only), alternating the systems' order."""
    flip = rnd % 2 == 1
    for system in _ordered([tarx, peer(1)], flip):
        s, _ = stream(system.url, [{"role": "user", "content": f"Round {rnd}. {LONG_PROMPT}"}], 1)
        table.add("~1,500-token prompt, TTFT s", system.name, s.ttft, higher_better=False)
        table.add("6-turn chat, history resent, total s", system.name, chat6(system.url, 32), higher_better=False)
    for system in _ordered([tarx, peer(0)], flip):
        table.add("embeddings/s, 256 sentences in batches of 32", system.name, embeddings(system.url, MODEL))


def memory_rows(table: Table, tarx: Tarx, peers: list[LlamaServer], folder: Path, args: argparse.Namespace,
                binary: Path | None, gguf: Path) -> None:
    memory = "resident memory after chat + embeddings, MiB"
    table.add(memory, "tarx", rss_mib(tarx.pid), higher_better=False)
    # The same with one KV cache shared by the slots (settings.kv_unified): llama-server's `-c` semantics,
    # at the price of answers that depend on their neighbours (see bench/determinism.py).
    shared = Tarx(folder, args.threads, args.n_ctx, "tarx-kv-unified", {"TARX_KV_UNIFIED": "true"})
    try:
        stream(shared.url, [{"role": "user", "content": PROMPT}], args.max_tokens)
        embeddings(shared.url, MODEL)
        table.add(f"{memory}, kv_unified", "tarx", rss_mib(shared.pid), higher_better=False)
    finally:
        shared.close()
    if peers:
        p = peers[0]  # the embedding instance, the last one started: -np 1, one KV cache of n_ctx cells
        for mode in ("", ", kv_unified"):
            table.add(f"{memory}{mode}", "llama-server", rss_mib(p.pid), higher_better=False)
        p.close()
    if binary is not None:
        # The same capacity as tarx's default: `parallel` slots that each hold n_ctx tokens. llama-server's `-c` is
        # shared by its slots (`-c 4096 -np 4` gives each 1,024), so it needs -c n_ctx x 4 for that. Both with every
        # slot filled: tarx's KV cache becomes resident as slots fill (runtime/inference/pages.py), llama-server's is
        # resident from the start. tarx's figure also holds its embedding context (llama-server's chat instance
        # cannot embed).
        slots = Settings().parallel
        filled = f"resident memory, {slots} slots x {args.n_ctx} tokens each, all filled, MiB"
        wide = LlamaServer(binary, gguf, args.threads, args.n_ctx * slots, slots, folder)
        try:
            fill(wide.url, slots, args.n_ctx)
            table.add(filled, "llama-server", rss_mib(wide.pid), higher_better=False)
        finally:
            wide.close()
        fill(tarx.url, slots, args.n_ctx)
        table.add(filled, "tarx", rss_mib(tarx.pid), higher_better=False)


def fill(url: str, slots: int, n_ctx: int) -> None:
    """Fill every slot's context: `slots` concurrent prompts of nearly n_ctx tokens, each opening with its own number
    so none reuses another's cells past the chat template."""
    words = " ".join(f"word{i}" for i in range((n_ctx - 200) * 10 // 42))  # ~4.2 SmolLM2 tokens a word
    threads = [threading.Thread(target=stream, args=(url, [{"role": "user", "content": f"{k} {words}"}], 4))
               for k in range(slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _ordered(systems: list[System | None], flip: bool) -> list[System]:
    present = [s for s in systems if s is not None]
    return present[::-1] if flip else present


def single_round(table: Table, tarx: Tarx, peer: LlamaServer | None, llm: Llama, max_tokens: int,
                 flip: bool, rnd: int) -> None:
    runs: list[tuple[str, Callable[[], tuple[Stream, float]]]] = []

    def http(system: System, prompt: str) -> Callable[[], tuple[Stream, float]]:
        def go() -> tuple[Stream, float]:
            cpu0 = cpu_seconds(system.pid)
            s, _ = stream(system.url, [{"role": "user", "content": prompt}], max_tokens)
            return s, cpu_seconds(system.pid) - cpu0
        return go

    def raw(prompt: str) -> Callable[[], tuple[Stream, float]]:
        def go() -> tuple[Stream, float]:
            cpu0 = time.process_time()
            s = raw_stream(llm, prompt, max_tokens)
            return s, time.process_time() - cpu0
        return go

    # Each system sees a prompt it has not cached (prefix reuse would otherwise hide the prefill being measured).
    for prompt, label in ((PROMPT, "short"), (LONG_PROMPT, "long")):
        prompt = f"Round {rnd}. {prompt}"
        runs = [("tarx", http(tarx, prompt))]
        if peer is not None:
            runs.append(("llama-server", http(peer, prompt)))
        runs.append(("raw", raw(prompt)))
        if flip:
            runs.reverse()
        for name, go in runs:
            s, cpu = go()
            if label == "short":
                table.add("single stream decode tok/s (first to last token)", name, s.tps)
                table.add(f"CPU-seconds per {max_tokens}-token request", name, cpu, higher_better=False)
                table.add("TTFT, short prompt, ms", name, s.ttft * 1000, higher_better=False)
            else:
                table.add("~1,500-token prompt, TTFT s", name, s.ttft, higher_better=False)


if __name__ == "__main__":
    main()
