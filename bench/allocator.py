"""Training epochs with glibc's malloc keeping freed memory (the `reuse_freed_memory` callback,
on by default) against glibc's defaults (`callbacks.reuse_freed_memory=null`), side by side.

The same command on both sides, one after the other and alternating: full fine-tuning of
all-MiniLM-L6-v2 on the sweep bench's data (2,000 / 500 rows of BANKING77 train, cleaned by
`domaintune prepare`: 1,944 train and 476 validation rows), 2 epochs, each run a process of its
own. Prints each side's median epoch seconds (training and validation), validation accuracy,
page faults and peak memory of the whole process, and the ratio.

    python bench/allocator.py [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import sweep

ROOT = Path(__file__).resolve().parents[1]
SIDES = {"reuse freed memory (default)": [], "glibc defaults": ["callbacks.reuse_freed_memory=null"]}


def run(data: Path, out: Path, epochs: int, extra: list[str]) -> dict:
    """One `domaintune train` process: its epochs from metrics.json, its page faults and peak RSS."""
    command = [
        str(Path(sys.executable).with_name("domaintune")),
        "train",
        "task=support",
        f"data.path={data}",
        "peft=none",
        "logger=none",
        "test=false",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        f"paths.output_dir={out}",
        *extra,
    ]
    with open(out.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{' '.join(command)} failed; see {out.with_suffix('.log')}")
    metrics = json.loads(next(out.rglob("metrics.json")).read_text())
    return {
        "epochs": [e["seconds"] for e in metrics["history"]],
        "val_acc": metrics["history"][-1]["val/acc"],
        "faults": usage.ru_minflt,
        "rss_gb": usage.ru_maxrss / 1024**2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = sweep.make_subset(Path(tmp) / "subset")
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        for repeat in range(args.repeats):
            for number, (side, extra) in enumerate(SIDES.items()):
                results[side].append(run(data, Path(tmp) / f"{number}-{repeat}", args.epochs, extra))
                print(side, results[side][-1], flush=True)
    medians = {}
    print(
        f"\n{'side':30} {'epoch s (median)':>17} {'range':>13} {'val acc':>8} {'page faults':>12} {'peak RSS GB':>12}"
    )
    for side, runs in results.items():
        epochs = [s for r in runs for s in r["epochs"]]
        medians[side] = statistics.median(epochs)
        accuracies = ",".join(sorted({f"{r['val_acc']:.4f}" for r in runs}))
        print(
            f"{side:30} {medians[side]:17.1f} {min(epochs):6.1f}-{max(epochs):<6.1f} "
            f"{accuracies:>8} "
            f"{statistics.median(r['faults'] for r in runs):12,.0f} {max(r['rss_gb'] for r in runs):12.2f}"
        )
    first, second = medians.values()
    print(f"epoch time ratio reuse / glibc defaults: {first / second:.3f}")


if __name__ == "__main__":
    main()
