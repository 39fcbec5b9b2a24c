"""The sweep loop of one worker: ask a trial, run it as a Hydra job, tell Optuna how it ended.

No batch barrier: each worker (this process, the `n_jobs - 1` it starts, or the same command
in other shells or machines on a shared storage) takes the next trial as soon as it is free.
`n_trials` counts finished trials (complete or pruned) of the study, so running the same
command again continues it until that many exist."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig
from optuna.trial import TrialState

from domaintune.errors import UserError
from domaintune.sweep import report
from domaintune.sweep.overrides import override_value
from domaintune.sweep.search_space import parse
from domaintune.sweep.study import WORKER, open_study, requeue_dead_trials, storage_url

if TYPE_CHECKING:
    from hydra_plugins.domaintune_sweeper.config import DomaintuneSweeperConf

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PRUNING = "callbacks.optuna_pruning"


def _trial_overrides(study: optuna.Study, trial: optuna.Trial, url: str, fixed: list[str]) -> list[str]:
    """The sampled values, and the pruning callback as a config node of the trial's own: train.py
    instantiates it with the other callbacks and knows nothing of Optuna. The job number is the
    trial number (`initial_job_idx`): the trial's folder and W&B run are `trial-<number>`."""
    overrides = fixed + [f"{key}={override_value(value)}" for key, value in trial.params.items()]
    return (
        overrides
        + _resume_retried(study, trial)
        + [
            f"+{PRUNING}._target_=domaintune.sweep.pruning.OptunaPruning",
            f"+{PRUNING}.study={study.study_name}",
            f"+{PRUNING}.storage='{url}'",
            f"+{PRUNING}.trial_id={trial._trial_id}",
            f"+{PRUNING}.monitor=${{optimized_metric}}",
            f"+{PRUNING}.run_dir=${{paths.run_dir}}",
        ]
    )


def _resume_retried(study: optuna.Study, trial: optuna.Trial) -> list[str]:
    """A retry of a trial whose worker died continues from that trial's last checkpoint, when
    one was written (the trial got past its first epoch); it records where it resumed from."""
    from domaintune.callbacks import LastCheckpoint

    retry_of = trial.user_attrs.get("retry_of")
    if retry_of is None:
        return []
    folder = study.trials[retry_of].user_attrs.get("run_dir", "")
    if not folder or not (Path(folder) / "checkpoints" / LastCheckpoint.FILENAME).is_file():
        return []
    trial.set_user_attr("resumed_from", folder)
    return [f"resume={override_value(folder)}"]


def _tell(study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> None:
    trial.set_user_attr("run_dir", str(result.hydra_cfg.hydra.runtime.output_dir) if result.hydra_cfg else "")
    if result.status == JobStatus.COMPLETED:
        value = result.return_value
        if value is not None and math.isfinite(value):
            study.tell(trial, value)
            return
        error: BaseException = FloatingPointError(
            f"the run returned {value!r}, not a finite {study.direction.name.lower()} target"
        )
    else:
        error = result._return_value  # JobReturn.return_value would re-raise it
    if isinstance(error, optuna.TrialPruned):
        trial.set_user_attr("pruned_reason", str(error))
        study.tell(trial, state=TrialState.PRUNED)
        return
    trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:1000])
    study.tell(trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s: %s", trial.number, type(error).__name__, error)
    if isinstance(error, UserError):
        raise error  # bad input fails every trial alike: stop with its one-line message


def _check_failure_rate(trials: list, max_rate: float) -> None:
    retried = {t.user_attrs.get("retry_of") for t in trials}  # a dead worker's trial is not its own failure
    failed = sum(t.state == TrialState.FAIL and t.number not in retried for t in trials)
    done = failed + sum(t.state in FINISHED for t in trials)
    if failed >= 2 and failed / done > max_rate:
        reasons = {t.user_attrs.get("fail_reason", "?") for t in trials if t.state == TrialState.FAIL}
        raise UserError(
            f"{failed} of {done} trials failed (more than hydra.sweeper.max_failure_rate={max_rate}); "
            f"last reasons: {'; '.join(sorted(reasons)[:2])}"
        )


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial):
    """While the trial runs, beat every `heartbeat_interval` seconds (database storages only)."""
    storage = study._storage  # noqa: SLF001 - Optuna's own optimize() beats the same way
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat():
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _start_workers(count: int, seed: int | None) -> list[subprocess.Popen]:
    """`n_jobs` in one command: the same command, as single workers on the same study, each with
    its own sampler seed (one seed would make their random start-up trials identical)."""
    seeds = [[f"hydra.sweeper.sampler.seed={seed + i + 1}"] if seed is not None else [] for i in range(count)]
    return [subprocess.Popen([sys.executable, *sys.argv, "hydra.sweeper.n_jobs=1", *extra]) for extra in seeds]


def run_sweep(cfg: DictConfig, launcher, settings: DomaintuneSweeperConf, arguments: list[str]) -> None:
    space, fixed = parse(settings.params, arguments)
    if not space:
        raise UserError(
            "sweep=optuna has no parameter to search; set hydra.sweeper.params or pass e.g. 'module.lr=tag(log, "
            "interval(1e-5, 1e-3))'"
        )
    name = settings.study_name or cfg.task_name
    folder = Path(str(cfg.hydra.sweep.dir))  # where the trial folders go: <output_dir>/sweeps/<study> by default
    url = storage_url(settings.storage, folder)
    study = open_study(name, url, cfg.mode, settings.sampler, settings.pruner, space, settings.heartbeat_interval)
    if not study.trials and any(folder.glob("trial-*/metrics.json")):
        raise UserError(f"{folder} holds trials of another study; set hydra.sweeper.study_name to a new name")
    for number in requeue_dead_trials(study):
        log.warning(
            "trial %d was left running by a worker that died: marked FAIL, its parameters queued again", number
        )
    workers = _start_workers(settings.n_jobs - 1, settings.sampler.get("seed"))
    n_trials = settings.n_trials
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            if finished >= n_trials:
                break
            _check_failure_rate(trials, settings.max_failure_rate)
            if finished + sum(t.state == TrialState.RUNNING for t in trials) >= n_trials:
                time.sleep(2)  # the last trials run elsewhere; wait in case one fails and is queued again
                requeue_dead_trials(study)
                continue
            trial = study.ask(space)
            trial.set_user_attr("worker", WORKER)
            with _heartbeat(study, trial):
                (result,) = launcher.launch([_trial_overrides(study, trial, url, fixed)], initial_job_idx=trial.number)
            _tell(study, trial, result)
            report.write(study, folder, cfg, fixed)
    finally:
        failed_workers = [w.args for w in workers if w.wait() != 0]
    if failed_workers:
        log.warning("%d worker(s) ended with an error; their trials are in the study", len(failed_workers))
    tested = report.test_best(study, folder)
    report.write(study, folder, cfg, fixed, plots=True, tested=tested)
    print(report.summary(study, folder, fixed, cfg.optimized_metric, tested), flush=True)
