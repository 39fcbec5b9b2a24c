"""Two trials at once with one thread each, or one trial at a time with every core?

The same 16-trial MiniLM sweep on the support example data, run twice in one go:
  sequential: hydra/launcher=basic, one trial at a time in the sweep's process, torch on all cores;
  parallel:   hydra/launcher=joblib with hydra.sweeper.n_jobs=2 (the default), two trials at a time,
              one thread each
              (joblib's loky workers limit their threads to cores // jobs).
Both sides run exactly the same trials (a grid of 4 learning rates x 1-4 epochs, pruning off,
logger=csv, the same seed), so the wall times compare like with like. Each side runs twice, in
the order A B B A (warm file caches favour whoever runs later), and the ratio is of the sums.

    python bench/parallel_trials.py [--task support] [--model minilm]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = "{module.lr: 'choice(1e-4, 3e-4, 1e-3, 3e-3)', trainer.max_epochs: 'choice(1, 2, 3, 4)'}"
SIDES = {
    "sequential (1 trial x all cores)": ["hydra/launcher=basic", "hydra.sweeper.n_jobs=1"],
    "parallel (2 trials x 1 thread)": ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.launcher.n_jobs=2"],
}


def run(side: list[str], task: str, model: str, outputs: Path) -> dict:
    command = [
        str(Path(sys.executable).parent / "domaintune"),
        "train",
        "-m",
        "sweep=optuna",
        f"task={task}",
        f"model={model}",
        "logger=csv",
        "hydra/sweeper/sampler=grid",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.n_trials=16",
        f"hydra.sweeper.params={GRID}",
        *side,
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "DOMAINTUNE_OUTPUT_DIR": str(outputs)}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    folder = outputs / "sweeps" / task
    with open(folder / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    threads = {json.loads((Path(r["run_dir"]) / "metrics.json").read_text()).get("threads") for r in rows}
    return {
        "seconds": seconds,
        "trials": sorted((r["params.module.lr"], r["params.trainer.max_epochs"]) for r in rows),
        "complete": sum(r["state"] == "complete" for r in rows),
        "best": max(float(r["value"]) for r in rows if r["value"]),
        "threads": sorted(t for t in threads if t is not None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="support")
    parser.add_argument("--model", default="minilm")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; task={args.task} model={args.model}; 16 grid trials, pruning off", flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in SIDES}
    seen = {}
    with tempfile.TemporaryDirectory() as scratch:
        for i, name in enumerate([*SIDES, *reversed(SIDES)]):
            r = run(SIDES[name], args.task, args.model, Path(scratch) / str(i))
            seconds[name].append(r["seconds"])
            seen.setdefault(name, r["trials"])
            print(
                f"{name:34s} {r['seconds']:7.1f} s  {r['complete']} complete  best val {r['best']:.4f}  "
                f"torch threads per trial {r['threads']}",
                flush=True,
            )
    sequential, parallel = (sum(seconds[name]) for name in SIDES)
    assert len({tuple(t) for t in seen.values()}) == 1, "the two sides ran different trials"
    print(f"parallel / sequential wall time: {parallel / sequential:.2f}x (sums of two runs each, same 16 trials)")


if __name__ == "__main__":
    main()
