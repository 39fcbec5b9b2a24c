"""A callback that signals its own process once at the start of an epoch: SIGKILL as a crash or
`kill -9` would, SIGINT as Ctrl-C would. The previous epochs' last checkpoint is on disk,
nothing of this epoch is."""

import os
import signal
from pathlib import Path

import lightning.pytorch as pl


class KillAtEpoch(pl.Callback):
    """`only_in`: kill only in the run whose folder has this name (one trial of a sweep)."""

    def __init__(self, epoch: int, marker: str, signal: str = "SIGKILL", only_in: str | None = None):
        self.epoch, self.marker, self.signal, self.only_in = epoch, Path(marker), signal, only_in

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        if self.only_in and Path(trainer.default_root_dir).name != self.only_in:
            return
        try:  # once, whichever process gets here first (parallel trials race): a resumed or retried run passes
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os.kill(os.getpid(), getattr(signal, self.signal))
