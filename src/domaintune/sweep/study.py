"""Open, resume and share an Optuna study; the trial reaches its job through storage, not a global."""

from __future__ import annotations

import os
import socket
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from domaintune.errors import UserError
from domaintune.sweep.outage import BACKOFF, PatientRDBStorage, StorageUnreachable
from domaintune.sweep.secrets import masked, with_password

JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward n_trials


def worker_id() -> str:
    """host:pid of this process: how a sweep tells which worker or job holds a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


WORKER = worker_id()


def storage_url(storage: str | None, folder: Path) -> str:
    """`None`: a SQLite file in the sweep folder; a `.journal`/`.log` path: an Optuna journal file;
    else any SQLAlchemy URL."""
    if storage is None:
        return f"sqlite:///{(folder / 'study.db').resolve()}"
    if storage.endswith(JOURNAL_SUFFIXES) and "://" not in storage:
        return str(Path(storage).resolve())
    return storage


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retry=None,
    patience: float | None = None,
    wait_to_open: bool = False,
) -> optuna.storages.BaseStorage:
    """The study's storage. On a database, a trial's own process records a heartbeat while it runs
    (see Heartbeat), so a trial whose process or machine died is failed after `grace_period`
    (default two beats) and handed to `retry`. On a database server, `patience` seconds: how long
    each storage call waits out an outage (domaintune.sweep.outage); `wait_to_open`: opening waits
    too (a trial's job), where the sweeper's first open fails at once on a wrong URL. Journal files
    have no heartbeats."""
    beat = (
        {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": retry,
        }
        if heartbeat_interval
        else {}
    )
    if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # several workers on one SQLite file wait for the lock instead of failing at once
        return _rdb_storage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **beat)
    # a server restarted under a sweep leaves dead pooled connections: test each before use
    return _rdb_storage(url, patience, wait_to_open and patience, engine_kwargs={"pool_pre_ping": True}, **beat)


def answer_repeat(study: optuna.Study, trial: optuna.Trial) -> bool:
    """A proposal equal to a finished trial's parameters is told that trial's outcome instead of
    training it again (TPE and random sampling repeat points, surely in small discrete spaces)."""
    earlier = next(
        (t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.params == trial.params),
        None,
    )
    if earlier is None:
        return False
    trial.set_user_attr("repeat_of", earlier.number)
    trial.set_user_attr("run_dir", earlier.user_attrs.get("run_dir", ""))
    for step, value in earlier.intermediate_values.items():
        trial.report(value, step)
    if earlier.state == TrialState.COMPLETE:
        study.tell(trial, earlier.values if len(earlier.values) > 1 else earlier.value)
    else:
        study.tell(trial, state=TrialState.PRUNED)
    return True


def _points(distribution) -> list | None:
    """Every value a distribution can take (`choice`, `range`, an int interval), or None when it
    is continuous (a float interval, a log scale)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return list(distribution.choices)
    if getattr(distribution, "step", None) and not getattr(distribution, "log", False):
        n = round((distribution.high - distribution.low) / distribution.step)
        return [distribution.low + i * distribution.step for i in range(n + 1)]
    return None


def space_size(space: dict) -> int | None:
    """How many points a search space holds, or None when it is not finite."""
    size = 1
    for distribution in space.values():
        points = _points(distribution)
        if points is None:
            return None
        size *= len(points)
    return size


def exhausted(study: optuna.Study, space: dict) -> bool:
    """Every point of a finite space has been trained (finished, complete or pruned)."""
    size = space_size(space)
    if size is None:
        return False
    done = study.get_trials(deepcopy=False, states=FINISHED)  # a repeat adds no point of its own
    return len({tuple(sorted(t.params.items())) for t in done}) >= size


def enqueue_defaults(study: optuna.Study, cfg, space: dict) -> str | None:
    """Trial 0 of a new study trains the task's defaults (Optuna's `enqueue_trial`): the values
    each searched key takes without the sweep, so the sweep can say whether its search beat them.
    Returns why there is no such trial: a default the search space does not hold."""
    from omegaconf import OmegaConf

    if study.trials:
        return None
    chosen = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    params = {}
    for key, distribution in space.items():
        value = chosen[key] if key in chosen else OmegaConf.select(cfg, key)  # a group (peft=...): its choice
        if value is None or not _holds(distribution, value):
            return f"no trial of the task's defaults: {key}={value} lies outside its search space"
        params[key] = value
    study.enqueue_trial(params, user_attrs={DEFAULTS: True}, skip_if_exists=True)
    return None


DEFAULTS = "defaults"  # user attribute of the trial (and its retries) that trains the task's defaults


def _holds(distribution, value) -> bool:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    step = getattr(distribution, "step", None)  # a range(): only its grid points
    return not step or abs((value - distribution.low) / step - round((value - distribution.low) / step)) < 1e-9


def has_heartbeat(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(study._storage)


class Heartbeat:
    """A trial's heartbeat from a daemon thread, every `interval` seconds, until `done()` says so or
    `stop()` is called. Two processes beat for a trial: its job, from its own process, until the
    trial is finished; and the sweeper that launched it, until the launcher returns (a job may wait
    in a cluster queue, and a finished job's process is gone before the sweeper records its result).
    While the sweeper lives, a job that dies is reported by its launcher; when both are gone (the
    machine or node died), the beats stop and any other worker fails the trial and retries it."""

    def __init__(self, storage, trial_id: int, interval: float, done=lambda: False, after_first=lambda: None):
        self._stop = threading.Event()

        def beat():
            first = True
            try:
                while not self._stop.is_set() and not done():
                    storage.record_heartbeat(trial_id)
                    if first:
                        after_first()  # e.g. the job records that it beats: only once it has
                        first = False
                    self._stop.wait(interval)
            except StorageUnreachable:  # the storage stayed down: the process's own next call says so
                return

        threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}").start()

    def stop(self) -> None:
        self._stop.set()


class RetryDeadTrial:
    """Queue a dead trial's parameters again, at most `max_retry` times per original trial, with
    Optuna's retry bookkeeping (`RetryHeartbeatStaleTrialCallback.retried_trial_number` and
    `retry_history` read it). Used by Optuna for heartbeat-stale trials and by the sweeper for a
    trial whose worker or launcher job died. A trial out of retries stays FAIL and counts toward
    `max_failure_rate`, so a trial that kills its worker every time (out of memory) cannot loop."""

    def __init__(self, max_retry: int | None):
        self.max_retry = max_retry

    def __call__(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        reason: str = "its process stopped sending heartbeats",
    ) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={
                    "retry_of": trial.number,
                    "retry_reason": reason,
                    **{k: v for k, v in trial.user_attrs.items() if k == DEFAULTS},
                },
                system_attrs={"failed_trial": history[0], "retry_history": history},
            )
        )


def fail_and_retry(study: optuna.Study, trial_id: int, reason: str, retry: RetryDeadTrial) -> bool:
    """Fail a RUNNING trial with `reason` and retry it; False when another worker got there first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry(study, storage.get_trial(trial_id), reason)
    return True


def _rdb_storage(
    url: str, patience: float | None = None, wait: float | None = None, **kwargs
) -> optuna.storages.RDBStorage:
    """Workers started at the same moment on an empty database race to create Optuna's tables;
    the losers see a duplicate-table error and simply connect again to the tables the winner made.
    With `patience`, a storage that waits out outages; with `wait` seconds, opening waits too."""
    import sqlalchemy.exc

    started, delay, races = time.monotonic(), BACKOFF[0], 0
    while True:
        try:
            if patience:
                return PatientRDBStorage(with_password(url), patience, **kwargs)
            return optuna.storages.RDBStorage(with_password(url), **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            races += 1
            if races == 5:
                raise
            time.sleep(0.5 * races)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            if wait and isinstance(exc, sqlalchemy.exc.OperationalError) and time.monotonic() - started < wait:
                time.sleep(delay)
                delay = min(2 * delay, BACKOFF[1])
                continue
            raise UserError(
                f"hydra.sweeper.storage '{masked(url)}': cannot open it ({reason}); check the URL, "
                "that the database server runs, and that its driver is installed (e.g. psycopg)"
            ) from None


def _sweeper_class(kind: str, spec: dict) -> type:
    """The class a `hydra.sweeper.sampler`/`pruner` node names with `_target_` (a config of
    `hydra/sweeper/<kind>/` or the user's own, as in hydra-optuna-sweeper)."""
    from hydra.utils import get_class

    choose = f"choose one with hydra/sweeper/{kind}=<{'|'.join(_group_options(kind))}>"
    if "name" in spec:
        raise UserError(f"hydra.sweeper.{kind}.name is not a setting; {choose} or set hydra.sweeper.{kind}._target_")
    target = spec.get("_target_")
    if not target:
        raise UserError(f"hydra.sweeper.{kind} has no _target_; {choose}")
    try:
        return get_class(target)
    except Exception:
        raise UserError(
            f"hydra.sweeper.{kind}._target_ '{target}' is not a class that can be imported; {choose}"
        ) from None


def _group_options(kind: str) -> list[str]:
    from domaintune.config import group_options

    return sorted(group_options(f"hydra/sweeper/{kind}") or [])


def _build(kind: str, spec: dict[str, Any], **given):
    """`{_target_: optuna.pruners.MedianPruner, n_startup_trials: 4}` -> MedianPruner(n_startup_trials=4).
    A keyword the class does not take (a typo such as `n_startup_trial`) is one line naming the
    closest keyword and all the valid ones, never dropped in silence."""
    import difflib
    import inspect

    spec = dict(spec or {})
    cls = _sweeper_class(kind, spec)
    spec.pop("_target_")
    parameters = inspect.signature(cls).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        valid = [name for name in parameters if name not in given]
        for key in spec:
            if key not in valid:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                raise UserError(
                    f"hydra.sweeper.{kind}.{key}: {cls.__name__} takes no such keyword; {hint}"
                    f"valid: {', '.join(valid) or 'none'}"
                )
    try:
        return cls(**spec, **given)
    except (TypeError, ValueError) as exc:
        raise UserError(f"hydra.sweeper.{kind} ({cls.__name__}): {exc}") from None


def build_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    return _build("pruner", spec)


def _grid(space: dict) -> dict[str, list]:
    grid = {key: _points(dist) for key, dist in space.items()}
    for key, points in grid.items():
        if points is None:
            raise UserError(f"sampler grid needs choice() or range() for '{key}', not a continuous interval")
    return grid


def build_sampler(spec: dict[str, Any], space: dict) -> optuna.samplers.BaseSampler:
    """The sampler, seeded per trial (see SeededPerTrial), unless it takes no seed or numbers its
    points through the study itself: grid and QMC give trial n the n-th point of one sequence that
    the seed orders, so every worker needs the same seed."""
    import inspect

    spec = dict(spec or {})
    cls = _sweeper_class("sampler", spec)
    if cls is optuna.samplers.GridSampler:
        return _build("sampler", {**spec, "_target_": f"{__name__}.GridUntilNTrials"}, search_space=_grid(space))
    if cls is optuna.samplers.QMCSampler or "seed" not in inspect.signature(cls).parameters:
        return _build("sampler", spec)
    return SeededPerTrial(lambda seed: _build("sampler", {**spec, "seed": seed}), spec)


class GridUntilNTrials(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its call to `study.stop()` when the grid is done, which only
    `optimize()` allows; a sweep ends at `n_trials`."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


class SeededPerTrial(optuna.samplers.BaseSampler):
    """Workers on one study must not walk the same proposal stream. One seed for every worker
    made two shells running the same command propose identical trials (0/1, 2/3, ...); a seed per
    process would make a sweep unrepeatable. So the sampler is built again for every trial, seeded
    from (the study's seed, the trial number): trial numbers are handed out by the storage, unique
    across every worker on every machine, and a one-process sweep proposes the same trials on every
    run. Optuna's samplers keep what they learn in the study, so nothing is lost by rebuilding one."""

    def __init__(self, build, spec: dict):
        self._build, self._seed = build, spec.get("seed")
        self._sampler = build(self._seed)

    def _trial_seed(self, number: int) -> int | None:
        if self._seed is None:
            return None  # unseeded: every process draws its own entropy anyway
        import numpy as np

        return int(np.random.SeedSequence([int(self._seed), number]).generate_state(1)[0])

    def before_trial(self, study, trial) -> None:
        self._sampler = self._build(self._trial_seed(trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def directions(direction, objectives: list[str] | None, mode: str) -> list[str]:
    """One direction per objective. Single-objective: `mode` decides, and a `direction` (as
    hydra-optuna-sweeper configs give it) must agree with it, since checkpointing and early stopping
    follow `mode`. Several objectives: `direction` lists one per objective."""
    follows = "maximize" if mode == "max" else "minimize"
    given = list(direction) if isinstance(direction, list | tuple) else [direction] if direction else []
    if any(d not in ("maximize", "minimize") for d in given):
        raise UserError(f"hydra.sweeper.direction {direction}: use maximize or minimize (a list: one per objective)")
    if len(objectives or []) > 1:
        if len(given) != len(objectives):
            raise UserError(
                f"hydra.sweeper.objectives has {len(objectives)} metrics; give hydra.sweeper.direction as a list of "
                f"{len(objectives)} (maximize or minimize), e.g. direction=[{follows},minimize]"
            )
        return given
    if len(given) > 1:
        raise UserError(
            f"hydra.sweeper.direction lists {len(given)} directions; name the metrics too with "
            "hydra.sweeper.objectives=[<metric>,...] (one per direction)"
        )
    if given and given[0] != follows:
        raise UserError(
            f"hydra.sweeper.direction={given[0]} disagrees with mode={mode} (checkpoints and early stopping follow "
            f"mode); set mode={'max' if given[0] == 'maximize' else 'min'} or drop direction"
        )
    return [follows]


def open_study(
    name: str,
    url: str,
    directions: list[str],
    sampler_spec: dict,
    pruner_spec: dict,
    space: dict,
    heartbeat: dict | None = None,
) -> optuna.Study:
    """Create the study or continue it: the same command run again resumes the same study.
    `heartbeat`: interval, grace period, retries and patience of database storages (see open_storage)."""
    storage = open_storage(url, **(heartbeat or {}))
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=directions,
            sampler=build_sampler(sampler_spec, space),
            pruner=build_pruner(pruner_spec) if len(directions) == 1 else optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. an existing study of this name has other directions
        raise UserError(f"study '{name}': {exc}".splitlines()[0]) from None
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise UserError(
            f"study '{name}' in {masked(url)} was made with directions {[d.name.lower() for d in study.directions]}; "
            "set hydra.sweeper.study_name to a new name"
        )
    study.set_user_attr("pruner", dict(pruner_spec or {}) if len(directions) == 1 else {})
    return study


def running_here(worker: str) -> bool:
    """Whether `worker` (host:pid) is a live process of this machine."""
    host, _, _ = worker.rpartition(":")
    return host == socket.gethostname() and _alive(worker)


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's worker: leave its trials alone
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def requeue_dead_trials(study: optuna.Study, retry: RetryDeadTrial) -> list[int]:
    """Trials left RUNNING by a dead worker: failed and retried. A worker of this machine is checked
    by its pid; any trial by its heartbeat on a database storage."""

    def retried() -> set[int]:
        return {t.user_attrs["retry_of"] for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}

    before = retried()
    optuna.storages.fail_stale_trials(study)  # hands each to `retry`, the storage's stale-trial callback
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")  # the sweeper that tells the trial's outcome
        if worker and not _alive(worker):
            fail_and_retry(study, trial._trial_id, f"worker {worker} died while running it", retry)
    return sorted(retried() - before)


@cache
def _job_storage(url: str, patience: float | None) -> optuna.storages.BaseStorage:
    """One storage a process for the trials it runs: the trials of an in-process sweep share its
    connections (a storage a trial, each with its own connection pool, filled PostgreSQL's 100
    connections after about 50 trials; bench/growth.py)."""
    return open_storage(url, patience=patience, wait_to_open=True)


def attach_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """The one place that uses Optuna's non-public trial construction: a live trial handle from storage."""
    return optuna.trial.Trial(study, trial_id)


def trial_in_job(study_name: str, url: str, trial_id: int, patience: float | None = None) -> optuna.Trial:
    """Inside a trial's job (any launcher, any process): the trial, with the study's pruner; on a
    database server its calls wait out an outage for `patience` seconds, opening included."""
    storage = _job_storage(url, patience)
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study_name))
    pruner = build_pruner(attrs.get("pruner") or {"_target_": "optuna.pruners.NopPruner"})
    return attach_trial(optuna.load_study(study_name=study_name, storage=storage, pruner=pruner), trial_id)
