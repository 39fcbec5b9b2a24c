"""A sweep on PostgreSQL through a storage outage: the server stopped for 30 s under a trial loses
no trial; a server that stays down ends the sweep with one line and exit 2, and the same command
resumes it once the server is back."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from helpers import BIN, IN_PROCESS, ROOT, TINY_SWEEP, Result, cli, error_line

pytestmark = pytest.mark.slow

OUTAGE_S = 30


def _arguments(url: str, n_trials: int, patience: int) -> list[str]:
    """The sweep's command line, heartbeats every 2 s (their grace period, 4 s, is far shorter than
    the outage)."""
    return [
        "train", "-m", "sweep=optuna", *IN_PROCESS, *TINY_SWEEP,
        "hydra.sweeper.study_name=outage", f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage_patience={patience}",
        "hydra.sweeper.heartbeat_interval=2",
    ]  # fmt: skip


def _sweep(outputs, url: str, n_trials: int, patience: int) -> subprocess.Popen:
    """The sweep as a user's shell runs it, in a process of its own: the test stops the server under it."""
    command = [str(BIN / "domaintune"), *_arguments(url, n_trials, patience)]
    env = {**os.environ, "DOMAINTUNE_OUTPUT_DIR": str(outputs)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _when_trial_starts(outputs, number: int, process: subprocess.Popen) -> None:
    folder = outputs / "sweeps" / "outage" / f"trial-{number}"
    while not folder.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)


def _states(url: str) -> list[str]:
    import optuna

    return [t.state.name for t in optuna.load_study(study_name="outage", storage=url).trials]


def test_a_sweep_waits_out_a_storage_outage_and_resumes_after_one_it_could_not(tmp_path, own_postgres):
    outputs = tmp_path / "outputs"

    # The server goes down for 30 s while trial 1 trains: its calls (and the sweeper's) wait and retry.
    sweep = _sweep(outputs, own_postgres.url, n_trials=3, patience=120)
    _when_trial_starts(outputs, 1, sweep)
    own_postgres.stop()
    time.sleep(OUTAGE_S)
    own_postgres.start()
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    assert "unreachable (" in out + err and "reachable again after" in out + err
    assert "Traceback" not in out + err
    states = _states(own_postgres.url)
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}  # none failed, none lost

    # Down for good while trial 3 trains: the sweep ends with one line, exit 2 ...
    sweep = _sweep(outputs, own_postgres.url, n_trials=4, patience=3)
    _when_trial_starts(outputs, 3, sweep)
    own_postgres.stop()
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 2, err[-3000:]
    line = error_line(Result(sweep.returncode, out, err))
    assert "unreachable for 3 s" in line and "run the same command again to resume it" in line
    assert "Traceback" not in out + err

    # ... and the same command resumes it once the server is back: 4 finished, the dead trial retried.
    own_postgres.start()
    resumed = cli(*_arguments(own_postgres.url, n_trials=4, patience=3), env={"DOMAINTUNE_OUTPUT_DIR": str(outputs)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = _states(own_postgres.url)
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 4 and "RUNNING" not in states
    assert states[3] == "FAIL" and len(states) == 5  # trial 3 died with its sweep; its retry finished


def test_a_stale_check_that_waited_out_the_outage_reports_no_trial(tmp_path, monkeypatch):
    """The check's answer, read the moment the database came back, would count every beat the
    outage swallowed: the trial in flight would be failed (this happened under a 30 s outage)."""
    import sqlalchemy.exc as sa
    from optuna.storages import RDBStorage

    from domaintune.sweep.outage import PatientRDBStorage

    storage = PatientRDBStorage(f"sqlite:///{tmp_path / 'study.db'}", patience=10, heartbeat_interval=1)
    tries = []

    def stale_after_one_refusal(self, study_id):
        tries.append(study_id)
        if len(tries) == 1:
            raise sa.OperationalError("SELECT", {}, Exception("connection refused"))
        return [7]  # trial 7's beats stopped during the outage

    monkeypatch.setattr(RDBStorage, "_get_stale_trial_ids", stale_after_one_refusal)
    assert storage._get_stale_trial_ids(0) == [] and len(tries) == 2
