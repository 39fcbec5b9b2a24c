"""Fixtures: compose configs the way `domaintune train` does, with outputs under tmp_path."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from domaintune.config import compose_job, register_resolvers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
BIN = Path(sys.executable).parent

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
register_resolvers()

# A tiny random BERT and a short debug schedule: an end-to-end run takes seconds.
FAST = ["model=tiny", "logger=none", "trainer=debug"]
# Made-up words for synthetic rows: templated rows ("message 1", "message 2", ...) are near
# duplicates, which training removes, so test data that must keep its rows draws words from here.
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe"]
WORDS = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in ("n", "r", "s")]


def phrase(seed: int, length: int = 6) -> str:
    """A text of `length` made-up words, different enough from every other seed's not to be a near duplicate."""
    return " ".join(random.Random(seed).sample(WORDS, length))


@pytest.fixture
def make_cfg(tmp_path):
    """Compose `conf/` with overrides; run folder and caches go under tmp_path."""

    def make(*overrides: str):
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        return compose_job(list(overrides), run_dir, tmp_path / "outputs")

    yield make
    GlobalHydra.instance().clear()


def domaintune(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the installed CLI as a user would."""
    return subprocess.run(
        [str(BIN / "domaintune"), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _postgres_bin() -> Path | None:
    """initdb/pg_ctl of a PostgreSQL server installed on this machine (`.ci/run` installs Debian's)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on loopback for the session; its SQLAlchemy URL."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="domaintune-pg-"))  # not under pytest's root-only folder
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)
