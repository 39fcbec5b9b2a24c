"""Fixtures. Configs are composed the way `domaintune train` composes them; the finished runs that
many tests read (a tiny classification run, a tiny causal run, a small sweep) are trained once per
session (once per pytest-xdist worker), and a test that writes into one works on its own copy
(`copy_run`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from domaintune.config import compose_job, register_resolvers
from helpers import TINY, TINY_CAUSAL, cli, postgres, sweep, the_run
from helpers.postgres import Postgres

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
register_resolvers()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs a worker per core (TEST_WORKERS): each multiplies on one thread, as do the processes its
    # tests start. Tiny models gain nothing from a second thread, and two workers that each used two
    # threads would fight over the cores.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Under pytest-xdist, each worker's share starts with its part of the slow tests. `--dist
    worksteal` hands worker i the next len(pending) // (workers - i) tests, then moves tests from
    the back of a busy worker's queue to an idle one: with the long tests first, the last minutes
    go to short ones instead of one worker finishing a long test while the other idles."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    ordered = []
    for i in range(workers):
        mine = slow[i::workers]
        taken = max((len(items) - len(ordered)) // (workers - i) - len(mine), 0)
        ordered += mine + fast[:taken]
        del fast[:taken]
    items[:] = ordered + fast


@pytest.fixture
def make_cfg(tmp_path):
    """Compose `conf/` with overrides; run folder and caches go under tmp_path."""

    def make(*overrides: str):
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        return compose_job(list(overrides), run_dir, tmp_path / "outputs")

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def copy_run(tmp_path):
    """A copy of a shared finished run, for a test that writes into it (evaluate, predict, export)."""

    def copy(run: Path) -> Path:
        target = tmp_path / "copied" / run.name
        shutil.copytree(run, target)
        return target

    return copy


# `cli("train", ...)` of the shared runs: its outputs, the run folder and what the terminal showed.
def _train(folder: Path, *overrides: str):
    result = cli("train", *overrides, env={"DOMAINTUNE_OUTPUT_DIR": str(folder)})
    assert result.returncode == 0, result.stderr[-3000:]
    return the_run(folder), result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny classification run on the legal examples (7 classes): 3 short epochs, logged to
    W&B offline. Returns (run folder, the command's terminal output)."""
    return _train(
        tmp_path_factory.mktemp("tiny_run"),
        "task=legal",
        "model=tiny",
        "logger=wandb",
        "trainer=debug",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
        "callbacks.early_stopping.patience=5",
    )


@pytest.fixture(scope="session")
def multi_label_run(tmp_path_factory):
    """A finished tiny multi-label run on the support tickets (example data, one to three intents)."""
    return _train(
        tmp_path_factory.mktemp("multi_label_run"),
        "task=support_tickets",
        *TINY,
        "trainer.max_epochs=2",
        "data.max_length=32",
    )


@pytest.fixture(scope="session")
def token_run(tmp_path_factory):
    """A finished tiny entity-recognition run on the medical example sentences, windows of 32
    sub-words (so the long ones are split)."""
    return _train(
        tmp_path_factory.mktemp("token_run"),
        "task=medical",
        *TINY,
        "data.max_length=32",
        "data.stride=8",
    )


@pytest.fixture(scope="session")
def tiny_causal_run(tmp_path_factory):
    """A finished tiny causal-LM run on the support replies, logged to W&B offline."""
    return _train(tmp_path_factory.mktemp("tiny_causal_run"), "task=support_replies", *TINY_CAUSAL, "logger=wandb")


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """A finished 3-trial Optuna sweep of the support task on the tiny model, one trial at a time,
    each trial a W&B run: the default learning-rate space, peft.r searched, trial 0 the task's
    defaults. Returns (the sweep folder, the command's terminal output)."""
    outputs = tmp_path_factory.mktemp("small_sweep")
    result = sweep(
        outputs,
        "logger=wandb",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.params.peft.r=choice(8,16)",
        "hydra.sweeper.params.trainer.max_epochs=2",  # fixed: the task's 6 would lie outside TINY_SWEEP's 1..2
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return outputs / "sweeps" / "support", result


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on loopback for the session (helpers.postgres); its URL."""
    server = postgres_server()
    try:
        yield server.url
    finally:
        server.remove()


def postgres_server() -> Postgres:
    """A new server of its own; the test is skipped where PostgreSQL is not installed (failed in CI)."""
    bin_dir = postgres.installed()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return Postgres(bin_dir)


@pytest.fixture
def own_postgres():
    """A server for one test alone, which it may stop and start again."""
    server = postgres_server()
    try:
        yield server
    finally:
        server.remove()
