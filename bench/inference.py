"""Streaming throughput and time-to-first-token: the runtime's HTTP API against raw llama-cpp-python.

One process holds both: the runtime's uvicorn server on a background thread (loopback, ephemeral port) and a raw
`Llama` with the same settings. The same prompts stream through each, alternating, temperature 0. Both evaluate
every prompt afresh (the runtime's default `cache_prompt = false`; `reset()` before each raw call).

    python bench/inference.py [--rounds 3] [--max-tokens 128] [--models tarx-local gemma]

Goal (issue #2): tokens/s ratio >= 0.95 and TTFT overhead <= 20 ms on both bundled models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import free_port
from llama_cpp import Llama

from runtime.config import Settings
from runtime.inference import constraints, prompts
from runtime.inference.registry import ModelRegistry
from runtime.server import build_server

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle works, step by step.",
    "List ten facts about the ocean.",
]


@dataclass
class Run:
    ttft_ms: float
    tokens: int
    seconds: float
    text: str

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds


def start_runtime(settings: Settings) -> threading.Thread:
    server = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("runtime did not start")
        time.sleep(0.05)
    return thread


def via_http(client: httpx.Client, model: str, prompt: str, max_tokens: int) -> Run:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "top_p": 1,
            "seed": 1, "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft, parts, tokens = None, [], 0
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                text = choice["delta"].get("content")
                if text:
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    parts.append(text)
    return Run((ttft or 0) * 1000, tokens, time.perf_counter() - start, "".join(parts))


def via_raw(llm: Llama, prompt_tokens: list[int], max_tokens: int) -> Run:
    llm.reset()
    start = time.perf_counter()
    ttft, parts, tokens = None, [], 0
    for chunk in llm.create_completion(prompt_tokens, max_tokens=max_tokens, temperature=0, top_p=1, top_k=0,
                                       min_p=0, repeat_penalty=1.0, seed=1, stream=True):
        text = chunk["choices"][0]["text"]
        tokens += 1
        if text:
            ttft = ttft if ttft is not None else time.perf_counter() - start
            parts.append(text)
    text = "".join(parts)
    # A stream chunk is one sampled token, except the end-of-generation chunk, which carries no text.
    if chunk["choices"][0]["finish_reason"] == "stop" and not chunk["choices"][0]["text"]:
        tokens -= 1
    return Run((ttft or 0) * 1000, tokens, time.perf_counter() - start, text)


def bench_model(name: str, settings: Settings, client: httpx.Client, rounds: int, max_tokens: int) -> dict:
    spec = ModelRegistry(settings).get(name)
    path = spec.resolve(settings.data_dir)
    llm = Llama(str(path), n_ctx=settings.n_ctx, n_threads=settings.threads, n_threads_batch=settings.threads,
                n_batch=settings.n_batch, verbose=False)
    none = constraints.Constraint(None, [], "none")
    token_lists = {p: prompts.render(llm, spec.prompt_format, [{"role": "user", "content": p}], none).tokens
                   for p in PROMPTS}
    via_http(client, name, PROMPTS[0], 8)  # warm up: load the runtime's copy
    via_raw(llm, token_lists[PROMPTS[0]], 8)
    http_runs, raw_runs, mismatched = [], [], 0
    for r in range(rounds):
        for i, prompt in enumerate(PROMPTS):
            order = ("raw", "http") if (r + i) % 2 == 0 else ("http", "raw")
            got = {}
            for side in order:
                got[side] = (via_raw(llm, token_lists[prompt], max_tokens) if side == "raw"
                             else via_http(client, name, prompt, max_tokens))
            mismatched += got["raw"].text != got["http"].text
            raw_runs.append(got["raw"])
            http_runs.append(got["http"])
    llm.close()
    tps_http = sum(x.tokens for x in http_runs) / sum(x.seconds for x in http_runs)
    tps_raw = sum(x.tokens for x in raw_runs) / sum(x.seconds for x in raw_runs)
    ttft_http = statistics.median(x.ttft_ms for x in http_runs)
    ttft_raw = statistics.median(x.ttft_ms for x in raw_runs)
    return {"model": name, "tps_http": tps_http, "tps_raw": tps_raw, "ratio": tps_http / tps_raw,
            "ttft_http_ms": ttft_http, "ttft_raw_ms": ttft_raw, "ttft_overhead_ms": ttft_http - ttft_raw,
            "runs": len(http_runs), "text_mismatches": mismatched}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--models", nargs="+", default=["tarx-local", "gemma"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), port=free_port(), log_requests=False)
        start_runtime(settings)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.system()} {platform.release()}; threads={settings.threads} n_ctx={settings.n_ctx}")
        print(f"{'model':<11} {'tok/s http':>10} {'tok/s raw':>10} {'ratio':>6} {'TTFT http':>10} "
              f"{'TTFT raw':>9} {'overhead':>9}  runs")
        with httpx.Client(base_url=settings.base_url, timeout=300) as client:
            for name in args.models:
                r = bench_model(name, settings, client, args.rounds, args.max_tokens)
                verdict = "ok" if r["ratio"] >= 0.95 and r["ttft_overhead_ms"] <= 20 else "MISSES GOAL"
                differed = f"; outputs differed in {r['text_mismatches']} runs" if r["text_mismatches"] else ""
                print(f"{name:<11} {r['tps_http']:>10.1f} {r['tps_raw']:>10.1f} {r['ratio']:>6.3f} "
                      f"{r['ttft_http_ms']:>8.1f}ms {r['ttft_raw_ms']:>7.1f}ms {r['ttft_overhead_ms']:>+7.1f}ms  "
                      f"{r['runs']} ({verdict}; goal ratio >= 0.95, overhead <= 20 ms"
                      f"{differed})")


if __name__ == "__main__":
    main()
