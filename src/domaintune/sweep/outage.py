"""A database storage that waits out an outage. Every call a sweep makes to it (the sweeper's, each
trial's, each heartbeat's) that finds the database unreachable is retried with a bounded back-off
(0.5 s, doubling up to 8 s) for up to `patience` seconds; one line says when an outage starts and
one when it ends. Past the patience the call raises StorageUnreachable (one line, exit 2) and the
same command resumes the sweep. Beats missed while the database was down do not make a trial
stale: for one grace period after an outage this process reports no stale trials."""

from __future__ import annotations

import functools
import logging
import threading
import time
from contextlib import contextmanager

from optuna.storages import BaseStorage, RDBStorage

from domaintune.errors import UserError
from domaintune.sweep.secrets import masked

log = logging.getLogger(__name__)
BACKOFF = (0.5, 8.0)  # first and longest wait between two tries of a call
_OUTAGES: dict = {}
_OUTAGES_LOCK = threading.Lock()


class StorageUnreachable(UserError):
    """The database stayed unreachable past the patience: the sweep stops; a rerun resumes it."""


def unreachable(error: BaseException) -> str | None:
    """Why the database could not be reached (the driver's first line), or None when `error` is
    something else. Optuna wraps SQLAlchemy's errors in StorageInternalError: the cause is read."""
    import sqlalchemy.exc as sa

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sa.OperationalError | sa.InterfaceError) or (
            isinstance(seen, sa.DBAPIError) and seen.connection_invalidated
        ):
            reason = str(getattr(seen, "orig", None) or seen).strip()
            return reason.splitlines()[0] if reason else type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


class PatientRDBStorage(RDBStorage):
    """Optuna's RDBStorage, each storage call retried through an outage (see the module)."""

    def __init__(self, url: str, patience: float, **kwargs):
        self.patience = patience
        self._outage = _outage_of(url)
        super().__init__(url, **kwargs)

    def _wait_out(self, method, *args, **kwargs):
        if self._outage.inside():  # a call made by another call: the outer one retries
            return method(self, *args, **kwargs)
        delay, started = BACKOFF[0], None
        with self._outage.call():
            while True:
                try:
                    result = method(self, *args, **kwargs)
                except Exception as error:
                    reason = unreachable(error)
                    if reason is None:
                        raise
                    started = started or time.monotonic()
                    self._outage.began(masked(self.url), reason, self.patience)
                    if time.monotonic() - started + delay > self.patience:
                        raise StorageUnreachable(
                            f"hydra.sweeper.storage '{masked(self.url)}': unreachable for {self.patience:g} s "
                            f"({reason}); the sweep stopped and keeps its finished trials: run the same command "
                            "again to resume it"
                        ) from None
                    time.sleep(delay)
                    delay = min(2 * delay, BACKOFF[1])
                    continue
                if started is not None:
                    self._outage.ended(masked(self.url), self._calm_seconds())
                return result

    def _calm_seconds(self) -> float:
        """How long after an outage beats may still be missing: one grace period."""
        interval = self.get_heartbeat_interval() or 0
        return self.grace_period or 2 * interval

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """None while beats missed in an outage may still be missing, also when this very call
        waited the outage out: its answer, read the moment the database came back, would count
        every beat the outage swallowed."""
        if self._outage.calming():
            return []
        stale = self._wait_out(RDBStorage._get_stale_trial_ids, study_id)
        return [] if self._outage.calming() else stale

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        del state["_outage"]
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._outage = _outage_of(self.url)


def _patient(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._wait_out(method, *args, **kwargs)

    return call


# The public calls, and the private ones Optuna's cache layer (_CachedStorage) makes to its backend.
PRIVATE_CALLS = ["_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param", "record_heartbeat"]
for _name in [n for n in vars(BaseStorage) if not n.startswith("_")] + PRIVATE_CALLS:
    if callable(getattr(RDBStorage, _name, None)):
        setattr(PatientRDBStorage, _name, _patient(getattr(RDBStorage, _name)))


def _outage_of(url: str) -> _Outage:
    """One record per database and process: the sweeper's storage and a trial's in the same
    process see the same outage, and say so once."""
    with _OUTAGES_LOCK:
        return _OUTAGES.setdefault(url, _Outage())


class _Outage:
    """A database's outage as this process sees it, shared by its threads (heartbeats beat from
    their own) and storages: when it began, and until when missed beats are forgiven. The depth
    is per storage call chain (a thread-local), so one storage's nested calls retry once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._local = threading.local()
        self._since: float | None = None
        self._calm_until = 0.0

    def inside(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    @contextmanager
    def call(self):
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0

    def began(self, url: str, reason: str, patience: float) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                log.warning(
                    "storage '%s' unreachable (%s): storage calls wait and retry for up to %g s", url, reason, patience
                )

    def ended(self, url: str, calm: float) -> None:
        with self._lock:
            if self._since is not None:
                log.warning(
                    "storage '%s' reachable again after %.0f s; the sweep goes on", url, time.monotonic() - self._since
                )
                self._since = None
                self._calm_until = time.monotonic() + calm

    def calming(self) -> bool:
        return time.monotonic() < self._calm_until
