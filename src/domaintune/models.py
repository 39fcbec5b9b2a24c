"""Pre-trained backbones: where weights and tokenizer come from, loaded once per process."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from domaintune.errors import UserError


@dataclass(frozen=True)
class Backbone:
    """A hub id or local folder (`name_or_path`), or a `config` that builds a small random model
    locally (tests, no download). Remote code runs only when `trust_remote_code` is set."""

    name_or_path: str | None = None
    tokenizer: str | None = None
    config: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    pooling: str = "mean"
    trust_remote_code: bool = False
    revision: str | None = None

    def __post_init__(self):
        if self.name_or_path is None and not self.config:
            raise UserError("model.name_or_path is not set; give a hub id or a model folder (or model.config for a random model)")
        if self.pooling not in ("mean", "cls", "pooler"):
            raise UserError(f"model.pooling '{self.pooling}' is unknown; use mean, cls or pooler")

    @property
    def key(self) -> tuple:
        """Identity of the weights this spec loads (the random-model config included), for caches."""
        return (self.name_or_path, self.tokenizer, _frozen(self.config), self.trust_remote_code, self.revision)

    def _load(self, what: str, loader):
        source = self.tokenizer if what == "tokenizer" and self.tokenizer else self.name_or_path
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

    def load_encoder(self):
        """A fresh copy of the base encoder (no head); the weights are read from disk once per process."""
        return copy.deepcopy(_cached_encoder(self, self.key))


def _frozen(config: dict | None) -> tuple | None:
    return tuple(sorted((k, str(v)) for k, v in config.items())) if config else None


@cache
def _cached_tokenizer(backbone: Backbone):
    from transformers import AutoTokenizer

    return backbone._load("tokenizer", AutoTokenizer.from_pretrained)


@cache
def _cached_encoder(backbone: Backbone, _key: tuple):
    from transformers import AutoConfig, AutoModel

    if backbone.config:
        settings = dict(backbone.config)
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        return AutoModel.from_config(config)
    return backbone._load("model", AutoModel.from_pretrained)
