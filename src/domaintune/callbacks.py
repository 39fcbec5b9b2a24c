"""Callbacks every run uses: fail fast on a metric that is never logged, and keep the epoch history."""

from __future__ import annotations

import time

import lightning.pytorch as pl

from domaintune.errors import UserError


class MetricGuard(pl.Callback):
    """After the first validation (the sanity check included), `optimized_metric` must exist:
    checkpointing, early stopping, pruning and the sweep objective all read it."""

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.checked = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.checked:
            return
        self.checked = True
        logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
        if self.monitor not in trainer.callback_metrics:
            raise UserError(
                f"optimized_metric '{self.monitor}' is not logged by {type(pl_module).__name__}; "
                f"it logs {', '.join(logged)}; set optimized_metric=<one of them>"
            )


class EpochHistory(pl.Callback):
    """Per-epoch train and validation metrics and seconds (training + validation steps), and the
    seconds of the sanity-check validation, for metrics.json, the learning curve and a sweep's
    per-trial fixed cost."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []
        self.sanity_seconds = 0.0

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sanity_seconds = round(time.perf_counter() - self.started, 3)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "seconds": round(time.perf_counter() - self.started, 3)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")) and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = round(float(value), 6)
        self.epochs.append(row)


class FiniteLoss(pl.Callback):
    """A NaN or infinite training loss ends the run as a failure (a sweep marks the trial FAIL)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(loss.isfinite()):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {trainer.current_epoch}, batch {batch_idx}"
            )
