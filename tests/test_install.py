"""The built wheel, installed into a fresh virtual environment, works from an empty folder
outside the checkout: `init`, `train`, `predict` and a 2-trial sweep."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT as CHECKOUT

UV = str(Path(sys.executable).parent / "uv")  # installed by `make setup` (the dev extra)


def run(command: list[str], cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with torch==2.13.0 (as `make setup`) and the wheel built from
    this checkout; uv builds it from its cache in seconds."""
    root = tmp_path_factory.mktemp("install")
    env = dict(os.environ)
    if not env.get("UV_FIND_LINKS") and env.get("PIP_FIND_LINKS"):  # where pip finds the CPU wheel of torch
        env["UV_FIND_LINKS"] = env["PIP_FIND_LINKS"]
    run([UV, "build", "-q", "--wheel", "-o", str(root / "dist"), str(CHECKOUT)], root, env)
    wheel = next((root / "dist").glob("domaintune-*.whl"))
    run([UV, "venv", "-q", "--python", sys.executable, str(root / "venv")], root, env)
    python = root / "venv" / "bin" / "python"
    run([UV, "pip", "install", "-q", "--python", str(python), "torch==2.13.0", str(wheel)], root, env)
    return root / "venv" / "bin"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_inits_trains_predicts_and_sweeps(installed, tmp_path):
    # A user's shell: no checkout on the path, and Python writes its bytecode cache (uv installs none).
    hidden = ("PYTHONPATH", "DOMAINTUNE_PLUGINS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(WANDB_MODE="offline", DOMAINTUNE_OUTPUT_DIR="outputs", HOME=str(tmp_path))
    domaintune = str(installed / "domaintune")
    # Nothing from the checkout is importable there: the configs and plugins come from the wheel.
    where = run(
        [str(installed / "python"), "-c", "import domaintune, domaintune_plugins; print(domaintune.__file__)"],
        tmp_path,
        env,
    )
    assert "site-packages" in where and str(CHECKOUT) not in where

    # A project folder with its own `plugins` package, the name that used to shadow ours.
    run([domaintune, "init", "demo"], tmp_path, env)
    project = tmp_path / "demo"
    assert {p.name for p in project.iterdir()} == {"conf", "plugins", "README.md", ".gitignore"}

    run([domaintune, "train", "task=demo", "trainer.max_epochs=2"], project, env)
    (run_dir,) = (project / "outputs" / "runs").glob("*/*_demo")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] >= 0.5  # three classes

    out = project / "predicted"
    run(
        [domaintune, "predict", f"run={run_dir}", "data.path=plugins/demo/data/examples.jsonl", f"out={out}"],
        project,
        env,
    )
    rows = (out / "predictions.csv").read_text().splitlines()
    examples = (project / "plugins" / "demo" / "data" / "examples.jsonl").read_text().splitlines()
    assert len(rows) == len(examples) + 1

    # Two trials at once in joblib processes, which import the project's plugin too.
    sweep = ["train", "-m", "task=demo", "sweep=optuna", "model=tiny", "trainer=debug", "hydra.sweeper.n_trials=2"]
    run([domaintune, *sweep], project, env)
    trials = (project / "outputs" / "sweeps" / "demo" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and all(row.split(",")[1] in ("complete", "pruned") for row in trials[1:])

    # A built-in task still trains from the packaged configs and plugins.
    run([domaintune, "train", "task=legal", "model=tiny", "trainer=debug"], project, env)
    assert list((project / "outputs" / "runs").glob("*/*_legal/metrics.json"))
