"""How cost grows with the work: a table per question, not a timed test.

1. `trials`: the sweep machinery with a near-free objective (the tiny random BERT, one train and
   one validation batch of the legal examples, no checkpoints) for `--trials` trials on SQLite, a journal file and
   PostgreSQL (a throwaway server on loopback, the tests' helpers.postgres), one trial at a time in
   the sweep's own process. Per trial, the seconds of the sweep's loop that are not the trial's
   train/validation batches, split into the sampler's `ask`, the trial's job besides its batches
   (config, model, Trainer, run folder), the sweep report rewritten after each trial, and the rest
   (storage reads, bookkeeping); medians at trials 10, 100 and 1,000 (a window of 11 around each).
2. `rows`: one training epoch against training rows (`--rows`, nested shares of GoEmotions train
   via data.train_fraction), with the padded/real token ratio at each size; the tiny model by
   default (the framework's scaling; `--model minilm` for MiniLM, about 30 min an epoch at 40k rows here).
3. `predict`: `domaintune predict` of a tiny-model run on 100,000 and 1,000,000 rows (BANKING77
   test texts repeated, written to a temporary file): rows per second and peak memory, each size
   in its own process.

    python bench/growth.py [--part trials|rows|predict|all] [--trials 1000] [--storages sqlite,journal,postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import child

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATASETS = ROOT.parent / "shared" / "datasets"
GOEMOTIONS = DATASETS / "support" / "goemotions"
AT = (10, 100, 1000)


# -- 1. the sweep's cost per trial as trials accumulate ------------------------------------------
def sweep_trials(storage: str, url: str | None, trials: int) -> list[dict]:
    """Runs the sweep in this process with timers around its phases; one dict per loop iteration."""
    import optuna

    from domaintune.cli import main
    from domaintune.sweep import report, runner

    phases: dict[str, float] = {"ask": 0.0, "launch": 0.0, "report": 0.0}
    iterations, last = [], [time.perf_counter()]

    def timed(name, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - started

        return call

    def end_of_iteration(*args, **kwargs):
        if kwargs.get("plots"):  # the sweep's closing report, after its last trial
            return report_write(*args, **kwargs)
        started = time.perf_counter()
        report_write(*args, **kwargs)
        now = time.perf_counter()
        phases["report"] += now - started
        iterations.append({"seconds": now - last[0], **phases})
        last[0] = now
        phases.update(ask=0.0, launch=0.0, report=0.0)

    report_write, launch, ask = report.write, runner._launch, optuna.Study.ask
    runner._launch, optuna.Study.ask = timed("launch", launch), timed("ask", ask)
    runner.report.write = end_of_iteration
    out = Path(tempfile.mkdtemp(prefix=f"growth-{storage}-"))
    where = {"sqlite": [], "journal": [f"hydra.sweeper.storage={out / 'study.journal'}"]}.get(
        storage, [f"hydra.sweeper.storage={url}"]
    )
    command = [
        "train", "-m", "sweep=optuna", "hydra/launcher=basic", "hydra.sweeper.n_jobs=1", "task=legal",
        "model=tiny", "logger=none", "test=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "callbacks.early_stopping=null", "callbacks.best_weights=null", "callbacks.last_checkpoint=null",
        f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.study_name=growth",
        "hydra.sweeper.params.trainer.max_epochs=choice(1)", f"paths.output_dir={out}", *where,
    ]  # fmt: skip
    os.environ["WANDB_MODE"] = "disabled"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(command)
    except SystemExit as stop:
        if stop.code:
            sys.exit(f"{storage}: the sweep failed ({stop.code})")
    finally:
        runner._launch, optuna.Study.ask, runner.report.write = launch, ask, report_write
    batches = _batch_seconds(out / "sweeps" / "growth")
    for i, row in enumerate(iterations):
        row["batches"] = batches.get(i, 0.0)
        row["job"] = row["launch"] - row["batches"]
        row["overhead"] = row["seconds"] - row["batches"]
        row["rest"] = row["overhead"] - row["ask"] - row["job"] - row["report"]
    return iterations


def _batch_seconds(folder: Path) -> dict[int, float]:
    """Each trial's train/validation epochs and sanity check, from its metrics.json."""
    seconds = {}
    for metrics in folder.glob("trial-*/metrics.json"):
        run = json.loads(metrics.read_text())
        number = int(metrics.parent.name.removeprefix("trial-"))
        seconds[number] = sum(e["seconds"] for e in run["history"]) + (run.get("sanity_check_s") or 0.0)
    return seconds


def trials_table(args) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "helpers"))  # the tests' throwaway PostgreSQL server
    import postgres

    print(f"## The sweep's own cost per trial, {args.trials} near-free trials (seconds)\n")
    print("| storage | at trial | overhead | ask (sampler) | job besides its batches | report | rest |")
    print("|---|---|---|---|---|---|---|")
    for storage in args.storages.split(","):
        server = None
        if storage == "postgresql":
            bin_dir = postgres.installed()
            if bin_dir is None:
                print("| postgresql | not installed here |  |  |  |  |  |")
                continue
            server = postgres.Postgres(bin_dir)
        started = time.perf_counter()
        try:
            rows = sweep_trials(storage, server.url if server else None, args.trials)
        finally:
            if server:
                server.remove()
        wall = time.perf_counter() - started
        for at in (a for a in AT if a <= len(rows)):
            window = rows[max(0, at - 6) : at + 5]
            median = {k: statistics.median(r[k] for r in window) for k in ("overhead", "ask", "job", "report", "rest")}
            print(
                f"| {storage} | {at} | {median['overhead']:.3f} | {median['ask']:.3f} | {median['job']:.3f} | "
                f"{median['report']:.3f} | {median['rest']:.3f} |",
                flush=True,
            )
        ratio = _median_at(rows, AT[-1]) / _median_at(rows, AT[0]) if len(rows) >= AT[-1] else None
        print(
            f"| {storage} | all | {len(rows)} trials in {wall:.0f} s | "
            + (f"trial {AT[-1]} / trial {AT[0]}: {ratio:.2f}x (goal <= 2) |  |  |  |" if ratio else " |  |  |  |"),
            flush=True,
        )


def _median_at(rows: list[dict], at: int) -> float:
    return statistics.median(r["overhead"] for r in rows[max(0, at - 6) : at + 5])


# -- 2. epoch time against training rows ---------------------------------------------------------
def rows_table(args) -> None:
    print(f"\n## One training epoch against training rows, GoEmotions train, model={args.model}\n")
    print("| train rows | epoch s | s per 1,000 rows | padded / real tokens |\n|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        r = _child(["--epoch-child", args.model, str(rows / 42894)])
        per_thousand, padding = 1000 * r["seconds"] / r["rows"], r["padded"] / r["real"]
        print(f"| {r['rows']} | {r['seconds']:.1f} | {per_thousand:.2f} | {padding:.3f} |", flush=True)


def epoch_child(model: str, fraction: float) -> dict:
    sys.path.insert(0, str(BENCH))
    from domaintune import registry
    from domaintune.config import compose_job
    from domaintune.train import train
    from precision import EpochCost

    registry.add_plugin_folders()
    work = Path(tempfile.mkdtemp(prefix="growth-rows-"))
    cfg = compose_job(
        [
            "task=support",
            f"data.path={GOEMOTIONS}",
            "data.column_names=[text,labels,id]",
            'data.label_separator=","',
            "data.label_names=emotions.txt",
            f"data.train_fraction={min(fraction, 1.0):.6f}",
            f"model={model}",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "module.head_init=random",
            "test=false",
            "logger=none",
            "callbacks.best_weights=null",
            "callbacks.early_stopping=null",
            "+callbacks.cost._target_=precision.EpochCost",
        ],
        work / "run",
        work / "outputs",
    )
    train(cfg)
    rows = json.loads((work / "run" / "metrics.json").read_text())["data"]["train_rows"]
    return {"rows": rows, "seconds": EpochCost.seconds, "padded": EpochCost.padded, "real": EpochCost.real}


# -- 3. predict on a million rows ----------------------------------------------------------------
def predict_table(args) -> None:
    import pandas as pd

    from domaintune.cli import main

    work = Path(tempfile.mkdtemp(prefix="growth-predict-"))
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(
                [
                    "train", "task=support", f"data.path={DATASETS / 'support' / 'banking77'}", "model=tiny",
                    "logger=none", "trainer=debug", f"paths.output_dir={work}",
                ]
            )  # fmt: skip
        except SystemExit as stop:
            if stop.code:
                sys.exit(f"training the tiny run failed ({stop.code})")
    run = next(p.parent for p in (work / "runs").glob("*/*/metrics.json"))
    texts = pd.read_csv(DATASETS / "support" / "banking77" / "test.csv").text
    print("\n## `domaintune predict` of a tiny-model run, unlabelled rows\n")
    print("| rows | seconds | rows/s | peak RSS MB |\n|---|---|---|---|")
    for size in (100_000, 1_000_000):
        file = work / f"rows-{size}.csv"
        pd.DataFrame({"text": texts.sample(size, replace=True, random_state=0)}).to_csv(file, index=False)
        r = _child(["--predict-child", str(run), str(file)])
        print(f"| {size:,} | {r['seconds']:.1f} | {r['rows_per_second']:.0f} | {r['peak_mb']:.0f} |", flush=True)
        file.unlink()


def predict_child(run: str, file: str) -> dict:
    from domaintune.predict import predict

    summary, _ = predict(run, path=file)
    return {**summary, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(arguments: list[str]) -> dict:
    return child.run(__file__, arguments, arguments[0], cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["trials", "rows", "predict", "all"])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--storages", default="sqlite,journal,postgresql")
    parser.add_argument("--rows", default="5000,10000,40000")
    parser.add_argument("--model", default="tiny", choices=["tiny", "minilm"])
    parser.add_argument("--epoch-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--predict-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epoch_child:
        child.report(epoch_child(args.epoch_child[0], float(args.epoch_child[1])))
        return
    if args.predict_child:
        child.report(predict_child(*args.predict_child))
        return
    if args.part in ("trials", "all"):
        trials_table(args)
    if args.part in ("rows", "all"):
        rows_table(args)
    if args.part in ("predict", "all"):
        predict_table(args)


if __name__ == "__main__":
    main()
