"""Fixtures: compose configs the way `domaintune train` does, with outputs under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
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
        [str(BIN / "domaintune"), *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
