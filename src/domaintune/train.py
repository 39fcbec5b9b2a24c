"""One fine-tuning run, top to bottom: data -> model -> fit with early stopping on
`optimized_metric` -> test the best checkpoint -> write the run folder -> return the best value."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from domaintune import continual, outputs, registry
from domaintune.callbacks import EpochHistory, FiniteLoss, MetricGuard, OptunaPruning
from domaintune.errors import UserError

log = logging.getLogger(__name__)
if logging.getLogger().handlers:  # Hydra's console + train.log handlers: don't print Lightning's lines twice
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _close_wandb(loggers: list, exit_code: int, summary: dict | None = None) -> None:
    """Close the W&B run with the run's real outcome, also when it failed, and its final summary."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            lg.experiment.summary.update(summary or {})
            wandb.finish(exit_code=exit_code)


def _check_ddp_is_not_in_a_multirun(cfg: DictConfig) -> None:
    """Lightning's DDP launcher re-runs the command line for the other ranks: with -m that would
    start the whole multirun (or sweep) again in every process."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if "ddp" in str(cfg.trainer.get("strategy")) and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise UserError("trainer=ddp cannot run inside a multirun or sweep (-m); run DDP jobs one at a time")


def train(cfg: DictConfig) -> float | None:
    started = time.time()
    run_dir = Path(cfg.paths.run_dir)
    if (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir} already holds a finished run; run folders are never overwritten")
    registry.check_target("datamodule", cfg.data._target_, "data")
    registry.check_target("module", cfg.module._target_, "module")
    _check_ddp_is_not_in_a_multirun(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    # Data and model: the datamodule tokenizes with the backbone's tokenizer and tells the
    # module what it needs from the data (number of labels, label names).
    backbone = instantiate(cfg.model, _partial_=True)()  # its own UserErrors stay one line
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")
    peft_config = instantiate(cfg.peft) if cfg.get("peft") else None
    if peft_config is None and backbone.dtype != "float32":
        log.warning("model.dtype=%s with full fine-tuning: the optimizer updates %s weights, which lose small updates; "
                    "use an adapter (peft=lora) or model.dtype=float32", backbone.dtype, backbone.dtype)
    build_module = instantiate(cfg.module, _partial_=True)  # objects go in as call arguments, not config
    module = build_module(backbone=backbone, peft_config=peft_config, **datamodule.module_inputs())
    if cfg.get("init_from"):  # keep a model current: continue from an earlier run on new data
        module.load_weights(continual.check_earlier_run(cfg, Path(cfg.init_from), datamodule, module))

    # Trainer: checkpointing and early stopping (in cfg.callbacks) watch `optimized_metric`.
    history = EpochHistory()
    callbacks = [MetricGuard(cfg.optimized_metric), FiniteLoss(), history]
    if cfg.trial.id is not None:  # an Optuna trial: report every validation, stop when pruned
        from domaintune.sweep.study import trial_in_job

        callbacks.append(OptunaPruning(trial_in_job(cfg.trial.study, cfg.trial.storage, cfg.trial.id), cfg.optimized_metric))
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:
        lg.log_hyperparams({**resolved, "data_fingerprint": datamodule.fingerprint})

    try:
        trainer.fit(module, datamodule=datamodule)
        checkpoint = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.test:  # the best checkpoint, not the last epoch, is tested and saved
            test_results = trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint or None)
        else:
            test_results = [{}]
            if checkpoint:
                module.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"], strict=False)
    except BaseException as error:
        pruned = type(error).__name__ == "TrialPruned"
        _close_wandb(loggers, exit_code=0 if pruned else 1, summary={"outcome": "pruned" if pruned else "failed"})
        raise
    if not trainer.is_global_zero:
        return None

    # The run folder: best weights (safetensors), label map, metrics.json, learning curve.
    best = outputs.best_epoch(history.epochs, cfg.optimized_metric, cfg.mode) or {}
    metrics = {
        "task": cfg.task_name,
        "mode": cfg.mode,
        "run_dir": str(run_dir),
        "best": {"metric": cfg.optimized_metric, "value": best.get(cfg.optimized_metric), "epoch": best.get("epoch")},
        "epochs_run": len(history.epochs),
        "stopped_early": bool(trainer.early_stopping_callback and trainer.early_stopping_callback.stopped_epoch),
        "world_size": trainer.world_size,
        "time_s": round(time.time() - started, 1),
        "sanity_check_s": history.sanity_seconds,
        "test": {k: round(float(v), 6) for k, v in test_results[0].items()},
        "data": {"path": str(datamodule.path), "fingerprint": datamodule.fingerprint,
                 **{f"{split}_rows": len(ds) for split, ds in datamodule.datasets.items()},
                 "removed": datamodule.cleaning,  # duplicates and leakage taken out before training
                 **getattr(datamodule, "length_report", {})},  # rows cut or dropped for max_length
        "history": history.epochs,
        **module.report(),
    }
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    datamodule.save_artifacts(run_dir)
    module.save_artifacts(run_dir)
    if cfg.get("init_from"):  # forgetting: the earlier run's test set, before and after (its artifacts are saved)
        metrics["regression"] = continual.regression_check(cfg, module, backbone, Path(cfg.init_from), datamodule.datasets["train"])
    if checkpoint:  # the safetensors above hold the same weights; don't keep them twice
        Path(checkpoint).unlink(missing_ok=True)
        if not any(Path(checkpoint).parent.iterdir()):
            Path(checkpoint).parent.rmdir()
    outputs.plot_learning_curve(history.epochs, cfg.optimized_metric, run_dir / "learning_curve.png")
    outputs.write_json(run_dir / "metrics.json", metrics)
    _close_wandb(loggers, exit_code=0, summary={
        "outcome": "complete",
        "best/value": metrics["best"]["value"], "best/epoch": metrics["best"]["epoch"],
        **{f"baseline/{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, (int, float))},
        **outputs.verdict_summary(metrics.get("verdict")),
        **{f"data/removed/{k}": v for k, v in datamodule.cleaning.items()},
    })
    print(outputs.summary_text(metrics), flush=True)
    return metrics["best"]["value"]
