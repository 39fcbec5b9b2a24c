"""One fine-tuning run, top to bottom: data -> model -> fit with early stopping on
`optimized_metric` -> test the best epoch's weights -> write the run folder -> return the best value."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from domaintune import console, continual, direction, outputs, precision, registry, runs, schema, tracking
from domaintune.callbacks import BestWeights, EpochHistory, FiniteLoss, LastCheckpoint, MetricGuard
from domaintune.errors import UserError
from domaintune.runfolder import RunFolder

log = logging.getLogger(__name__)
if logging.getLogger().handlers:  # Hydra's console + train.log handlers: don't print Lightning's lines twice
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _check_ddp_is_not_in_a_multirun(cfg: DictConfig) -> None:
    """Lightning's DDP launcher re-runs the command line for the other ranks: with -m that would
    start the whole multirun (or sweep) again in every process."""
    if "ddp" in str(cfg.trainer.get("strategy")) and _in_multirun():
        raise UserError("trainer=ddp cannot run inside a multirun or sweep (-m); run DDP jobs one at a time")


def _instantiate_all(group: DictConfig | None) -> list:
    """Every node of a config group such as `callbacks` or `logger` (a null node is switched off)."""
    return [instantiate(node) for node in (group or {}).values() if node is not None]


def train(cfg: DictConfig) -> float | None:
    started = time.time()
    console.quiet()
    direction.resolve_mode(cfg)  # mode follows optimized_metric unless set (and then must agree)
    schema.check(cfg)  # types and ranges of the core keys, before any work
    precision.settle(cfg)  # `auto`: bf16 where this machine computes in it natively
    run_dir = Path(cfg.paths.run_dir)
    if RunFolder(run_dir).finished:
        raise UserError(f"{run_dir} already holds a finished run; run folders are never overwritten")
    registry.check_target("datamodule", cfg.data._target_, "data")  # the module's: in resolve_mode above
    _check_ddp_is_not_in_a_multirun(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    # Data and model: the datamodule tells the module what it needs from the data (labels, tokenizer).
    backbone, datamodule = runs.build_data(cfg)
    datamodule.setup("fit")
    # e.g. rows with label sets: the multi-label module
    runs.use_variant(cfg, datamodule.module_variant(), in_multirun=_in_multirun())
    if not cfg.get("peft") and backbone.dtype != "float32":
        log.warning(
            "model.dtype=%s with full fine-tuning: the optimizer updates %s weights, which lose small updates; "
            "use an adapter (peft=lora) or model.dtype=float32",
            backbone.dtype,
            backbone.dtype,
        )
    module = runs.build_module(cfg, backbone, datamodule.module_inputs())
    earlier = None
    if cfg.get("init_from"):  # keep a model current: continue from an earlier run on new data
        earlier = continual.check_earlier_run(cfg, Path(cfg.init_from), datamodule)
        module.load_weights(earlier.folder)

    # Trainer: checkpointing and early stopping (and a sweep's pruning) come from cfg.callbacks.
    resume_from = runs.checkpoint_to_resume(cfg)
    if resume_from is not None and resume_from.parent.parent.resolve() == run_dir.resolve():
        tracking.continue_run(cfg, run_dir)  # the same folder: the same W&B run
    history = EpochHistory()
    callbacks = [MetricGuard(cfg.optimized_metric), FiniteLoss(), history, *_instantiate_all(cfg.get("callbacks"))]
    last = next((c.path for c in callbacks if isinstance(c, LastCheckpoint)), None)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "data_fingerprint": datamodule.fingerprint})

    with tracking.tracked(loggers) as tracker_summary:
        # Fit (from the last checkpoint when resuming), then test the best epoch's weights (not the
        # last epoch's) against the base model.
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        except BaseException as error:
            if getattr(error, "outcome", None) == "pruned":  # a pruned trial is never resumed
                outputs.remove_checkpoints([str(last)] if last else [])
            raise
        for best in (c for c in trainer.callbacks if isinstance(c, BestWeights)):
            best.restore(module)
        test_results = trainer.test(module, datamodule=datamodule)[0] if cfg.test else {}
        if not trainer.is_global_zero:
            return None

        # The run folder: config, weights, learning curve, metrics.json (with the verdict).
        metrics = outputs.run_metrics(cfg, trainer, history, datamodule, module, test_results, time.time() - started)
        outputs.save_artifacts(run_dir, cfg, datamodule, module, metrics["history"], [str(last)] if last else [])
        if earlier is not None:  # forgetting: the earlier run's test set, before and after
            metrics["regression"] = continual.regression_check(
                cfg, module, earlier, datamodule.datasets["train"], datamodule
            )
        if resume_from is not None:
            metrics["resumed_from"] = str(resume_from)
        RunFolder(run_dir).write_metrics(metrics)  # last: from here on the run folder is finished
        tracker_summary.update(outputs.tracker_summary(metrics))
    print(outputs.summary_text(metrics), flush=True)
    return metrics["best"]["value"]
