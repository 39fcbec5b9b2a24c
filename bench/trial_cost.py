"""Where a sweep trial's fixed cost goes: the sweep of `bench/sweep.py` (MiniLM, full fine-tuning,
the 2,000 / 500 BANKING77 subset, one trial at a time) cut to two train and two validation
batches a trial, with timers around each phase of a trial besides its batches. Prints each
trial's wall time, batches and fixed cost (wall time less its train/validation epochs and sanity
check, as bench/sweep.py computes it), then per phase the number of calls, total and median.

    python bench/trial_cost.py [--trials 6] [override ...]   # e.g. callbacks.reuse_freed_memory=null
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import tempfile
import time
from pathlib import Path

from sweep import LR, make_subset

SPENT: dict[str, list[float]] = collections.defaultdict(list)


def timed(owner, name: str, label: str | None = None) -> None:
    function = getattr(owner, name)

    @functools.wraps(function)
    def call(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[label or name].append(time.perf_counter() - started)

    setattr(owner, name, call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("overrides", nargs="*", help="more overrides of every trial's config")
    args = parser.parse_args()

    import hydra._internal.config_loader_impl as hydra_config
    import lightning.pytorch as pl
    import optuna

    from domaintune import allocator, callbacks, outputs, runs
    from domaintune.cli import main as domaintune
    from domaintune.sweep import report

    timed(hydra_config.ConfigLoaderImpl, "load_sweep_config", "Hydra composes the trial's config")
    timed(optuna.Study, "ask", "sampler (ask)")
    timed(runs, "build_module", "module built (weights copied)")
    timed(pl.Trainer, "__init__", "Trainer created")
    timed(pl.Trainer, "save_checkpoint", "resume checkpoint written")
    timed(callbacks.BestWeights, "on_validation_end", "best weights kept (copied)")
    timed(outputs, "save_artifacts", "run folder written (weights, and the plot meanwhile)")
    timed(outputs, "plot_learning_curve", "learning-curve plot (while the weights are written)")
    timed(report, "write", "sweep report rewritten")
    timed(allocator, "keep_freed_memory", "freed memory kept (fit start)")
    timed(allocator, "give_back_freed_memory", "freed memory given back (fit end)")

    work = Path(tempfile.mkdtemp(prefix="trial-cost-"))
    data = make_subset(work / "data")
    os.environ["WANDB_MODE"] = "disabled"
    try:
        domaintune(
            [
                "train", "-m", "sweep=optuna", "hydra/launcher=basic", "hydra.sweeper.n_jobs=1", "task=support",
                f"data.path={data}", "peft=none", "logger=none", "test=false", f"paths.output_dir={work / 'out'}",
                f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.study_name=bench",
                "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                f"hydra.sweeper.params.module.lr=tag(log, interval({LR[0]}, {LR[1]}))",
                "hydra.sweeper.params.trainer.max_epochs=int(interval(1, 2))",
                *args.overrides,
            ]
        )  # fmt: skip
    except SystemExit as stop:
        if stop.code:
            raise
    study = optuna.load_study(
        study_name="bench", storage=f"sqlite:///{work / 'out' / 'sweeps' / 'bench' / 'study.db'}"
    )
    trials = sorted(study.trials, key=lambda t: t.datetime_start)
    print("\n| trial | epochs | wall s | batches s | fixed s |\n|---|---|---|---|---|")
    for trial, following in zip(trials, trials[1:] + [None]):
        run = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        batches = sum(e["seconds"] for e in run["history"]) + run["sanity_check_s"]
        wall = (
            (following.datetime_start if following else trial.datetime_complete) - trial.datetime_start
        ).total_seconds()
        print(f"| {trial.number} | {len(run['history'])} | {wall:.2f} | {batches:.2f} | {wall - batches:.2f} |")
    print("\n| phase | calls | total s | median s |\n|---|---|---|---|")
    for phase, seconds in SPENT.items():
        print(f"| {phase} | {len(seconds)} | {sum(seconds):.2f} | {sorted(seconds)[len(seconds) // 2]:.3f} |")


if __name__ == "__main__":
    main()
