"""Pre-trained backbones: where weights and tokenizer come from, loaded once per process."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from domaintune.errors import UserError


@dataclass(frozen=True)
class Backbone:
    """A hub id or local folder (`name_or_path`), or a `config` that builds a small random model
    locally (tests, no download). Remote code runs only when `trust_remote_code` is set."""

    name_or_path: str | None = None
    tokenizer: str | None = None
    config: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    auto_class: ClassVar[str] = "AutoModel"  # the transformers Auto class that builds it
    pooling: str = "mean"
    trust_remote_code: bool = False
    revision: str | None = None
    dtype: str = "auto"  # conf/model: settled by domaintune.precision before weights load

    def __post_init__(self):
        if self.name_or_path is None and not self.config:
            raise UserError(
                "model.name_or_path is not set; give a hub id or a model folder (or model.config for a random model)"
            )
        if self.pooling not in ("mean", "cls", "pooler"):
            raise UserError(f"model.pooling '{self.pooling}' is unknown; use mean, cls or pooler")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UserError(f"model.dtype '{self.dtype}' is unknown; use auto, float32, bfloat16 or float16")

    @property
    def key(self) -> tuple:
        """Identity of the weights this spec loads (the random-model config included), for caches."""
        return (
            self.name_or_path,
            self.tokenizer,
            _frozen(self.config),
            self.trust_remote_code,
            self.revision,
            self.dtype,
        )

    def _source(self) -> str | None:
        return self.name_or_path

    def _load(self, what: str, loader):
        from transformers.utils.logging import set_tqdm_hook

        from domaintune.console import no_weight_loading_bar

        set_tqdm_hook(no_weight_loading_bar)
        source = self.tokenizer if what == "tokenizer" and self.tokenizer else self._source()
        try:
            return loader(source, trust_remote_code=self.trust_remote_code, revision=self.revision)
        except (OSError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"model.name_or_path '{source}': cannot load the {what} ({first_line}); "
                "use a local model folder, or a hub id while online"
            ) from None

    def load_tokenizer(self):
        """The tokenizer, loaded once per process (sweep trials share it)."""
        return _cached_tokenizer(self)

    def load_model(self, share_weights: bool = False):
        """A fresh copy of the base model (an encoder without head here); the weights are read from
        disk once per process, so sweep trials start from the same weights without reloading.
        `share_weights`: a new module tree over the same weight tensors, for adapters that never
        change the base weights (half the memory)."""
        cached = _cached_model(self, self.key)
        if share_weights:
            return copy.deepcopy(cached, memo={id(p): p for p in cached.parameters()})
        model = copy.deepcopy(cached)
        for parameter in model.parameters():  # an adapter run may have frozen the shared tensors
            parameter.requires_grad_(True)
        return model

    def build_model(self):
        """Weights in `dtype`, float32 unless set: a checkpoint saved in bf16 would otherwise load as
        bf16. bfloat16 suits frozen weights under an adapter (peft keeps the adapter in float32):
        half the memory, and no per-step cast under bf16 autocast."""
        import functools

        import torch
        import transformers

        if self.dtype == "auto":
            raise ValueError("model.dtype=auto: settle it first (domaintune.precision.settle), as train() does")
        auto = getattr(transformers, self.auto_class)
        dtype = getattr(torch, self.dtype)
        if self.config:  # the same random weights in every process: a saved adapter fits them again
            settings = dict(self.config)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                return auto.from_config(
                    transformers.AutoConfig.for_model(settings.pop("model_type"), **settings), dtype=dtype
                )
        return self._load("model", functools.partial(auto.from_pretrained, dtype=dtype))


@dataclass(frozen=True)
class CausalBackbone(Backbone):
    """A causal LM by hub id or folder, a random one from `config`, or a GGUF file (`gguf_file`
    inside `name_or_path`) de-quantized once into a safetensors folder under `cache_dir`. With both
    `config` and a source, the weights are random and only the tokenizer comes from the source."""

    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    gguf_file: str | None = None
    cache_dir: str | None = None

    @property
    def key(self) -> tuple:
        return (*super().key, self.gguf_file)

    def _source(self) -> str | None:
        """Where weights and tokenizer load from: the de-quantized cache of a GGUF file, else name_or_path."""
        if not self.gguf_file:
            return self.name_or_path
        import hashlib
        from pathlib import Path

        source = hashlib.sha256(f"{self.name_or_path}|{self.revision}|{self.gguf_file}".encode()).hexdigest()[:8]
        # same file name, other repo: other folder
        cached = Path(self.cache_dir or ".") / f"{Path(self.gguf_file).stem}-{source}"
        if not (cached / "config.json").is_file():
            _dequantize(self.name_or_path, self.gguf_file, cached)
        return str(cached)

    def load_tokenizer(self):
        tokenizer = _cached_tokenizer(self)
        if tokenizer.pad_token is None:  # batches need a pad id; padded positions never count in the loss
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer


def _dequantize(folder: str, gguf_file: str, target) -> None:
    """GGUF -> float32 safetensors folder, once (about 3 s); later loads take well under a second."""
    import os
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file).save_pretrained(partial)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
        model.hf_quantizer = None  # the weights are plain float tensors now: save them as such
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(partial)
    except (OSError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(
            f"model.gguf_file '{gguf_file}' in '{folder}': cannot read it ({str(exc).splitlines()[0]})"
        ) from None
    try:
        partial.rename(target)  # atomic: parallel workers never see half a folder
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another worker finished first


def _frozen(config: dict | None) -> tuple | None:
    return tuple(sorted((k, str(v)) for k, v in config.items())) if config else None


@cache
def _cached_tokenizer(backbone: Backbone):
    from transformers import AutoTokenizer

    return backbone._load("tokenizer", AutoTokenizer.from_pretrained)


@cache
def _cached_model(backbone: Backbone, _key: tuple):
    return backbone.build_model()
