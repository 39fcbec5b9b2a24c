"""The callback the sweeper adds to every trial (`+callbacks.optuna_pruning`): report each
validation value to the trial, and stop the trial when the pruner says so."""

from __future__ import annotations

import lightning.pytorch as pl
import optuna

from domaintune.sweep.study import trial_in_job


class Pruned(optuna.TrialPruned):
    """A pruned trial: the sweeper records it as PRUNED, and W&B closes its run as `pruned`, not failed."""

    outcome = "pruned"


class OptunaPruning(pl.Callback):
    """The trial comes from storage (study name, URL, trial id), so this works under any Hydra
    launcher, in any process. The trial records its run folder at once: if its process dies, a
    retry of its parameters resumes from that folder's last checkpoint."""

    def __init__(self, study: str, storage: str, trial_id: int, monitor: str, run_dir: str | None = None):
        self.trial, self.monitor = trial_in_job(study, storage, trial_id), monitor
        if run_dir:
            self.trial.set_user_attr("run_dir", run_dir)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise Pruned(f"pruned at epoch {epoch} with {self.monitor}={float(value):.4f}")
