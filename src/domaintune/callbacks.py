"""Callbacks every run uses: fail fast on a metric that is never logged, keep the epoch history,
keep the best checkpoint across a resume, and keep a last checkpoint that an interrupted run
resumes from."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

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


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which forgets the best score when a run resumes into another
    folder (a retried sweep trial resumes its dead predecessor's last checkpoint in a folder of its
    own): the first epoch after the resume then became "best" whatever its score, while the epoch
    history, the value told to Optuna, kept the earlier best. Here the best checkpoint is copied
    into the new folder with its score, so weights, best value and the tested checkpoint stay one
    epoch's."""

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key, so last.ckpt files written by either class resume with the other."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        earlier = Path(state_dict.get("best_model_path") or "")
        if state_dict.get("dirpath", self.dirpath) == self.dirpath or not earlier.is_file() or not self.dirpath:
            super().load_state_dict(state_dict)
            return
        copied = Path(self.dirpath) / earlier.name
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(earlier, copied)
        score = state_dict["best_model_score"]
        self.best_model_path = self.kth_best_model_path = str(copied)
        self.best_model_score, self.kth_value = score, state_dict.get("kth_value", score)
        self.best_k_models = {str(copied): score}


class LastCheckpoint(Checkpoint):
    """After every epoch (validation, early stopping and the best checkpoint done), the whole
    training state in `<dirpath>/last.ckpt`: trainable weights, optimizer, scheduler, loops,
    callbacks and the random number generators. Written to a temporary file and renamed, so a
    kill at any moment leaves the previous epoch's checkpoint whole. `domaintune train
    resume=<run>` continues from it; the run removes it when it finishes. The last epoch (the
    epoch limit reached, or early stopping or pruning ending the fit) writes none: the run is
    about to finish and remove it (the whole training state of full fine-tuning is 3x the
    weights, seconds a sweep trial paid for nothing); a run killed between its last epoch and
    its end resumes from the epoch before."""

    FILENAME = "last.ckpt"

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / self.FILENAME
        self._pending_rng: dict | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0) > 0:
            return
        partial = self.path.with_name(f".{self.FILENAME}.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # collective under DDP; rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier()

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


class FiniteLoss(pl.Callback):
    """A NaN or infinite training loss ends the run as a failure (a sweep marks the trial FAIL)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(loss.isfinite()):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {trainer.current_epoch}, batch {batch_idx}"
            )
