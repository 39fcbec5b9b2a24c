"""The callback the sweeper adds to every trial (`+callbacks.optuna_pruning`): the trial's side of
the study, in the trial's own process. It records the run folder and beats the trial's heartbeat,
reports each validation value, and stops the trial when the pruner says so."""

from __future__ import annotations

import lightning.pytorch as pl
import optuna
from optuna.trial import TrialState

from domaintune.sweep.study import Heartbeat, trial_in_job, worker_id


class Pruned(optuna.TrialPruned):
    """A pruned trial: the sweeper records it as PRUNED, and W&B closes its run as `pruned`, not failed."""

    outcome = "pruned"


class OptunaPruning(pl.Callback):
    """The trial comes from storage (study name, URL, trial id), so this works under any Hydra
    launcher, in any process. The trial records its run folder at once: if its process dies, a
    retry of its parameters resumes from that folder's last checkpoint. On a database storage the
    process beats the trial's heartbeat (`heartbeat_interval` s) until the trial is finished, so a
    process or node that dies stops the beats and the trial is failed and retried; after its first
    beat it records itself as `heartbeat_from`."""

    def __init__(
        self,
        study: str,
        storage: str,
        trial_id: int,
        monitor: str,
        run_dir: str | None = None,
        heartbeat_interval: int | None = None,
        storage_patience: float | None = None,
    ):
        self.trial, self.monitor = trial_in_job(study, storage, trial_id, storage_patience), monitor
        stored = self.trial.storage.get_trial(trial_id)
        if stored.state != TrialState.RUNNING:  # failed as stale while the job waited in a queue
            raise RuntimeError(f"trial {stored.number} is {stored.state.name} already; its retry runs instead")
        if run_dir:
            self.trial.set_user_attr("run_dir", run_dir)
        self.prunes = len(self.trial.study.directions) == 1  # Optuna prunes single-objective studies only
        storage = self.trial.storage
        if heartbeat_interval and hasattr(storage, "record_heartbeat"):
            Heartbeat(
                storage,
                trial_id,
                heartbeat_interval,
                done=lambda: storage.get_trial(trial_id).state.is_finished(),
                after_first=lambda: self.trial.set_user_attr("heartbeat_from", worker_id()),
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not self.prunes:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise Pruned(f"pruned at epoch {epoch} with {self.monitor}={float(value):.4f}")
