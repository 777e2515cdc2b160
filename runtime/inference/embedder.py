"""Embedding vectors inside a model's runner: one decode per input, so a vector never depends on what else was sent.

A sentence-embedding model (tarx-embed, BERT) has a runner of its own; a chat model embeds in its chat runner, beside
its batcher. Either way a `ContextEmbedder` does it: a llama.cpp context of its own over the runner's weights (no
second copy of the model and no second process, which once doubled the runtime's memory), one input per step so
running chat streams keep flowing. That context holds one whole input (mean pooling needs all of it in one batch)
and is sized to the longest input seen so far, growing on demand up to the model's context, so short sentences never
pay for a 4,096-token context.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp

from runtime.errors import ContextLengthExceeded, InvalidRequest, TarxError
from runtime.inference.pages import zero_pages_released

if TYPE_CHECKING:
    from runtime.inference.weights import Weights

# Events sent back to the engine: plain tuples, cheap to pickle over the runner's pipe.
Event = tuple[Any, ...]

# Cells of the first embedding context: a sentence fits, and its KV cache is 3 MiB for SmolLM2.
SMALLEST_CONTEXT = 128


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


class ContextEmbedder:
    """A model's embeddings, on a context of their own over the runner's weights, one input per `step`."""

    def __init__(self, model: Weights, *, n_ctx: int, threads: int) -> None:
        self.model = model  # the runner's weights (a chat runner's batcher frees them)
        self.max_ctx = n_ctx
        self.threads = threads
        self.n_embd = model.n_embd()
        self.size = 0
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
        """Embed the next input of the oldest request; its vectors once the last one is done."""
        if not self.queue:
            return []
        request = self.queue[0]
        cpu0 = time.process_time()
        try:
            request.vectors.append(self._vector(request.inputs[len(request.vectors)]))
        except TarxError as exc:
            self.queue.popleft()
            return [("failed", request.id, error_tuple(exc))]
        finally:
            request.cpu += time.process_time() - cpu0
        if len(request.vectors) < len(request.inputs):
            return []
        self.queue.popleft()
        return [("vectors", request.id, request.vectors, sum(map(len, request.inputs)), request.cpu)]

    def _vector(self, tokens: list[int]) -> list[float]:
        self._fit(len(tokens))
        b = self.batch
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = True
        b.n_tokens = len(tokens)
        # Forget the previous input's cells; clearing the whole cache would rewrite every cell per input.
        llama_cpp.llama_memory_seq_rm(self.mem, 0, -1, -1)
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise TarxError(f"the model could not embed the input (llama_decode returned {rc})", status=503,
                            type="server_error", code="embedding_failed")
        ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, 0)
        return unit(ptr[:self.n_embd])

    def _fit(self, n_tokens: int) -> None:
        """A context that holds `n_tokens` in one batch: the current one, or a larger one in its place."""
        if self.ctx is not None and n_tokens <= self.size:
            return
        size = SMALLEST_CONTEXT
        while size < n_tokens:
            size *= 2
        size = min(size, self.max_ctx)
        self.close()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = size
        params.n_seq_max = 1
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        with zero_pages_released():
            ctx = llama_cpp.llama_init_from_model(self.model.model, params)
        if not ctx:
            raise TarxError("llama.cpp could not create an embedding context", status=503, type="server_error",
                            code="embedding_failed")
        self.ctx, self.size = ctx, size
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.batch = llama_cpp.llama_batch_init(size, 0, 1)

    def close(self) -> None:
        if self.ctx is not None:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = self.batch = self.mem = None
            self.size = 0
