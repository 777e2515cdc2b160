"""Continuous batching on llama.cpp's low-level API: many generations share one context, one decode per step.

Runs inside a model's runner process (runtime/inference/runner.py), on one thread, and never blocks: the runner
calls `add`, `cancel` and `step` and forwards the events each returns. Every request owns one sequence id (a slot)
and a sampler chain; each step decodes one token for every generating slot plus a chunk of a joining prompt, so
running streams keep flowing while a long prompt is evaluated. A slot keeps the tokens its KV cells hold after its
request ends, and a new request whose prompt shares a prefix with any slot's tokens reuses those cells (its own, or
copied from another slot), so a resent chat history or a long shared system prompt is not evaluated again.

CPU time is measured per step (the process's CPU clock: llama.cpp's threads included) and apportioned to the
requests in the step by the tokens each put in the batch.
"""

from __future__ import annotations

import codecs
import ctypes
import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp

from runtime.errors import ContextLengthExceeded, InvalidRequest, TarxError
from runtime.inference import prompts
from runtime.inference.embedder import ContextEmbedder, Event, error_tuple
from runtime.inference.order import Order
from runtime.inference.pages import zero_pages_released
from runtime.inference.stops import StopMatcher

if TYPE_CHECKING:
    from runtime.inference.registry import PromptFormat
    from runtime.inference.weights import Weights


# When llama.cpp refuses a grammar (runtime/inference/constraints.py builds them): the converter writes some patterns
# (like `\d`) as invalid GBNF, and llama.cpp caps how far repetitions may expand. Checked before the request takes a
# slot, so the client gets a 400.
GRAMMAR_REFUSED = ("the JSON schema compiles to a grammar llama.cpp refuses: too many repetitions (lower "
                   "maxLength/maxItems), or a 'pattern' it cannot express")


@dataclass
class _Active:
    order: Order
    sampler: Any  # llama_sampler_p
    prompt: list[int]
    stop_ids: set[int]
    pending: list[int]  # prompt tokens not yet evaluated
    budget: int
    deadline: float | None
    started: float
    matcher: StopMatcher
    decoder: codecs.IncrementalDecoder
    parts: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    next_token: int | None = None  # sampled, to be decoded in the next step
    n_out: int = 0
    cpu: float = 0.0
    ttft_ms: float | None = None
    reused: int = 0


@dataclass
class _Slot:
    seq: int
    cells: list[int] = field(default_factory=list)  # the tokens this sequence's KV cells hold, from position 0
    active: _Active | None = None
    freed_at: float = 0.0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Batcher:
    def __init__(self, model: Weights, prompt_format: PromptFormat, *, n_ctx: int, n_batch: int, parallel: int,
                 threads: int, prefix_reuse: bool, prefill_chunk: int, kv_unified: bool = False) -> None:
        """`model` (owned by the batcher from now on) holds the weights decoded with and tokenizes prompts."""
        self.model = model
        self.prompt_format = prompt_format
        self.parallel = max(1, parallel)
        self.n_batch = max(n_batch, self.parallel)
        self.prefill_chunk = max(1, min(prefill_chunk, self.n_batch))
        # Sliding-window models keep only the window's cells, so a stored prefix may be gone: no reuse for them.
        self.prefix_reuse = prefix_reuse and model.n_swa() == 0
        params = llama_cpp.llama_context_default_params()
        # Every slot gets the whole context: its own stream of n_ctx cells, or a share of one n_ctx (kv_unified).
        params.n_ctx = n_ctx if kv_unified else n_ctx * self.parallel
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.parallel
        # By default one KV stream per sequence. In a unified cache a sequence's cells land wherever there is room,
        # which changes the summation order inside attention: measured, 11 of 12 greedy answers changed when four
        # ran together. Separate streams keep every answer what it is alone (tests/test_engine_batching.py).
        params.kv_unified = kv_unified
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        with zero_pages_released():  # a slot's KV cache becomes resident as it fills, not all at once
            self.ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx) // (1 if kv_unified else self.parallel)  # one sequence's most
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [_Slot(i) for i in range(self.parallel)]
        self._ended: list[Event] = []  # requests that finished while sampling this step
        self.embedder = ContextEmbedder(model, n_ctx=self.n_ctx, threads=threads)
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        self.embedder.close()
        for slot in self.slots:
            if slot.active is not None:
                llama_cpp.llama_sampler_free(slot.active.sampler)
                slot.active = None
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        self.model.close()

    # ---- requests ---------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.embedder.busy or any(s.active is not None for s in self.slots)

    def embed(self, job_id: str, inputs: list[str | list[int]]) -> list[Event]:
        """Queue an embedding request: its inputs are embedded one per step, between the chat batches."""
        return self.embedder.embed(job_id, inputs)

    def add(self, order: Order) -> list[Event]:
        """Take a request into a free slot (the engine never sends more than `parallel`)."""
        try:
            return self._add(order)
        except TarxError as exc:
            return [("failed", order.id, error_tuple(exc))]

    def _add(self, order: Order) -> list[Event]:
        free = [s for s in self.slots if s.active is None]
        if not free:
            raise TarxError("no free slot in the model's runner", status=503, type="server_error",
                            code="model_unavailable")
        prompt = prompts.render(self.model, self.prompt_format, order.turns, order.raw_prompt)
        n_prompt = len(prompt.tokens)
        if n_prompt >= self.n_ctx:
            raise ContextLengthExceeded(f"The prompt is {n_prompt} tokens; this model's context is {self.n_ctx} "
                                        "tokens.")
        if any(t < 0 or t >= self.n_vocab for t in order.logit_bias):
            raise InvalidRequest(f"logit_bias names a token outside this model's vocabulary (0..{self.n_vocab - 1})",
                                 code="invalid_logit_bias")
        sampler = self._sampler(order)
        slot, reused = self._place(free, prompt.tokens)
        now = time.monotonic()
        deadline = None if order.seconds_left is None else order.sent_at + order.seconds_left
        slot.active = _Active(
            order=order, sampler=sampler, prompt=prompt.tokens,
            stop_ids=set(prompt.stop_token_ids) | set(order.stop_token_ids), pending=prompt.tokens[reused:],
            budget=min(order.max_tokens, self.n_ctx - n_prompt), deadline=deadline, started=now,
            matcher=StopMatcher(order.stops),
            # "replace" only mends bytes that can never form a character: an incomplete one is held until it
            # completes, and one still incomplete at the end is dropped, never sent as U+FFFD.
            decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"), reused=reused)
        return [("started", order.id, n_prompt, reused)]

    def _place(self, free: list[_Slot], tokens: list[int]) -> tuple[_Slot, int]:
        """Choose a free slot for `tokens` and prepare its cells; returns it and how many prompt tokens it reuses."""
        if not self.prefix_reuse:
            slot = min(free, key=lambda s: s.freed_at)
            self._drop(slot, 0)
            return slot, 0
        own = {s.seq: _common_prefix(s.cells, tokens) for s in self.slots}
        slot = max(free, key=lambda s: (own[s.seq], -s.freed_at))  # the longest prefix, else the least recently used
        source = max(self.slots, key=lambda s: own[s.seq])
        keep = own[slot.seq]
        if own[source.seq] > keep and source is not slot and self._copy(source, slot):
            keep = own[source.seq]
        keep = min(keep, len(tokens) - 1)  # the last prompt token is always evaluated: its logits start the answer
        self._drop(slot, keep)
        return slot, keep

    def _copy(self, source: _Slot, slot: _Slot) -> bool:
        """Give `slot` a copy of the source slot's cells (trimmed to the shared prefix by the caller).

        Through a sequence's saved state, not llama_memory_seq_cp: across streams that copies the whole stream, every
        page of n_ctx cells, which makes the whole of the slot's context resident (runtime/inference/pages.py).
        """
        size = llama_cpp.llama_state_seq_get_size(self.ctx, source.seq)
        state = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx, state, size, source.seq)
        if not written or not llama_cpp.llama_state_seq_set_data(self.ctx, state, written, slot.seq):
            self._drop(slot, 0)
            return False
        slot.cells = list(source.cells)
        return True

    def _drop(self, slot: _Slot, keep: int) -> None:
        """Forget the slot's cells from position `keep` on."""
        if keep < len(slot.cells) or keep == 0:
            if not llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, keep, -1):
                llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
                keep = 0
        slot.cells = slot.cells[:keep]

    def _sampler(self, order: Order) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if order.logit_bias:
            biases = (llama_cpp.llama_logit_bias * len(order.logit_bias))(
                *(llama_cpp.llama_logit_bias(token=t, bias=b) for t, b in order.logit_bias.items()))
            add(chain, llama_cpp.llama_sampler_init_logit_bias(self.n_vocab, len(order.logit_bias), biases))
        if order.repeat_penalty != 1.0 or order.frequency_penalty or order.presence_penalty:
            add(chain, llama_cpp.llama_sampler_init_penalties(self.n_vocab, 64, order.repeat_penalty,
                                                              order.frequency_penalty, order.presence_penalty))
        if order.grammar:
            grammar = llama_cpp.llama_sampler_init_grammar(self.vocab, order.grammar.encode(), b"root")
            if not grammar:
                llama_cpp.llama_sampler_free(chain)
                raise InvalidRequest(GRAMMAR_REFUSED, code="invalid_json_schema")
            add(chain, grammar)
        if order.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        if order.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(order.top_k))
        if order.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(order.top_p, 1))
        if order.min_p > 0:
            add(chain, llama_cpp.llama_sampler_init_min_p(order.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(order.temperature))
        seed = order.seed if order.seed is not None else random.randrange(2**31)
        add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _piece(self, tok: int) -> bytes:
        """The token's bytes (special tokens render as nothing, as in the answer text); cached per token."""
        piece = self._pieces.get(tok)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
            if n < 0:  # longer than the buffer: -n is the size it needs
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, tok, buf, len(buf), 0, False)
            piece = self._pieces[tok] = buf.raw[: max(n, 0)]
        return piece

    def cancel(self, job_id: str) -> list[Event]:
        """End a running request at once; its slot is free for the next one."""
        for slot in self.slots:
            if slot.active is not None and slot.active.order.id == job_id:
                return [self._finish(slot, "cancelled", None)]
        return self.embedder.cancel(job_id)

    # ---- the step ---------------------------------------------------------------------------------------------

    def step(self) -> list[Event]:
        """Decode one batch: a token for each generating slot and a chunk of waiting prompts (and embed one input
        of a waiting embedding request before it)."""
        events: list[Event] = self.embedder.step()
        now = time.monotonic()
        for slot in self.slots:  # route limits apply between steps as well as between tokens
            a = slot.active
            if a is not None and a.deadline is not None and now >= a.deadline and a.next_token is not None:
                events.append(self._finish(slot, "length", "max_latency_ms"))
        b = self.batch
        n = 0
        rows: list[tuple[_Slot, int]] = []  # (slot, batch index of its logits)
        counts: dict[int, int] = {}
        for slot in self.slots:
            a = slot.active
            if a is None or a.next_token is None:
                continue
            self._put(b, n, a.next_token, len(slot.cells), slot.seq, True)
            slot.cells.append(a.next_token)
            a.next_token = None
            rows.append((slot, n))
            counts[slot.seq] = 1
            n += 1
        room = min(self.n_batch - n, self.prefill_chunk if n else self.n_batch)
        for slot in sorted((s for s in self.slots if s.active and s.active.pending), key=lambda s: s.active.started):
            if room <= 0:
                break
            a = slot.active
            assert a is not None
            chunk, a.pending = a.pending[:room], a.pending[room:]
            for j, tok in enumerate(chunk):
                last = not a.pending and j == len(chunk) - 1
                self._put(b, n, tok, len(slot.cells), slot.seq, last)
                slot.cells.append(tok)
                if last:
                    rows.append((slot, n))
                n += 1
            counts[slot.seq] = len(chunk)
            room -= len(chunk)
        if n == 0:
            return events
        b.n_tokens = n
        cpu0 = time.process_time()
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc == 1:  # no room in the KV cache: give up what idle slots keep and try once more
            for slot in self.slots:
                if slot.active is None and slot.cells:
                    self._drop(slot, 0)
            rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            return events + self._decode_failed(rc, counts)
        spent = time.process_time() - cpu0
        for slot in self.slots:
            a = slot.active
            if a is not None and slot.seq in counts:
                a.cpu += spent * counts[slot.seq] / n
        for slot, idx in rows:
            a = slot.active
            assert a is not None
            cpu1 = time.process_time()
            events.extend(self._sample(slot, a, idx, cpu1))
        events.extend(self._ended)
        self._ended = []
        return events

    @staticmethod
    def _put(b: Any, i: int, tok: int, pos: int, seq: int, logits: bool) -> None:
        b.token[i] = tok
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    def _decode_failed(self, rc: int, counts: dict[int, int]) -> list[Event]:
        events = []
        for slot in self.slots:
            if slot.active is not None and slot.seq in counts:
                self._drop(slot, 0)
                order = slot.active.order
                llama_cpp.llama_sampler_free(slot.active.sampler)
                slot.active = None
                err = TarxError(f"the model could not evaluate the batch (llama_decode returned {rc}); the context "
                                "is full", status=503, type="server_error", code="context_full")
                events.append(("failed", order.id, error_tuple(err)))
        return events

    def _sample(self, slot: _Slot, a: _Active, idx: int, cpu0: float) -> list[Event]:
        order = a.order
        tok = llama_cpp.llama_sampler_sample(a.sampler, self.ctx, idx)
        entry = self._logprob(idx, tok, order.top_logprobs) if order.logprobs else None
        a.cpu += time.process_time() - cpu0  # sampling (and the logprobs' softmax) is this request's alone
        if tok in a.stop_ids or llama_cpp.llama_vocab_is_eog(self.vocab, tok):
            self._ended.append(self._finish(slot, "stop", None))
            return []
        if order.max_cpu_seconds is not None and a.cpu >= order.max_cpu_seconds:
            self._ended.append(self._finish(slot, "length", "max_joules"))
            return []
        a.n_out += 1
        piece = self._piece(tok)
        text = a.matcher.feed(a.decoder.decode(piece))
        if entry is not None:
            a.logprobs.append(entry)
        events: list[Event] = []
        if text:
            if a.ttft_ms is None:
                a.ttft_ms = (time.monotonic() - a.started) * 1000
            a.parts.append(text)
        if text or entry is not None:
            events.append(("token", order.id, text, entry))
        if a.matcher.stopped:
            self._ended.append(self._finish(slot, "stop", None))
        elif a.n_out >= a.budget:
            self._ended.append(self._finish(slot, "length", None))
        elif a.deadline is not None and time.monotonic() >= a.deadline:
            self._ended.append(self._finish(slot, "length", "max_latency_ms"))
        else:
            a.next_token = tok
        return events

    def _logprob(self, idx: int, tok: int, top: int) -> dict[str, Any]:
        """OpenAI's logprobs entry for the sampled token: the model's own distribution (before bias or grammar)."""
        import numpy as np  # only here: a runner that is never asked for logprobs does without its 10 MiB

        ptr = llama_cpp.llama_get_logits_ith(self.ctx, idx)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
        peak = float(logits.max())
        lse = peak + math.log(float(np.exp(logits - peak).sum()))
        piece = self._piece(tok)
        entry: dict[str, Any] = {"token": piece.decode("utf-8", errors="replace"), "logprob": float(logits[tok]) - lse,
                                 "bytes": list(piece), "top_logprobs": []}
        if top > 0:
            best = np.argpartition(-logits, top)[:top]
            best = best[np.argsort(-logits[best])]
            for t in best:
                p = self._piece(int(t))
                entry["top_logprobs"].append({"token": p.decode("utf-8", errors="replace"),
                                              "logprob": float(logits[t]) - lse, "bytes": list(p)})
        return entry

    def _finish(self, slot: _Slot, reason: str, limited_by: str | None) -> Event:
        a = slot.active
        assert a is not None
        slot.active = None
        slot.freed_at = time.monotonic()
        llama_cpp.llama_sampler_free(a.sampler)
        tail = ""
        if reason not in ("cancelled",) and not a.matcher.stopped:
            tail = a.matcher.flush()  # an incomplete UTF-8 character still held by the decoder is dropped
            if tail:
                a.parts.append(tail)
        done = {"finish_reason": reason, "prompt_tokens": len(a.prompt), "completion_tokens": a.n_out,
                "ttft_ms": a.ttft_ms, "total_ms": (time.monotonic() - a.started) * 1000, "cpu_seconds": a.cpu,
                "text": "".join(a.parts), "tail": tail, "limited_by": limited_by,
                "logprobs": a.logprobs if a.order.logprobs else None, "reused": a.reused}
        return ("done", a.order.id, done)
