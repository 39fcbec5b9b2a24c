"""The core config keys, typed and bounded, checked before any work: a wrong type or an
out-of-range value ends in one line naming the key, the value and what is allowed.

pydantic (v2, already installed with wandb) rather than Hydra structured configs: it checks
ranges (lr > 0, fractions in (0, 1)), not only types, and its error locations name the key.
Nodes allow extra keys: a plugin kind's module or datamodule adds settings of its own, and
their constructors check those."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domaintune.errors import UserError


class _Node(BaseModel):
    model_config = ConfigDict(extra="allow")


class Trainer(_Node):
    max_epochs: int = Field(ge=1)
    min_epochs: int | None = Field(default=None, ge=0)
    devices: int | str | list[int] = 1
    num_nodes: int = Field(default=1, ge=1)
    gradient_clip_val: float | None = Field(default=None, ge=0)
    accumulate_grad_batches: int = Field(default=1, ge=1)
    log_every_n_steps: int = Field(default=10, ge=1)
    check_val_every_n_epoch: int | None = Field(default=1, ge=1)
    limit_train_batches: int | float | None = Field(default=None, gt=0)
    limit_val_batches: int | float | None = Field(default=None, ge=0)
    limit_test_batches: int | float | None = Field(default=None, gt=0)
    num_sanity_val_steps: int = Field(default=2, ge=-1)


class Data(_Node):
    path: str | None = None
    max_length: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(ge=0, lt=1)
    seed: int
    dedupe: bool = True
    num_workers: int = Field(default=0, ge=0)


class Module(_Node):
    lr: float = Field(gt=0)
    head_lr: float | None = Field(default=None, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, le=1)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    label_smoothing: float | None = Field(default=None, ge=0, lt=1)


class Run(_Node):
    task_name: str
    optimized_metric: str
    mode: Literal["min", "max"]
    seed: int
    test: bool
    regression_tolerance: float = Field(default=0.02, ge=0)
    trainer: Trainer
    data: Data | None = None  # a kind of its own may keep none of the built-in data settings
    module: Module | None = None


def check(cfg) -> None:
    """Validate the composed run config; the first problem becomes a one-line UserError."""
    from omegaconf import OmegaConf

    values = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in Run.model_fields
        if key in cfg
    }
    for key, node in (("data", Data), ("module", Module)):  # a kind of its own may keep none of these keys
        required = {name for name, field in node.model_fields.items() if field.is_required()}
        if isinstance(values.get(key), dict) and not required <= set(values[key]):
            values[key] = None
    try:
        Run.model_validate(values)
    except ValidationError as error:
        problem = error.errors()[0]
        loc = [str(part) for part in problem["loc"]]  # a union adds the type it tried: keep the key
        key = ".".join(loc[:2] if loc[0] in ("trainer", "data", "module") else loc[:1])
        raise UserError(
            f"{key}={problem['input']!r}: {problem['msg'][0].lower()}{problem['msg'][1:]}; set {key}=<a valid value>"
        ) from None
