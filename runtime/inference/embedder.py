"""Embedding vectors inside a model's runner: each input is decoded alone, so its vector never depends on the rest.

A sentence-embedding model (tarx-embed, BERT) has a runner of its own; a chat model embeds in its chat runner, beside
its batcher. Either way a `ContextEmbedder` does it: a llama.cpp context of its own over the runner's weights (no
second copy of the model and no second process, which once doubled the runtime's memory), one chunk of one input per
step so running chat streams keep flowing. The context is sized to the longest input seen so far, growing on demand up
to the model's context, so short sentences never pay for a 4,096-token context.

The vector is the mean of the model's final hidden states over the input's tokens, taken here rather than by llama.cpp
(pooling NONE): llama.cpp's own pooling comes after a causal model's output layer in the graph, which computes logits
for every token of the input (a fifth of SmolLM2's work; llama-server pays it too) and copies them into an output
buffer of tokens x vocabulary floats (1.2 GiB resident after one 3,000-token input). Here the graph stops at the hidden
states (`_STOP`), and a causal model's input goes in chunks of `CHUNK` tokens, each attending to the ones before it in
the KV cache, so the buffers are sized to a chunk. A non-causal model (BERT) needs the whole input in one batch.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp
from llama_cpp._ggml import libggml

from runtime.errors import ContextLengthExceeded, InvalidRequest, TarxError
from runtime.inference.pages import zero_pages_released

if TYPE_CHECKING:
    from runtime.inference.weights import Weights

# Events sent back to the engine: plain tuples, cheap to pickle over the runner's pipe.
Event = tuple[Any, ...]

# Cells of the first embedding context: a sentence fits, and its KV cache is 3 MiB for SmolLM2.
SMALLEST_CONTEXT = 128
# Tokens per decode of a causal model's input. llama.cpp still sizes (and clears) an output buffer of chunk x vocabulary
# floats, 24 MiB for SmolLM2 at 128, and a 1,000-token input embeds as fast in chunks of 128 as of 256 or 512 (~100
# tokens/s at 1 thread on the 2-core machine).
CHUNK = 128

# The name llama.cpp gives the final hidden states (`t_embd`) when it pools nothing.
_HIDDEN_STATES = b"result_embd_pooled"
_ggml_get_name = libggml.ggml_get_name
_ggml_get_name.argtypes = (ctypes.c_void_p,)
_ggml_get_name.restype = ctypes.c_char_p


def _stop_after_hidden_states(tensor: int, ask: bool, _user_data: int) -> bool:
    """llama.cpp's eval callback: asked about each node in order, it wants to see the hidden states; shown them, it
    answers false, and the scheduler skips the rest of the graph (the output layer, which no embedding reads)."""
    return ask and _ggml_get_name(tensor) == _HIDDEN_STATES


# Module-level: ctypes must keep the C callback alive as long as any context holds it.
_STOP = llama_cpp.ggml_backend_sched_eval_callback(_stop_after_hidden_states)


def error_tuple(exc: TarxError) -> tuple[str, int, str, str]:
    return (exc.message, exc.status, exc.type, exc.code)


def tokenize_inputs(llm: Weights, inputs: list[str | list[int]], n_ctx: int) -> list[list[int]]:
    """Token ids per input (ids sent by the client are checked and kept as they are); TarxError on a bad one."""
    n_vocab = llm.n_vocab()
    out: list[list[int]] = []
    for i, item in enumerate(inputs):
        tokens = item if isinstance(item, list) else llm.tokenize(item.encode("utf-8"), add_bos=True, special=False)
        if not tokens:
            # An empty sequence never reaches llama.cpp: the binding would write before its batch and corrupt memory.
            raise InvalidRequest(f"input {i} is empty")
        if any(t < 0 or t >= n_vocab for t in tokens):
            raise InvalidRequest(f"input {i} holds a token id outside this model's vocabulary (0..{n_vocab - 1})")
        if len(tokens) > n_ctx:
            raise ContextLengthExceeded(f"input {i} is {len(tokens)} tokens; this model's context is {n_ctx} tokens.")
        out.append(tokens)
    return out


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@dataclass
class _Request:
    id: str
    inputs: list[list[int]]
    vectors: list[list[float]] = field(default_factory=list)
    cpu: float = 0.0
    done: int = 0  # tokens of the current input decoded so far
    sums: list[float] = field(default_factory=list)  # their hidden states, summed per dimension


class ContextEmbedder:
    """A model's embeddings, on a context of their own over the runner's weights, one chunk of one input per `step`."""

    def __init__(self, model: Weights, *, n_ctx: int, threads: int) -> None:
        self.model = model  # the runner's weights (a chat runner's batcher frees them)
        self.max_ctx = n_ctx
        self.threads = threads
        self.n_embd = model.n_embd()
        self.size = 0
        self.chunk = 0  # tokens per decode: CHUNK for a causal model, the whole context for a non-causal one
        self.causal: bool | None = None  # known once the first context is made
        self.ctx: Any = None
        self.batch: Any = None
        self.mem: Any = None
        self.queue: deque[_Request] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    def embed(self, job_id: str, inputs: list[str | list[int]]) -> list[Event]:
        try:
            tokens = tokenize_inputs(self.model, inputs, self.max_ctx)
        except TarxError as exc:
            return [("failed", job_id, error_tuple(exc))]
        self.queue.append(_Request(job_id, tokens))
        return []

    def cancel(self, job_id: str) -> list[Event]:
        for request in self.queue:
            if request.id == job_id:
                self.queue.remove(request)
                return [("cancelled", job_id)]
        return []

    def step(self) -> list[Event]:
        """Decode the next chunk of the oldest request's current input; its vectors once the last input is done."""
        if not self.queue:
            return []
        request = self.queue[0]
        cpu0 = time.process_time()
        try:
            self._advance(request)
        except TarxError as exc:
            self.queue.popleft()
            return [("failed", request.id, error_tuple(exc))]
        finally:
            request.cpu += time.process_time() - cpu0
        if len(request.vectors) < len(request.inputs):
            return []
        self.queue.popleft()
        return [("vectors", request.id, request.vectors, sum(map(len, request.inputs)), request.cpu)]

    def _advance(self, request: _Request) -> None:
        tokens = request.inputs[len(request.vectors)]
        if request.done == 0:
            self._fit(len(tokens))
            # Forget the previous input's cells; clearing the whole cache would rewrite every cell per input.
            llama_cpp.llama_memory_seq_rm(self.mem, 0, -1, -1)
            request.sums = [0.0] * self.n_embd
        start = request.done
        chunk = tokens[start:start + self.chunk]
        b = self.batch
        for i, tok in enumerate(chunk):
            b.token[i] = tok
            b.pos[i] = start + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = True  # every token's hidden states are an output
        b.n_tokens = len(chunk)
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise TarxError(f"the model could not embed the input (llama_decode returned {rc})", status=503,
                            type="server_error", code="embedding_failed")
        flat = llama_cpp.llama_get_embeddings(self.ctx)[:len(chunk) * self.n_embd]  # token-major rows
        n = self.n_embd
        request.sums = [total + math.fsum(flat[d::n]) for d, total in enumerate(request.sums)]
        request.done += len(chunk)
        if request.done == len(tokens):
            request.vectors.append(unit(request.sums))  # the mean's direction: dividing by the count changes nothing
            request.done = 0

    def _fit(self, n_tokens: int) -> None:
        """A context that holds `n_tokens`: the current one, or a larger one in its place."""
        if self.ctx is not None and n_tokens <= self.size:
            return
        size = SMALLEST_CONTEXT
        while size < n_tokens:
            size *= 2
        size = min(size, self.max_ctx)
        self._create(size, size if self.causal is not True else min(size, CHUNK))
        if self.causal is None:
            self.causal = bool(llama_cpp.llama_get_causal_attn(self.ctx))
            if self.causal and size > CHUNK:  # a first input longer than a chunk: made before causality was known
                self._create(size, CHUNK)

    def _create(self, size: int, chunk: int) -> None:
        self.close()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = size
        params.n_batch = params.n_ubatch = chunk
        params.n_seq_max = 1
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
        params.cb_eval = _STOP
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        with zero_pages_released():
            ctx = llama_cpp.llama_init_from_model(self.model.model, params)
        if not ctx:
            raise TarxError("llama.cpp could not create an embedding context", status=503, type="server_error",
                            code="embedding_failed")
        self.ctx, self.size, self.chunk = ctx, size, chunk
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.batch = llama_cpp.llama_batch_init(chunk, 0, 1)

    def close(self) -> None:
        if self.ctx is not None:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = self.batch = self.mem = None
            self.size = self.chunk = 0
