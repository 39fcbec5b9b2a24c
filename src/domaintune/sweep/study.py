"""Open, resume and share an Optuna study; the trial reaches its job through storage, not a global."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from domaintune.errors import UserError

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def storage_url(storage: str | None, folder: Path) -> str:
    """`None`: a SQLite file in the sweep folder; a `.journal`/`.log` path: an Optuna journal file;
    else any SQLAlchemy URL."""
    if storage is None:
        return f"sqlite:///{(folder / 'study.db').resolve()}"
    if storage.endswith(JOURNAL_SUFFIXES) and "://" not in storage:
        return str(Path(storage).resolve())
    return storage


def open_storage(url: str, heartbeat_interval: int | None = None) -> optuna.storages.BaseStorage:
    """The study's storage. On a database, workers record a heartbeat while they run a trial, so a
    trial of a worker that died on any machine is failed after two missed beats and tried again."""
    beat = (
        {"heartbeat_interval": heartbeat_interval, "heartbeat_stale_trial_callback": _retry_stale_trial}
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
    return _rdb_storage(url, **beat)


def _rdb_storage(url: str, **kwargs) -> optuna.storages.RDBStorage:
    """Workers started at the same moment on an empty database race to create Optuna's tables;
    the losers see a duplicate-table error and simply connect again to the tables the winner made."""
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise UserError(
                f"hydra.sweeper.storage '{url}': cannot open it ({reason}); check the URL, "
                "that the database server runs, and that its driver is installed (e.g. psycopg)"
            ) from None


def _build(kind: str, table: dict, spec: dict[str, Any], **extra):
    """`{name: median, n_startup_trials: 4}` -> MedianPruner(n_startup_trials=4). Keywords the chosen
    class does not take are dropped, so `pruner.name=hyperband` works with the median defaults in place."""
    import inspect

    spec = dict(spec or {})
    name = spec.pop("name", None)
    if name not in table:
        raise UserError(f"hydra.sweeper.{kind}.name '{name}' is unknown; use one of {', '.join(table)}")
    accepted = inspect.signature(table[name]).parameters
    spec = {k: v for k, v in spec.items() if k in accepted}
    try:
        return table[name](**spec, **extra)
    except TypeError as exc:
        raise UserError(f"hydra.sweeper.{kind} ({name}): {exc}") from None


def build_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    return _build("pruner", PRUNERS, spec)


def build_sampler(spec: dict[str, Any], space: dict) -> optuna.samplers.BaseSampler:
    if (spec or {}).get("name") == "grid":
        grid = {}
        for key, dist in space.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif getattr(dist, "step", None) and not getattr(dist, "log", False):
                n = round((dist.high - dist.low) / dist.step)
                grid[key] = [dist.low + i * dist.step for i in range(n + 1)]
            else:
                raise UserError(f"sampler grid needs choice() or range() for '{key}', not a continuous interval")
        return _build("sampler", SAMPLERS, {k: v for k, v in spec.items() if k != "search_space"}, search_space=grid)
    return _build("sampler", SAMPLERS, spec)


def open_study(
    name: str,
    url: str,
    direction: str,
    sampler_spec: dict,
    pruner_spec: dict,
    space: dict,
    heartbeat_interval: int | None = None,
) -> optuna.Study:
    """Create the study or continue it: the same command run again resumes the same study."""
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(url, heartbeat_interval),
        direction="maximize" if direction == "max" else "minimize",
        sampler=build_sampler(sampler_spec, space),
        pruner=build_pruner(pruner_spec),
        load_if_exists=True,
    )
    study.set_user_attr("pruner", dict(pruner_spec or {}))  # trials rebuild the pruner from storage
    return study


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


def _retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna failed a trial whose worker stopped beating (on any machine): try its params again."""
    study.enqueue_trial(
        trial.params, user_attrs={"retry_of": trial.number, "retry_reason": "its worker stopped sending heartbeats"}
    )


def requeue_dead_trials(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a dead worker: marked FAIL and their params queued again. A worker of
    this machine is checked by its pid at once; any worker by its heartbeat on a database storage."""

    def retried() -> set[int]:
        return {t.user_attrs["retry_of"] for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}

    before = retried()
    optuna.storages.fail_stale_trials(study)  # calls _retry_stale_trial for each
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        if worker and not _alive(worker):
            attached = attach_trial(study, trial._trial_id)
            attached.set_user_attr("fail_reason", f"worker {worker} died while running it")
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return sorted(retried() - before)


def attach_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """The one place that uses Optuna's non-public trial construction: a live trial handle from storage."""
    return optuna.trial.Trial(study, trial_id)


def trial_in_job(study_name: str, url: str, trial_id: int) -> optuna.Trial:
    """Inside a trial's job (any launcher, any process): the trial, with the study's pruner."""
    storage = open_storage(url)
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study_name))
    pruner = build_pruner(attrs.get("pruner") or {"name": "none"})
    return attach_trial(optuna.load_study(study_name=study_name, storage=storage, pruner=pruner), trial_id)
