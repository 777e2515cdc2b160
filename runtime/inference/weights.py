"""A model's weights and vocabulary in its runner, on llama.cpp's C API (runtime/inference/binding.py).

What the runner needs of llama-cpp-python's `LlamaModel`, which lives in a module that imports numpy: load and free
the model, tokenize, and read the vocabulary's special tokens and the GGUF's chat template.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp


class Weights:
    def __init__(self, path: str, *, repack: bool = True) -> None:
        if not Path(path).is_file():
            raise RuntimeError(f"llama.cpp could not load {path}: no such file")
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = repack
        model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
        if not model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)

    def close(self) -> None:
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def n_vocab(self) -> int:
        return llama_cpp.llama_vocab_n_tokens(self.vocab)

    def n_embd(self) -> int:
        return llama_cpp.llama_model_n_embd(self.model)

    def n_swa(self) -> int:
        return llama_cpp.llama_model_n_swa(self.model)

    def chat_template(self) -> str | None:
        template = llama_cpp.llama_model_chat_template(self.model, None)
        return template.decode("utf-8") if template else None

    def token_bos(self) -> int:
        return llama_cpp.llama_vocab_bos(self.vocab)

    def token_eos(self) -> int:
        return llama_cpp.llama_vocab_eos(self.vocab)

    def add_bos_token(self) -> bool:
        return llama_cpp.llama_vocab_get_add_bos(self.vocab)

    def token_get_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode("utf-8")

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        # Nearly always enough (a token covers a byte or more; BOS); when not, llama.cpp answers minus the count it
        # needs, and the second try has that.
        size = len(text) + 1
        for _ in range(2):
            tokens = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.vocab, text, len(text), tokens, size, add_bos, special)
            if n >= 0:
                return list(tokens[:n])
            size = -n
        raise RuntimeError(f"llama.cpp could not tokenize {len(text)} bytes")
