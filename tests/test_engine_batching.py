"""Continuous batching, prefix reuse, runner isolation and the sampling surface, over HTTP against a real runtime."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from llama_cpp import Llama

from conftest import Runtime, chat_body
from runtime.inference.registry import smollm2_path
from support.runners import resident_mib, runner_pids

PROMPTS = ["Say hello", "Name three colors", "What is 2+2?", "Write a haiku about rain"]


@pytest.fixture(scope="module")
def rt(make_runtime_module) -> Runtime:
    return make_runtime_module({"TARX_LOCAL_NODE": "false", "TARX_PARALLEL": "4"}, name="batching")


@pytest.fixture(scope="module")
def vocab() -> Llama:
    path = smollm2_path()
    assert path is not None
    return Llama(str(path), vocab_only=True, verbose=False)


def answer(rt: Runtime, content: str, **kw: object) -> dict:
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(content, **kw))
    assert r.status_code == 200, r.text
    return r.json()


def text(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def stats(rt: Runtime) -> dict:
    return rt.health()["models"]["tarx-local"]["stats"]


def together(rt: Runtime, prompts: list[str], **kw: object) -> list[dict]:
    out: list[dict] = [{} for _ in prompts]

    def run(i: int) -> None:
        out[i] = answer(rt, prompts[i], **kw)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_a_greedy_answer_does_not_depend_on_what_ran_beside_or_before_it(rt: Runtime) -> None:
    alone = [text(answer(rt, p, max_tokens=24)) for p in PROMPTS]
    beside = [text(b) for b in together(rt, PROMPTS, max_tokens=24)]
    again = [text(answer(rt, p, max_tokens=24)) for p in PROMPTS]  # now with their prompts in slots' caches
    assert beside == alone
    assert again == alone
    assert len(set(alone)) == 4  # four different answers: the streams did not leak into each other


def test_gemma_greedy_answers_do_not_depend_on_what_ran_beside_them(rt: Runtime) -> None:
    alone = [text(answer(rt, p, model="gemma", max_tokens=16)) for p in PROMPTS]
    beside = [text(b) for b in together(rt, PROMPTS, model="gemma", max_tokens=16)]
    assert beside == alone


def test_requests_decode_together_in_slots(rt: Runtime) -> None:
    """Four streams run at once: each is well under way before any of them ends."""
    firsts: dict[int, float] = {}
    ends: dict[int, float] = {}

    def stream(i: int) -> None:
        with rt.client() as c, c.stream("POST", "/v1/chat/completions",
                                        json=chat_body(PROMPTS[i], max_tokens=48, stream=True)) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    firsts.setdefault(i, time.monotonic())
        ends[i] = time.monotonic()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(firsts) == 4 and len(ends) == 4
    assert max(firsts.values()) < min(ends.values())
    slots = httpx.get(rt.url + "/v1/capacity").json()["slots"]
    assert slots["tarx-local"] == {"total": 4, "busy": 0}


def test_a_resent_chat_history_reuses_the_cached_prefix(rt: Runtime) -> None:
    system = {"role": "system", "content": "You are a terse assistant for a lighthouse keeper. " * 8}
    first = [system, {"role": "user", "content": "What is a lighthouse?"}]
    body = {"model": "tarx-local", "temperature": 0, "max_tokens": 12}
    with rt.client() as c:
        r1 = c.post("/v1/chat/completions", json={**body, "messages": first}).json()
        before = stats(rt)
        turn2 = [*first, {"role": "assistant", "content": text(r1)}, {"role": "user", "content": "And why?"}]
        r2 = c.post("/v1/chat/completions", json={**body, "messages": turn2}).json()
    after = stats(rt)
    reused = after["prompt_tokens_reused"] - before["prompt_tokens_reused"]
    assert reused >= r1["usage"]["prompt_tokens"] - 1, (reused, r1["usage"], r2["usage"])
    assert reused < r2["usage"]["prompt_tokens"]


def test_a_runner_killed_mid_stream_fails_its_stream_and_the_next_request_succeeds(rt: Runtime) -> None:
    answer(rt, "Say hello", max_tokens=1)
    pids = runner_pids(rt)  # every model's runner (others may be loaded); killing an idle one is harmless
    assert pids
    lines: list[str] = []
    killed = False
    with rt.client() as c, c.stream("POST", "/v1/chat/completions",
                                    json=chat_body("Count from 1 to 1000.", max_tokens=1500, stream=True)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(line)
            if sum('"content":"' in x for x in lines) == 3 and not killed:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed = True
    data = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert "error" in data[-1], data[-1]
    assert data[-1]["error"]["code"] == "runner_crashed"
    assert "data: [DONE]" not in lines
    assert rt.proc.poll() is None  # the API process lives on
    body = answer(rt, "Say hello", max_tokens=4)
    assert text(body)
    assert not set(runner_pids(rt)) & set(pids)
    assert stats(rt)["runner_restarts"] >= 1


def test_a_chat_model_embeds_in_its_chat_runner_while_a_stream_flows(rt: Runtime) -> None:
    sentences = [f"Sentence {i} is about the sea." for i in range(8)]
    with rt.client() as c:
        alone = [c.post("/v1/embeddings", json={"model": "tarx-local", "input": s}).json()["data"][0]["embedding"]
                 for s in sentences[:2]]
    pids = runner_pids(rt)
    got: dict = {}

    def embed() -> None:
        with rt.client() as c:
            got["r"] = c.post("/v1/embeddings", json={"model": "tarx-local", "input": sentences})

    worker = threading.Thread(target=embed)
    tokens_after_embed_started = 0
    with rt.client() as c, c.stream("POST", "/v1/chat/completions",
                                    json=chat_body("Count from 1 to 100.", max_tokens=48, stream=True)) as r:
        for line in r.iter_lines():
            if '"content":"' not in line:
                continue
            if not worker.is_alive() and "r" not in got:
                worker.start()
            elif "r" not in got:
                tokens_after_embed_started += 1
    worker.join(120)
    assert got["r"].status_code == 200, got["r"].text
    vectors = [d["embedding"] for d in got["r"].json()["data"]]
    assert len(vectors) == 8 and vectors[:2] == alone  # bit-identical to each sentence embedded alone
    assert tokens_after_embed_started > 0  # the stream kept flowing while the inputs were embedded
    assert sorted(runner_pids(rt)) == sorted(pids)  # no second runner (and no second copy of the weights)


def test_a_long_input_embeds_in_chunks_as_llama_cpp_pools_it_and_without_a_logits_buffer(rt: Runtime) -> None:
    """The runner takes the mean of the hidden states itself, chunk by chunk, and stops each graph before the output
    layer (runtime/inference/embedder.py). The vector must match llama.cpp's own mean pooling of the whole input in
    one batch, and the runner must not keep a tokens x vocabulary buffer: 1,500 SmolLM2 tokens of logits are 281 MiB,
    and with llama.cpp's own pooling the runner grew by 583 MiB here."""
    long = "The keeper wrote down every ship that passed the point. " * 130  # ~1,500 tokens: 12 chunks
    with rt.client() as c:
        assert c.post("/v1/embeddings", json={"model": "tarx-local", "input": "warm up"}).status_code == 200
        (pid,) = runner_pids(rt)
        before = resident_mib(pid)
        r = c.post("/v1/embeddings", json={"model": "tarx-local", "input": long}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 1400
    grown = resident_mib(pid) - before
    assert grown < 150, grown  # the KV cells of the input (~33 MiB) and one chunk's buffers
    ours = r.json()["data"][0]["embedding"]
    reference = Llama(str(smollm2_path()), embedding=True, pooling_type=1, n_ctx=2048, n_batch=2048,  # 1: MEAN
                      n_ubatch=2048, n_threads=2, verbose=False)
    try:
        theirs = reference.embed(long, normalize=True)
    finally:
        reference.close()
    assert sum(a * b for a, b in zip(ours, theirs, strict=True)) > 0.9999  # both unit vectors


def test_a_shared_kv_cache_serves_slots_side_by_side(make_runtime) -> None:
    unified = make_runtime({"TARX_LOCAL_NODE": "false", "TARX_KV_UNIFIED": "true", "TARX_N_CTX": "1024"})
    bodies = together(unified, PROMPTS, max_tokens=8)
    assert all(text(b) for b in bodies)
    long = "The keeper wrote down every ship. " * 90  # ~660 tokens: far past a quarter of the shared context
    body = answer(unified, long, max_tokens=4)
    assert body["usage"]["prompt_tokens"] > 1024 // 2


def test_a_slots_kv_cache_becomes_resident_as_it_fills(make_runtime) -> None:
    """Four slots of 4,096 SmolLM2 cells are 360 MiB of KV cache, which llama.cpp clears (commits) at load
    (runtime/inference/pages.py gives the zero pages back). Slots that copy a shared prefix from each other copy only
    its cells, not the whole stream. Memory grows with what the slots hold."""
    rt = make_runtime({"TARX_LOCAL_NODE": "false", "TARX_PARALLEL": "4", "TARX_N_CTX": "4096"})
    assert all(text(b) for b in together(rt, PROMPTS, max_tokens=16))  # the prompts share the template's prefix
    (pid,) = runner_pids(rt)
    short = resident_mib(pid)
    assert short < 300, short  # weights (92 MiB mapped) and libraries; the whole KV cache would add 360
    long = "The keeper wrote down every ship that passed the point. " * 150  # ~1,700 tokens
    assert answer(rt, long, max_tokens=2)["usage"]["prompt_tokens"] > 1500
    assert resident_mib(pid) - short > 20, (short, resident_mib(pid))  # ~1,700 cells of 22.5 KiB became resident


def test_logprobs_and_top_logprobs(rt: Runtime) -> None:
    body = answer(rt, "Say hello", max_tokens=6, logprobs=True, top_logprobs=3)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    assert "".join(e["token"] for e in content) == text(body)
    for e in content:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
        assert e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][-1]["logprob"]
        assert e["top_logprobs"][0]["token"] == e["token"]  # greedy: the sampled token is the likeliest
    streamed = []
    with rt.client() as c, c.stream("POST", "/v1/chat/completions",
                                    json=chat_body("Say hello", max_tokens=6, logprobs=True, stream=True)) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                choice = (json.loads(line[6:])["choices"] or [{}])[0]
                streamed += ((choice.get("logprobs") or {}).get("content") or [])
    assert [e["token"] for e in streamed] == [e["token"] for e in content]
    assert answer(rt, "Say hello", max_tokens=4)["choices"][0]["logprobs"] is None


def test_logit_bias_bans_and_forces_tokens(rt: Runtime, vocab: Llama) -> None:
    plain = answer(rt, "Say hello", max_tokens=4, logprobs=True)
    first = plain["choices"][0]["logprobs"]["content"][0]["token"]
    (first_id,) = vocab.tokenize(first.encode(), add_bos=False, special=False)
    banned = answer(rt, "Say hello", max_tokens=4, logit_bias={str(first_id): -100}, logprobs=True)
    assert banned["choices"][0]["logprobs"]["content"][0]["token"] != first
    forced_id = vocab.tokenize(b" zebra", add_bos=False, special=False)[0]
    forced = answer(rt, "Say hello", max_tokens=1, logit_bias={str(forced_id): 100})
    assert text(forced) == vocab.detokenize([forced_id]).decode()


def test_a_split_multibyte_character_is_never_sent_as_a_replacement_character(rt: Runtime, vocab: Llama) -> None:
    ids = vocab.tokenize("🦒".encode(), add_bos=False, special=False)
    assert len(ids) > 1  # the character spans several byte tokens
    body = answer(rt, "Say hello", max_tokens=1, logit_bias={str(ids[0]): 100})
    assert "\ufffd" not in text(body)
    assert body["usage"]["completion_tokens"] == 1


def test_seed_top_k_and_min_p(rt: Runtime) -> None:
    warm = {"temperature": 1.2, "max_tokens": 12}
    a = text(answer(rt, "Tell me a story", seed=11, **warm))
    b = text(answer(rt, "Tell me a story", seed=11, **warm))
    assert a == b
    greedy = text(answer(rt, "Tell me a story", max_tokens=12))
    assert text(answer(rt, "Tell me a story", seed=5, top_k=1, **warm)) == greedy
    assert text(answer(rt, "Tell me a story", seed=5, min_p=1.0, **warm)) == greedy
    assert text(answer(rt, "Tell me a story", repeat_penalty=1.3, max_tokens=12))


@pytest.mark.parametrize("extra", [
    {"logit_bias": {"abc": 1}},
    {"logit_bias": {"5": 500}},
    {"logit_bias": {"999999999": 1}},
    {"top_logprobs": 3},
    {"logprobs": True, "top_logprobs": 21},
    {"top_k": -1},
    {"min_p": 2},
    {"repeat_penalty": 0},
])
def test_bad_sampling_fields_are_400(rt: Runtime, extra: dict) -> None:
    with rt.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body("Say hello", max_tokens=2, **extra))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
