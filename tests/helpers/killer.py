"""A callback that signals its own process once at the start of an epoch: SIGKILL as a crash or
`kill -9` would, SIGINT as Ctrl-C would. The previous epochs' last checkpoint is on disk,
nothing of this epoch is."""

import os
import signal
from pathlib import Path

import lightning.pytorch as pl


class KillAtEpoch(pl.Callback):
    def __init__(self, epoch: int, marker: str, signal: str = "SIGKILL"):
        self.epoch, self.marker, self.signal = epoch, Path(marker), signal

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            return
        try:  # once, whichever process gets here first (parallel trials race): a resumed or retried run passes
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os.kill(os.getpid(), getattr(signal, self.signal))
