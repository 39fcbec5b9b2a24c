"""A sweep on a real scheduler: a one-node SLURM cluster on loopback (Debian's slurmctld, slurmd
and munge, started by helpers/slurm/start.sh without systemd or cgroups), a 3-trial sweep with
`hydra/launcher=submitit_slurm`; one trial's job is cancelled with `scancel` while it trains,
retried, and the sweep ends with exactly 3 finished trials."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from helpers import HELPERS, TINY_SWEEP, cli, trials

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).parent / "helpers" / "slurm"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def slurm(tmp_path_factory):
    """The cluster's client environment (SLURM_CONF, and PATH with the `sacct` stand-in submitit
    polls: the cluster keeps no accounting database)."""
    if shutil.which("slurmctld") is None:
        if os.environ.get("CI"):
            pytest.fail("SLURM is not installed; .ci/run installs Debian's slurm-wlm and munge")
        pytest.skip("SLURM is not installed (apt-get install slurm-wlm munge)")
    folder = tmp_path_factory.mktemp("slurm")
    ports = {"SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    started = subprocess.run(
        ["bash", str(SCRIPTS / "start.sh"), str(folder)], capture_output=True, text=True, env={**os.environ, **ports}
    )
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield {"SLURM_CONF": str(folder / "slurm.conf"), "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(folder)], capture_output=True)


def test_a_slurm_job_cancelled_with_scancel_is_retried_and_the_sweep_ends_with_its_trials(tmp_path, slurm):
    result = cli(
        "train",
        "-m",
        "sweep=optuna",
        *TINY_SWEEP,
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=2",
        "+callbacks.killer._target_=killer.KillAtEpoch",
        "+callbacks.killer.epoch=0",
        "+callbacks.killer.signal=scancel",
        f"+callbacks.killer.marker={tmp_path / 'cancelled-once'}",
        env={**HELPERS, **slurm, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / "sweeps" / "support")
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 3  # exactly n_trials finished
    (dead,) = [r for r in rows if r["state"] == "fail"]
    assert "its job died (UncompletedJobError" in dead["note"]
    job = re.search(r"Job (\d+_\d+)", dead["note"]).group(1)
    accounted = subprocess.run(
        ["sacct", "-o", "JobID,State", "--parsable2", "-n", "-j", job],
        capture_output=True,
        text=True,
        env={**os.environ, **slurm},
    )
    assert accounted.stdout.split() == [f"{job}|CANCELLED"]  # SLURM's record: scancel ended it
    (retry,) = [r for r in rows if r["note"].startswith(f"retry of trial {dead['number']}")]
    assert retry["state"] in ("complete", "pruned") and retry["params.module.lr"] == dead["params.module.lr"]
    jobs = {p.name for p in (tmp_path / "sweeps" / "support" / ".submitit").glob("*_*")}
    assert job in jobs and len(jobs) >= 4  # every trial, the retry included, ran as a SLURM array task
