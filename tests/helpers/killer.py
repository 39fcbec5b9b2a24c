"""Test callbacks. KillAtEpoch signals its own process once at the start of an epoch: SIGKILL
as a crash or `kill -9` would, SIGINT as Ctrl-C would, or `scancel` of its own SLURM job as a
user or an administrator would. The previous epochs' last checkpoint is
on disk, nothing of this epoch is. SpoilWeights makes the later epochs of a run its worst."""

import os
import signal
import subprocess
import time
from pathlib import Path

import lightning.pytorch as pl
import torch


class KillAtEpoch(pl.Callback):
    """`only_in`: kill only in the run whose folder has this name (one trial of a sweep);
    `wait_for`: first wait (up to 2 minutes) until this file exists (a sibling trial's ending)."""

    def __init__(
        self,
        epoch: int,
        marker: str,
        signal: str = "SIGKILL",
        only_in: str | None = None,
        wait_for: str | None = None,
    ):
        self.epoch, self.marker, self.signal, self.only_in = epoch, Path(marker), signal, only_in
        self.wait_for = Path(wait_for) if wait_for else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        if self.only_in and Path(trainer.default_root_dir).name != self.only_in:
            return
        try:  # once, whichever process gets here first (parallel trials race): a resumed or retried run passes
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        for _ in range(240):
            if self.wait_for is None or self.wait_for.exists():
                break
            time.sleep(0.5)
        if self.signal == "scancel":  # the job of this array task, as squeue names it
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            subprocess.run(["scancel", job], check=True)
            time.sleep(600)  # SLURM ends the job
        os.kill(os.getpid(), getattr(signal, self.signal))


class SpoilWeights(pl.Callback):
    """From `epoch` on, add large noise to every trainable weight before each validation: the
    epochs after it score far worse than the ones before (a resumed run's best must stay the
    earlier epoch's)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch < self.epoch:
            return
        generator = torch.Generator().manual_seed(trainer.current_epoch)
        with torch.no_grad():
            for weight in (p for p in pl_module.parameters() if p.requires_grad):
                weight.add_(torch.randn(weight.shape, generator=generator).to(weight) * 5)
