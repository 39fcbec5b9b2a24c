"""A run's parts built from its config (backbone, datamodule, module), and a finished run loaded
back from its folder for `evaluate`, `init_from`, `generate` and `export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domaintune import kinds, precision, registry
from domaintune.api import TaskDataModule, TaskModule
from domaintune.runfolder import RunFolder


def build_data(cfg) -> tuple:
    """The backbone (weights loaded later, by the module) and the datamodule, which tokenizes
    with the backbone's tokenizer."""
    from hydra.utils import instantiate

    backbone = instantiate(cfg.model, _partial_=True)()  # its own UserErrors stay one line
    return backbone, instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())


def build_module(cfg, backbone, inputs: dict) -> TaskModule:
    """The module, with objects (backbone, peft config) and what the data says as call arguments;
    the module config's variant nodes (`multi_label`) are not arguments."""
    from hydra.utils import instantiate

    peft_config = instantiate(cfg.peft) if cfg.get("peft") else None
    node = _without_variants(cfg.module, resolve=True)
    module = instantiate(node, _partial_=True)(backbone=backbone, peft_config=peft_config, **inputs)
    module.compute_precision = cfg.trainer.precision  # settled: domaintune.precision
    return module


def _without_variants(module, resolve: bool) -> dict:
    """The module config's own keys, without the nodes that describe another module (`multi_label`)."""
    from omegaconf import OmegaConf

    variants = registry.module_variants(module)
    return {k: v for k, v in OmegaConf.to_container(module, resolve=resolve).items() if k not in variants}


def use_variant(cfg, variant: str | None, in_multirun: bool = False) -> None:
    """Data that needs another module than the configured one (`TaskDataModule.module_variant`:
    rows with label sets need the `multi_label` node) gets it: that node's keys replace the
    module's, and its `optimized_metric` replaces one the new module does not log (a task's
    val/acc), with a log line; not in a multirun, whose sweep and table name the metric the
    runs were told to optimize. The run's config.yaml then records what it trained."""
    import logging

    from omegaconf import OmegaConf, open_dict

    from domaintune import direction
    from domaintune.errors import UserError

    if variant is None:
        return
    if variant not in registry.module_variants(cfg.module):
        raise UserError(f"the data needs module.{variant}, which the module config ({cfg.module._target_}) lacks")
    node = OmegaConf.to_container(cfg.module[variant], resolve=False)
    metric = node.pop("optimized_metric", None)
    module_class = registry.check_target("module", node["_target_"], f"module.{variant}")
    switch = direction.declared(module_class, cfg.optimized_metric) is None and metric is not None
    if switch and in_multirun:  # checked before the config changes: nothing is half-switched
        raise UserError(
            f"optimized_metric={cfg.optimized_metric} is not logged for this data ({variant} rows); a sweep "
            f"or multirun must name its metric: add optimized_metric={metric}"
        )
    with open_dict(cfg):
        cfg.module = {**_without_variants(cfg.module, resolve=False), **node}
        if switch:
            logging.getLogger(__name__).warning(
                "optimized_metric=%s is not logged for this data; optimizing %s (set optimized_metric= to choose)",
                cfg.optimized_metric,
                metric,
            )
            cfg.optimized_metric, cfg.mode = metric, None
        direction.resolve_mode(cfg)


def checkpoint_to_resume(cfg) -> Path | None:
    """`resume=<run folder>`: that run's last checkpoint, which must exist."""
    from domaintune.callbacks import LastCheckpoint
    from domaintune.errors import UserError

    if not cfg.get("resume"):
        return None
    checkpoint = Path(cfg.resume) / "checkpoints" / LastCheckpoint.FILENAME
    if not checkpoint.is_file():
        raise UserError(
            f"resume={cfg.resume}: no checkpoints/{LastCheckpoint.FILENAME} there (the run ended before it wrote "
            "one, after the first epoch ending callbacks.last_checkpoint.every_s seconds into training, "
            "or runs without callbacks=default); start it again"
        )
    return checkpoint


@dataclass
class FinishedRun:
    folder: Path
    cfg: object  # the run's DictConfig
    metrics: dict
    datamodule: TaskDataModule  # not set up: reading the data is the caller's choice
    module: TaskModule  # with the run's best weights, in eval mode


def load_run(folder: Path, key: str = "run") -> FinishedRun:
    """A finished run's module with its saved weights; `key` names the argument in errors."""
    from omegaconf import OmegaConf

    config, metrics = RunFolder(folder).read(key)
    cfg = OmegaConf.create(config)
    try:  # the run's plugin classes must be importable here
        registry.check_target("datamodule", cfg.data._target_, "data")
        registry.check_target("module", cfg.module._target_, "module")
    except registry.PluginError as error:
        raise registry.PluginError(
            f"{key}={folder}: {error} (run from the project folder the run was trained in, or put its plugins "
            "folder on DOMAINTUNE_PLUGINS)"
        ) from None
    precision.settle_for_inference(cfg)
    backbone, datamodule = build_data(cfg)
    module = build_module(cfg, backbone, datamodule.inputs_from_run(folder))
    module.load_weights(folder)
    return FinishedRun(folder, cfg, metrics, datamodule, module.eval())


def refuse_unless_served(finished: FinishedRun, command: str) -> None:
    """A command on a run whose kind does not declare it (`domaintune.kinds`): one line naming
    what the run's kind serves instead."""
    from domaintune.errors import UserError

    kind = kinds.of_module(type(finished.module))
    if command in kind.commands():
        return
    instead = "; ".join(kinds.USES[c].format(run=finished.folder) for c in sorted(kind.commands()) if c in kinds.USES)
    raise UserError(
        f"run={finished.folder}: a {kind.name} run does not {command}" + (f"; {instead}" if instead else "")
    )


USES = ("fine_tuned", "base")  # what `use=` may name: the run's own weights, or its base model's opponent


def choose_model(finished: FinishedRun, use: str) -> None:
    """`use=base`: the run answers with its base model's opponent (the probe it kept), where its
    kind declares one; `use=fine_tuned` (the default): with its own weights."""
    from domaintune.errors import UserError

    if use not in USES:
        raise UserError(f"use={use}: use one of {', '.join(USES)}")
    if use == "fine_tuned":
        return
    kind = kinds.of_module(type(finished.module))
    if not kind.base:
        raise UserError(f"run={finished.folder}: a {kind.name} run has no base-model opponent to use; drop use=base")
    finished.module.use_base(finished.folder)


def test_trainer(cfg, **overrides):
    """A Trainer that only tests, on one device, in the run's precision, with no logger."""
    import lightning.pytorch as pl

    return pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        **overrides,
    )
