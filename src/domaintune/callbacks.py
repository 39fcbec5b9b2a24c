"""Callbacks every run uses: fail fast on a metric that is never logged, keep the epoch history,
keep the best epoch's weights (across a resume too), keep a last checkpoint that an
interrupted run resumes from, and keep freed memory for reuse while fitting."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from domaintune import allocator, direction
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

    def state_dict(self) -> dict:  # a resumed run's history holds the epochs before the interruption
        return {"epochs": self.epochs, "sanity_seconds": self.sanity_seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs, self.sanity_seconds = list(state_dict["epochs"]), state_dict["sanity_seconds"]


class BestWeights(pl.Callback):
    """The best validation epoch's weights (what training changes: `trainable_state`), kept in
    memory on the CPU. After the fit the run tests and saves them. Writing them as a checkpoint
    file at each improving epoch and reading them back at the end cost a full fine-tuning sweep
    trial about 0.4 s an epoch. They travel in last.ckpt with their score and epoch, so a resumed
    run, a retried sweep trial in a folder of its own included, keeps the best of the epochs
    before the interruption. Which epoch is best: `direction.improves`, the rule metrics.json's
    best epoch follows too."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.score: float | None = None
        self.epoch: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if not direction.improves(score, self.score, self.mode):
            return
        self.score, self.epoch = score, trainer.current_epoch
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.trainable_state().items()}

    def restore(self, pl_module: pl.LightningModule) -> None:
        """Give the module the best epoch's weights (nothing to do before the first validation)."""
        if self.weights is not None:
            pl_module.load_state_dict(self.weights, strict=False)

    def state_dict(self) -> dict:
        return {"score": self.score, "epoch": self.epoch, "weights": self.weights}

    def load_state_dict(self, state_dict: dict) -> None:
        self.score, self.epoch, self.weights = state_dict["score"], state_dict["epoch"], state_dict["weights"]


class LastCheckpoint(Checkpoint):
    """The whole training state in `<dirpath>/last.ckpt` after an epoch (validation, early
    stopping and the best weights done): trainable weights, optimizer, scheduler, loops,
    callbacks and the random number generators. `domaintune train resume=<run>` continues from
    it; the run removes it when it finishes. Written to a temporary file and renamed, so a kill
    at any moment leaves the previous one whole.

    Written after the first epoch that ends `every_s` seconds of training or more after the fit
    started or the last one was written (0: after every epoch), so a kill loses at most about
    that much training plus one epoch. For full fine-tuning the state is 3x the weights (AdamW's
    two moments): 1.3-1.5 s for MiniLM on a CPU, which every epoch of a short sweep trial paid.
    The last epoch (the epoch limit reached, or early stopping or pruning ending the fit) writes
    none: the run is about to finish and remove it."""

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str, every_s: float):
        self.path = Path(dirpath) / self.FILENAME
        self.every_s = every_s
        self._since = time.perf_counter()
        self._pending_rng: dict | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0) > 0:
            return
        if time.perf_counter() - self._since < self.every_s:
            return
        partial = self.path.with_name(f".{self.FILENAME}.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # collective under DDP; rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier()
        self._since = time.perf_counter()

    def state_dict(self) -> dict:
        """The generators as they stand after this epoch: the next epoch's shuffling of the
        dataloader and its dropout draw from them."""
        kind, keys, position, has_gauss, gauss = np.random.get_state()  # plain types and tensors: loads weights-only
        numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)
        rng = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": rng}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_rng = state_dict.get("rng")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set the generators back where the interrupted run left them, just before the first
        resumed epoch draws from them (set earlier, loading and set-up would draw in between)."""
        if self._pending_rng is None:
            return
        rng, self._pending_rng = self._pending_rng, None
        random.setstate(rng["python"])
        kind, keys, position, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


class ReuseFreedMemory(pl.Callback):
    """glibc's malloc keeps freed memory for the next step while the model fits, instead of
    unmapping large blocks and faulting their pages in again every step (`domaintune.allocator`),
    and gives it back when the fit ends."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        allocator.keep_freed_memory()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        allocator.give_back_freed_memory()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        allocator.give_back_freed_memory()  # a pruned or failed trial: the next one starts afresh


class FiniteLoss(pl.Callback):
    """A NaN or infinite training loss ends the run as a failure (a sweep marks the trial FAIL)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(loss.isfinite()):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {trainer.current_epoch}, batch {batch_idx}"
            )
