"""The sweep loop of one worker: ask trials, run them as Hydra jobs, tell Optuna how they ended.

No barrier between workers: each worker (this process, the `n_jobs - 1` it starts under the
in-process launcher, or the same command in other shells or machines on a shared storage) takes
the next trials as soon as it is free. A launcher that runs jobs in parallel (joblib, submitit)
gets up to `n_jobs` trials per call: Hydra's launcher API takes a batch and returns when the whole
batch is done, so a worker asks for a new batch when its last one ends. `n_trials` counts finished
trials (complete or pruned) of the study, so running the same command again continues it."""

from __future__ import annotations

import logging
import math
import os
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

from domaintune import tracking
from domaintune.direction import resolve_mode
from domaintune.errors import UserError
from domaintune.outputs import COSTS
from domaintune.runfolder import RunFolder
from domaintune.sweep import report
from domaintune.sweep.outage import StorageUnreachable
from domaintune.sweep.overrides import override_value
from domaintune.sweep.search_space import parse
from domaintune.sweep.secrets import hand_over
from domaintune.sweep.study import (
    FINISHED,
    WORKER,
    Heartbeat,
    RetryDeadTrial,
    answer_repeat,
    directions,
    enqueue_defaults,
    exhausted,
    fail_and_retry,
    has_heartbeat,
    open_study,
    requeue_dead_trials,
    running_here,
    storage_url,
)

if TYPE_CHECKING:
    from hydra_plugins.domaintune_sweeper.config import DomaintuneSweeperConf

log = logging.getLogger(__name__)
PRUNING = "callbacks.optuna_pruning"
HELPER = "DOMAINTUNE_SWEEP_HELPER"  # set in the workers a sweep starts itself (n_jobs under the basic launcher)


def _trial_overrides(
    study: optuna.Study, trial: optuna.Trial, url: str, fixed: list[str], settings: DomaintuneSweeperConf
) -> list[str]:
    """The sampled values, the trial's folder (`trial-<number>`, also its W&B run name), no test
    (trials are chosen on validation; only the best is tested, once, when the sweep ends), and the
    trial's side of the study as a config node of its own: train.py instantiates it with the other
    callbacks and knows nothing of Optuna."""
    overrides = fixed + [f"{key}={override_value(value)}" for key, value in trial.params.items()]
    return (
        overrides
        + _resume_retried(study, trial)
        + [
            f"hydra.sweep.subdir={_subdir(trial.number)}",
            "test=false",
            f"+{PRUNING}._target_=domaintune.sweep.pruning.OptunaPruning",
            f"+{PRUNING}.study={study.study_name}",
            f"+{PRUNING}.storage='{url}'",
            f"+{PRUNING}.trial_id={trial._trial_id}",
            f"+{PRUNING}.monitor=${{optimized_metric}}",
            f"+{PRUNING}.run_dir=${{paths.run_dir}}",
            f"+{PRUNING}.heartbeat_interval={settings.heartbeat_interval if has_heartbeat(study) else 'null'}",
            f"+{PRUNING}.storage_patience={settings.storage_patience}",
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


def _run_values(folder: Path, objectives: list[str] | None) -> list[float] | float:
    """A finished run's value for the study, from its metrics.json: its best validation value, or
    with several objectives each one (also in its W&B summary)."""
    _, metrics = RunFolder(folder).read()
    return [_objective(metrics, name) for name in objectives] if objectives else metrics["best"]["value"]


def _objective(metrics: dict, name: str) -> float:
    """A run's value of `name` as a sweep objective: the best validation value of the optimized
    metric; another metric of the history at that (the kept) epoch; or a cost figure."""
    if name == metrics["best"]["metric"]:
        return metrics["best"]["value"]
    if name in metrics.get("cost", {}):
        return metrics["cost"][name]
    kept = next((row for row in metrics["history"] if row["epoch"] == metrics["best"]["epoch"]), {})
    if name in kept and name != "epoch":
        return kept[name]
    known = [metrics["best"]["metric"], *metrics.get("cost", {}), *(k for k in kept if k not in ("epoch", "seconds"))]
    raise UserError(
        f"hydra.sweeper.objectives: a run has no metric '{name}'; use one of {', '.join(dict.fromkeys(known))}"
    )


def _run_folder(stored: optuna.trial.FrozenTrial, folder: Path) -> Path:
    """A trial's run folder: recorded by its job once it started training, else where the sweeper
    put it (`hydra.sweep.subdir=trial-<number>`), so a trial that failed earlier is found too."""
    return Path(stored.user_attrs.get("run_dir") or folder / _subdir(stored.number))


def _subdir(number: int) -> str:
    """A trial's folder in the sweep folder; also its W&B run name."""
    return f"trial-{number}"


def _tell(study: optuna.Study, trial: optuna.Trial, result: JobReturn, objectives: list[str] | None) -> None:
    if study._storage.get_trial(trial._trial_id).state.is_finished():
        log.warning(
            "trial %d was failed by another worker while it ran (no heartbeat); its result is dropped", trial.number
        )
        return
    trial.set_user_attr("run_dir", str(result.hydra_cfg.hydra.runtime.output_dir) if result.hydra_cfg else "")
    if result.status == JobStatus.COMPLETED:
        folder = Path(result.hydra_cfg.hydra.runtime.output_dir)
        value = _run_values(folder, objectives) if objectives else result.return_value
        values = value if isinstance(value, list) else [value]
        if all(v is not None and math.isfinite(v) for v in values):
            study.tell(trial, value)
            return
        error: BaseException = FloatingPointError(f"the run returned {value!r}, not finite objective values")
    else:
        error = result._return_value  # JobReturn.return_value would re-raise it
    if isinstance(error, optuna.TrialPruned):
        _tell_ended(study, trial, "pruned", str(error))
    else:
        _tell_ended(
            study, trial, "failed", f"{type(error).__name__}: {error}", error if isinstance(error, UserError) else None
        )


def _tell_ended(study: optuna.Study, trial: optuna.Trial, state: str, reason: str, bad_input=None) -> None:
    """A trial that ended without a value, pruned or failed, and why (from its job's return or from
    its folder's outcome.json). Bad input fails every trial alike: `bad_input`, the one-line error,
    stops the sweep."""
    if state == "pruned":
        trial.set_user_attr("pruned_reason", reason)
        study.tell(trial, state=TrialState.PRUNED)
        return
    trial.set_user_attr("fail_reason", reason[:1000])
    study.tell(trial, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", trial.number, reason)
    if bad_input is not None:
        raise bad_input


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
def _beating_for(study: optuna.Study, trials: list[optuna.Trial], interval: int):
    """Beat for the launched trials until the launcher returns (see study.Heartbeat)."""
    if not has_heartbeat(study):
        yield
        return
    beats = [Heartbeat(study._storage, trial._trial_id, interval) for trial in trials]
    try:
        yield
    finally:
        for beat in beats:
            beat.stop()


@contextmanager
def _watching(study: optuna.Study, retry: RetryDeadTrial, interval: float):
    """While this worker runs or waits, fail and retry trials whose process died, every `interval` s."""
    stop = threading.Event()

    def watch():
        while not stop.wait(interval):
            try:
                dead = requeue_dead_trials(study, retry)
            except StorageUnreachable:  # the sweep's own next call says so, in one line
                return
            for number in dead:
                log.warning("trial %d's process died: marked FAIL, its parameters queued again", number)

    thread = threading.Thread(target=watch, daemon=True, name="stale-trials")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _start_workers(count: int) -> list[subprocess.Popen]:
    """`n_jobs` under the in-process launcher: the same command, as single workers on the same study
    (each trial seeds its own sampler, so their proposal streams differ)."""
    env = {**os.environ, HELPER: "1"}
    return [subprocess.Popen([sys.executable, *sys.argv, "hydra.sweeper.n_jobs=1"], env=env) for _ in range(count)]


def _in_process(launcher) -> bool:
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)


def _share_cores(launcher, batch_size: int) -> None:
    """joblib's own default (`hydra.launcher.n_jobs=-1`) starts a process per core and limits each
    to one thread; a batch holds `batch_size` trials, so start that many, each with its share of
    the cores. A value set in hydra.launcher.n_jobs is kept, and so is -1 for batches of one trial
    (joblib runs `n_jobs=1` in this very process)."""
    settings = getattr(launcher, "joblib", None)
    if isinstance(settings, dict) and settings.get("n_jobs", -1) == -1 and batch_size > 1:
        settings["n_jobs"] = batch_size


def _search_space_extender(path: str | None):
    """hydra-optuna-sweeper's `custom_search_space`: `module.function(cfg, trial)` that suggests
    more parameters (they become overrides like the others)."""
    if not path:
        return None
    from hydra.utils import get_method

    try:
        return get_method(path)
    except Exception:
        raise UserError(f"hydra.sweeper.custom_search_space '{path}' is not a function that can be imported") from None


def _launch(launcher, study, batch, url, fixed, settings, retry, objectives, folder) -> None:
    """Run one batch of trials through the launcher and tell each outcome. A launcher that raises
    instead of returning lost a job's process or node (submitit, joblib): each trial of the batch is
    told what its own process recorded in its folder (finished, pruned or failed); only a trial
    that recorded nothing died, and is failed and retried."""
    jobs = [_trial_overrides(study, trial, url, fixed, settings) for trial in batch]
    with _beating_for(study, batch, settings.heartbeat_interval):
        try:
            results = launcher.launch(jobs, initial_job_idx=batch[0].number)
        except Exception as error:  # a launcher reports a dead job by raising
            first = (str(error).strip().splitlines() or [""])[0]
            reason = f"its job died ({type(error).__name__}: {first})"[:1000]
            for trial in batch:
                _wait_for_job(study, trial, folder)
                if not _tell_from_folder(study, trial, objectives, folder) and fail_and_retry(
                    study, trial._trial_id, reason, retry
                ):
                    log.warning("trial %d: %s; its parameters are queued again", trial.number, reason)
            return
    for trial, result in zip(batch, results):
        _tell(study, trial, result, objectives)


def _wait_for_job(study: optuna.Study, trial: optuna.Trial, folder: Path) -> None:
    """A launcher that raises for one dead job gives up the batch while its other jobs may still
    run: wait for those whose process is alive on this machine (a job elsewhere is left to its
    heartbeat), so a trial that ends is recorded as it ended, not failed."""
    while True:
        stored = study._storage.get_trial(trial._trial_id)
        job = stored.user_attrs.get("heartbeat_from", "")
        if stored.state.is_finished() or not job or job == WORKER or not running_here(job):
            return
        if RunFolder(_run_folder(stored, folder)).ended:
            return
        time.sleep(1)


def _tell_from_folder(study: optuna.Study, trial: optuna.Trial, objectives: list[str] | None, folder: Path) -> bool:
    """A trial whose launcher lost the batch, told what its own process recorded: its metrics.json
    (finished) or its outcome.json (pruned, or failed and why). False: it recorded nothing."""
    stored = study._storage.get_trial(trial._trial_id)
    if stored.state.is_finished():  # another worker failed it meanwhile
        return True
    run_dir = _run_folder(stored, folder)
    if RunFolder(run_dir).finished:
        study.tell(trial, _run_values(run_dir, objectives))
        return True
    outcome = RunFolder(run_dir).outcome()
    if outcome is None:
        return False
    trial.set_user_attr("run_dir", str(run_dir))
    if outcome["state"] == "pruned":
        _tell_ended(study, trial, "pruned", outcome["reason"])
    else:
        stop = UserError(outcome["reason"]) if outcome.get("bad_input") else None
        _tell_ended(study, trial, "failed", f"{outcome['error']}: {outcome['reason']}", stop)
    return True


def _objectives(names: list[str] | None, optimized: str) -> list[str] | None:
    """Several objectives, checked before any trial runs; None for the usual single one."""
    names = list(names or [])
    if len(names) == 1 and names[0] != optimized:
        raise UserError(
            f"hydra.sweeper.objectives=[{names[0]}]: one objective is the optimized metric; set "
            f"optimized_metric={names[0]} instead (checkpoints and early stopping follow it)"
        )
    for name in names:
        if name != optimized and name not in COSTS and not name.startswith("val/"):
            raise UserError(
                f"hydra.sweeper.objectives: '{name}' is not a run figure; use {optimized}, another val/ metric, "
                f"{' or '.join(COSTS)}"
            )
    return names if len(names) > 1 else None


def _wait_for_others(study: optuna.Study, since: float, timeout: int) -> None:
    """The last trials run in other workers. With heartbeats, a dead one is noticed and retried;
    a journal storage has none, so waiting ends after `timeout` seconds with one line."""
    if has_heartbeat(study) or time.time() - since < timeout:
        time.sleep(2)
        return
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    held = ", ".join(
        f"{t.number} ({t.user_attrs.get('heartbeat_from') or t.user_attrs.get('worker', '?')})" for t in running
    )
    raise UserError(
        f"waited {timeout} s (hydra.sweeper.wait_timeout) for trial(s) {held} of other workers; this storage has no "
        "heartbeats to tell a dead worker from a slow one: run the sweep again when they are done, or use a database "
        "storage"
    )


def run_sweep(cfg: DictConfig, launcher, settings: DomaintuneSweeperConf, arguments: list[str]) -> None:
    space, fixed = parse(settings.params, arguments)
    extend = _search_space_extender(settings.custom_search_space)
    if not space and extend is None:
        raise UserError(
            "sweep=optuna has no parameter to search; set hydra.sweeper.params or pass e.g. 'module.lr=tag(log, "
            "interval(1e-5, 1e-3))'"
        )
    name = settings.study_name or cfg.task_name
    folder = Path(str(cfg.hydra.sweep.dir))  # where the trial folders go: <output_dir>/sweeps/<study> by default
    url = hand_over(storage_url(settings.storage, folder))  # trials and records get it without its password
    mode = resolve_mode(cfg)  # also reads val/<m>_best as val/<m>
    objectives = _objectives(settings.objectives, cfg.optimized_metric)
    wanted = directions(settings.direction, settings.objectives, mode)
    if objectives:
        log.info(
            "%d objectives (%s): pruning is off, Optuna prunes single-objective studies only",
            len(objectives),
            ", ".join(objectives),
        )
    retry = RetryDeadTrial(settings.max_retry)
    beat = {
        "heartbeat_interval": settings.heartbeat_interval,
        "grace_period": settings.grace_period,
        "retry": retry,
        "patience": settings.storage_patience,
    }
    study = open_study(name, url, wanted, settings.sampler, settings.pruner, space, beat)
    if not study.trials and any(RunFolder(p).finished for p in folder.glob(f"{_subdir('*')}")):
        raise UserError(f"{folder} holds trials of another study; set hydra.sweeper.study_name to a new name")
    if settings.include_defaults and not objectives:
        if extend is not None:
            log.info("no trial of the task's defaults: custom_search_space suggests parameters it cannot fix")
        elif outside := enqueue_defaults(study, cfg, space):
            log.info(outside)
    for number in requeue_dead_trials(study, retry):
        log.warning(
            "trial %d was left running by a worker that died: marked FAIL, its parameters queued again", number
        )
    in_process = _in_process(launcher)
    workers = _start_workers(settings.n_jobs - 1) if in_process else []
    batch_size = 1 if in_process else settings.n_jobs
    _share_cores(launcher, batch_size)
    n_trials, waiting_since = settings.n_trials, None
    try:
        with _watching(study, retry, settings.heartbeat_interval or 10):
            while True:
                trials = study.get_trials(deepcopy=False)
                finished = sum(t.state in FINISHED for t in trials)
                if finished >= n_trials:
                    break
                _check_failure_rate(trials, settings.max_failure_rate)
                free = n_trials - finished - sum(t.state == TrialState.RUNNING for t in trials)
                if free <= 0:  # the last trials run elsewhere; wait in case one fails and is queued again
                    waiting_since = waiting_since or time.time()
                    _wait_for_others(study, waiting_since, settings.wait_timeout)
                    continue
                waiting_since = None
                if extend is None and exhausted(study, space):
                    log.info("every point of the search space has been trained; the sweep ends here")
                    break
                batch = []
                for _ in range(min(batch_size, free)):
                    trial = study.ask(space)
                    if extend is not None:
                        extend(cfg, trial)
                    trial.set_user_attr("worker", WORKER)
                    if not answer_repeat(study, trial):
                        batch.append(trial)
                if batch:
                    _launch(launcher, study, batch, url, fixed, settings, retry, objectives, folder)
                report.write(study, folder, cfg, fixed, objectives)
    finally:
        failed_workers = [w.args for w in workers if w.wait() != 0]
    if failed_workers:
        log.warning("%d worker(s) ended with an error; their trials are in the study", len(failed_workers))
    if os.environ.get(HELPER):  # the command's own worker tests and records the sweep, once
        report.write(study, folder, cfg, fixed, objectives)
        return
    tested = None if objectives else report.test_best(study, folder, cfg.optimized_metric)
    tracking.record_outcome(cfg, study.study_name, "sweep", folder, report.tracker_summary(tested))
    report.write(study, folder, cfg, fixed, objectives, plots=True, tested=tested)
    print(report.summary(study, folder, fixed, cfg.optimized_metric, tested, objectives, space), flush=True)
