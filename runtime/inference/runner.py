"""A model runner: one child process per loaded model, so a native fault in llama.cpp never takes the API down.

The API process (`Runner`, used by runtime/inference/worker.py) starts `python -m runtime.inference.runner` with
one end of a socket pair and talks to it with pickled messages (multiprocessing's framing):

    API -> runner   ("chat", Order) | ("embed", id, inputs) | ("cancel", id) | ("stop",)
    runner -> API   ("ready", load_ms) | ("load_error", message) | [event, ...] once per batch step

A chat model's runner embeds too (runtime/inference/embedder.py), on the same weights: a chat model is loaded once.

The runner loads the model, then loops: take what arrived, decode one batch (runtime/inference/batcher.py), send
that step's events as one message (one pickle and one write per step, not per token). When the runner dies, the
API process sees the socket close and fails that runner's requests; the next request starts a fresh runner.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from runtime.inference.binding import c_api_only

log = logging.getLogger("tarx.inference")


class Runner:
    """The API side of one runner process. `on_message` runs on the reader thread; `on_exit` once, when it ends."""

    def __init__(self, config: dict[str, Any], on_message: Callable[[Any], None],
                 on_exit: Callable[[int | None], None]) -> None:
        ours, theirs = socket.socketpair()
        # The runner imports only this package's inference modules; `runtime` is importable wherever this is.
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.inference.runner", str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._on_message = on_message
        self._on_exit = on_exit
        self.expected_exit = False  # set before a deliberate stop, so its end is not reported as a crash
        self.send(("config", config))
        self._reader = threading.Thread(target=self._read, name=f"tarx-runner-{self.proc.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: Any) -> bool:
        """Hand a message to the runner; False when it is gone (its end is reported through `on_exit`)."""
        with self._send_lock:
            try:
                self.conn.send(message)
                return True
            except (OSError, ValueError):
                return False

    def _read(self) -> None:
        try:
            while True:
                self._on_message(self.conn.recv())
        except (EOFError, OSError):
            pass
        except Exception:
            log.exception("runner %s: unreadable message", self.proc.pid)
            self.proc.kill()
        code = self.proc.wait()
        self.conn.close()
        self._on_exit(code)

    def stop(self, timeout: float = 10) -> None:
        """Ask the runner to exit; kill it if it does not."""
        self.send(("stop",))
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout)


# ---- the runner process ---------------------------------------------------------------------------------------


_LOG_CALLBACK: Any = None  # kept alive for as long as llama.cpp may call it
GGML_LOG_LEVEL_ERROR, GGML_LOG_LEVEL_CONT = 4, 5  # ggml.h's enum ggml_log_level


def _log_errors_only() -> None:
    """Let only llama.cpp's errors reach the runtime's log. llama-cpp-python quiets llama.cpp's log (a line per
    graph input on every decode) only for a `Llama` made with verbose=False, which this runner never makes, and its
    own callback maps ggml's log levels as they were before ggml added DEBUG, so warnings (such as the embedding
    context's pooling override) would still print as errors."""
    import ctypes

    import llama_cpp

    global _LOG_CALLBACK
    last = [0]

    def log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        last[0] = last[0] if level == GGML_LOG_LEVEL_CONT else level
        if last[0] == GGML_LOG_LEVEL_ERROR:
            sys.stderr.write(text.decode("utf-8", errors="replace"))
            sys.stderr.flush()

    _LOG_CALLBACK = llama_cpp.llama_log_callback(log)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _load(config: dict[str, Any]) -> Any:
    """The model's engine: a batcher for a chat model (which embeds too), an embedder for an embedding model."""
    c_api_only()  # before anything imports llama_cpp: the runner decodes through the C API alone (binding.py)
    from runtime.inference.batcher import Batcher
    from runtime.inference.embedder import ContextEmbedder
    from runtime.inference.weights import Weights

    _log_errors_only()
    if config["kind"] == "embedding":
        return ContextEmbedder(Weights(config["path"]), n_ctx=config["n_ctx"], threads=config["threads"])
    # The weights are loaded without llama.cpp's weight repacking (extra buffer types): repacked weights take another
    # kernel for a batch of several tokens than for one, so an answer would change with what decodes beside it
    # (bench/determinism.py: 3 of 8 Gemma answers; 0 of 8 without). The same model object tokenizes: a separate
    # vocabulary-only model would hold a second copy of the vocabulary (18 MiB for SmolLM2).
    weights = Weights(config["path"], repack=False)
    return Batcher(weights, config["prompt_format"], n_ctx=config["n_ctx"], n_batch=config["n_batch"],
                   parallel=config["parallel"], threads=config["threads"], prefix_reuse=config["prefix_reuse"],
                   prefill_chunk=config["prefill_chunk"], kv_unified=config["kv_unified"])


def serve(conn: Connection) -> None:
    kind, config = conn.recv()
    assert kind == "config"
    started = time.perf_counter()
    try:
        engine = _load(config)
    except Exception as exc:
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    from runtime.inference.batcher import Batcher

    batcher = engine if isinstance(engine, Batcher) else None
    while True:
        # Block for work only when nothing is decoding; otherwise take what arrived and run the next step.
        while not engine.busy or conn.poll(0):
            message = conn.recv()
            op = message[0]
            if op == "stop":
                return
            if op == "chat" and batcher is not None:
                out = batcher.add(message[1])
            elif op == "cancel":
                out = engine.cancel(message[1])
            elif op == "embed":
                out = engine.embed(message[1], message[2])
            else:
                out = []
            if out:
                conn.send(out)
        events = engine.step()
        if events:
            conn.send(events)


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    try:
        serve(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the API process went away: nothing left to serve


if __name__ == "__main__":
    main()
