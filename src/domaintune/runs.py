"""A run's parts built from its config (backbone, datamodule, module), and a finished run loaded
back from its folder for `evaluate`, `init_from`, `generate` and `export`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domaintune import registry
from domaintune.api import TaskDataModule, TaskModule
from domaintune.runfolder import RunFolder


def build_data(cfg) -> tuple:
    """The backbone (weights loaded later, by the module) and the datamodule, which tokenizes
    with the backbone's tokenizer."""
    from hydra.utils import instantiate

    backbone = instantiate(cfg.model, _partial_=True)()  # its own UserErrors stay one line
    return backbone, instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())


def build_module(cfg, backbone, inputs: dict) -> TaskModule:
    """The module, with objects (backbone, peft config) and what the data says as call arguments."""
    from hydra.utils import instantiate

    peft_config = instantiate(cfg.peft) if cfg.get("peft") else None
    return instantiate(cfg.module, _partial_=True)(backbone=backbone, peft_config=peft_config, **inputs)


def checkpoint_to_resume(cfg) -> Path | None:
    """`resume=<run folder>`: that run's last checkpoint, which must exist."""
    from domaintune.callbacks import LastCheckpoint
    from domaintune.errors import UserError

    if not cfg.get("resume"):
        return None
    checkpoint = Path(cfg.resume) / "checkpoints" / LastCheckpoint.FILENAME
    if not checkpoint.is_file():
        raise UserError(
            f"resume={cfg.resume}: no checkpoints/{LastCheckpoint.FILENAME} there (the run ended before its first "
            "epoch did, or runs without callbacks=default); start it again"
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
    backbone, datamodule = build_data(cfg)
    module = build_module(cfg, backbone, datamodule.inputs_from_run(folder))
    module.load_weights(folder)
    return FinishedRun(folder, cfg, metrics, datamodule, module.eval())


USES = {
    "predict": 'label texts with `domaintune predict run={run} text="..."`',
    "generate": 'answer prompts with `domaintune generate run={run} prompt="..."`',
}


def refuse_unless_served(finished: FinishedRun, command: str) -> None:
    """A command on a run whose kind does not declare it (`TaskModule.serves`): one line naming
    what the run's kind serves instead."""
    from domaintune.errors import UserError

    served = finished.module.serves
    if command in served:
        return
    kind = type(finished.module).__name__
    instead = "; ".join(USES[c].format(run=finished.folder) for c in sorted(served) if c in USES)
    raise UserError(f"run={finished.folder}: a {kind} run does not {command}" + (f"; {instead}" if instead else ""))


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
