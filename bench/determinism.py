"""How often a greedy (temperature 0) answer differs when other requests decode beside it or ran before it.

    python bench/determinism.py [--models tarx-local gemma] [--prompts 12] [--max-tokens 48]

Each prompt is answered alone on a fresh runtime (no cache), then in groups of four at once, then alone again with
the prompts' prefixes in the slots' caches; prints how many answers differ from the first ones.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

import httpx
from harness import start_runtime

TOPICS = ["lighthouses", "bicycles", "the ocean", "volcanoes", "bread", "chess", "owls", "rain", "trains",
          "glaciers", "bees", "clocks", "maps", "tea", "whales", "deserts"]


def ask(url: str, model: str, prompt: str, max_tokens: int) -> str:
    r = httpx.post(url + "/v1/chat/completions", timeout=600, json={
        "model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
        "max_tokens": max_tokens})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def _into(out: list[str], i: int, url: str, model: str, prompt: str, max_tokens: int) -> None:
    out[i] = ask(url, model, prompt, max_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tarx-local", "gemma"])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    prompts = [f"Tell me three facts about {t}." for t in TOPICS[: args.prompts]]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            fresh_proc, fresh, _, _ = start_runtime(Path(tmp), f"fresh-{model}", {"TARX_PARALLEL": "1",
                                                                                 "TARX_CACHE_PROMPT": "false"})
            proc, url, _, _ = start_runtime(Path(tmp), f"batched-{model}")
            try:
                alone = [ask(fresh, model, p, args.max_tokens) for p in prompts]
                beside: list[str] = [""] * len(prompts)

                for g in range(0, len(prompts), 4):
                    threads = [threading.Thread(target=_into, args=(beside, i, url, model, prompts[i], args.max_tokens))
                               for i in range(g, min(g + 4, len(prompts)))]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                after = [ask(url, model, p, args.max_tokens) for p in prompts]
            finally:
                for p in (fresh_proc, proc):
                    p.terminate()
                    p.wait(30)
            d1 = sum(a != b for a, b in zip(alone, beside, strict=True))
            d2 = sum(a != b for a, b in zip(alone, after, strict=True))
            print(f"{model}: {len(prompts)} prompts, {args.max_tokens} tokens: differ beside 3 others {d1}/"
                  f"{len(prompts)}, differ after (prefix cached) {d2}/{len(prompts)}")


if __name__ == "__main__":
    main()
