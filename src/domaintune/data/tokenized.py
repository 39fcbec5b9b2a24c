"""Tokenize texts once and cache the ids on disk, keyed by data + tokenizer + max length."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides the ids: the full tokenizer definition when it is a fast one,
    less the truncation and padding that a call leaves set on it (each call sets its own). With them,
    the same tokenizer had another fingerprint once it had tokenized, and a sweep's second trial read,
    cleaned and tokenized the data again."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        described = f"{type(tokenizer).__name__}:{tokenizer.name_or_path}:{len(tokenizer)}"
    else:
        definition = json.loads(backend.to_str())
        for call_setting in ("truncation", "padding"):
            definition.pop(call_setting, None)
        described = json.dumps(definition, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def tokenize(texts: list[str], tokenizer, max_length: int, cache_dir: Path | None) -> list[np.ndarray]:
    """Token ids per text (truncated to `max_length`), read from the cache when the same job ran before."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(
            f"{texts_fingerprint(texts)}|{tokenizer_fingerprint(tokenizer)}|{max_length}".encode()
        ).hexdigest()[:32]
        path = Path(cache_dir) / f"tokens-{key}.npz"
        if path.is_file():
            with np.load(path) as stored:
                return np.split(stored["ids"], stored["offsets"][1:-1]) if len(stored["offsets"]) > 1 else []
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    arrays = [np.asarray(row, dtype=np.int32) for row in ids]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(a) for a in arrays])
        partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(partial, ids=np.concatenate(arrays) if arrays else np.zeros(0, np.int32), offsets=offsets)
        os.replace(partial, path)  # atomic: parallel workers never read a half-written cache
    return arrays
