"""Resume: a run killed with SIGKILL after its second epoch continues with `domaintune train
resume=<run folder>` in the same folder and W&B run, and ends as the uninterrupted run did; a
sweep trial whose worker died is retried from its last checkpoint."""

import csv
import json
from pathlib import Path

import pytest
import torch

from domaintune.data.batching import LengthGroupedBatchSampler
from domaintune.runs import load_run
from domaintune.runs import test_trainer as evaluation_trainer  # a name pytest does not collect
from helpers import HELPERS, cli, domaintune, read_wandb

RUN = [
    "task=legal",
    "model=tiny",
    "trainer.max_epochs=4",
    "callbacks.early_stopping.patience=10",
    "callbacks.last_checkpoint.every_s=0",  # tiny epochs: a resume checkpoint after each
]


def killer(marker: Path, epoch: int = 2, signal: str = "SIGKILL") -> list[str]:
    """Send `signal` to the run's own process at the start of `epoch` (once: `marker` remembers)."""
    return [
        "+callbacks.killer._target_=killer.KillAtEpoch",
        f"+callbacks.killer.epoch={epoch}",
        f"+callbacks.killer.marker={marker}",
        f"+callbacks.killer.signal={signal}",
    ]


def runs(outputs: Path) -> list[Path]:
    return sorted(p for p in (outputs / "runs").glob("*/*") if p.is_dir())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The 4-epoch run, start to end: what every resumed run must reproduce."""
    outputs = tmp_path_factory.mktemp("uninterrupted") / "outputs"
    whole = cli("train", *RUN, env={**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(outputs)})
    assert whole.returncode == 0, whole.stderr[-3000:]
    (run,) = runs(outputs)
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(("signal", "exit_code"), [("SIGKILL", -9), ("SIGINT", 1)], ids=["kill-9", "ctrl-c"])
def test_interrupted_after_the_second_epoch_then_resumed_ends_as_the_uninterrupted_run(
    tmp_path, uninterrupted, signal, exit_code
):
    env = {**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")}
    killed = domaintune("train", *RUN, *killer(tmp_path / "killed", signal=signal), env=env)
    assert killed.returncode == exit_code, killed.stderr[-3000:]  # -9: SIGKILL, as `kill -9`; 1: Lightning on Ctrl-C
    (run,) = runs(tmp_path / "outputs")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # two epochs done

    resumed = cli("train", f"resume={run}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert runs(tmp_path / "outputs") == [run]  # the same folder, no new one
    a, b = uninterrupted, json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in b["history"]] == [0, 1, 2, 3]
    for before, after in zip(a["history"], b["history"]):  # every epoch, resumed ones included
        assert {k: v for k, v in before.items() if k != "seconds"} == {
            k: v for k, v in after.items() if k != "seconds"
        }
    assert b["test"] == a["test"] and b["best"] == a["best"] and b["verdict"] == a["verdict"]
    assert b["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert not (run / "checkpoints").exists()  # removed when the run finished, as always

    first, second = read_wandb(run)  # the interrupted run's, then the resumed one: one W&B run id
    assert first["folder"].rsplit("-", 1)[1] == second["folder"].rsplit("-", 1)[1] == second["run_id"]
    assert first["exit_code"] != 0  # killed (never closed) or closed as failed by Ctrl-C
    assert second["state"] == "finished" and second["exit_code"] == 0
    assert abs(second["summary"]["test/acc"] - a["test"]["test/acc"]) < 1e-6 and second["summary"]["epoch"] == 4


@pytest.mark.slow
def test_resume_refuses_what_it_cannot_continue(tmp_path):
    env = {**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")}
    early = domaintune("train", *RUN, "logger=none", *killer(tmp_path / "early", epoch=0), env=env)
    assert early.returncode == -9
    (run,) = runs(tmp_path / "outputs")
    cases = [
        ([f"resume={run}", "trainer.max_epochs=9"], "resume= continues a run with its own config"),
        ([f"resume={run}"], "no checkpoints/last.ckpt there (the run ended before it wrote one"),
        ([f"resume={tmp_path}"], "not a run folder (no .hydra/overrides.yaml)"),
    ]
    for args, message in cases:
        result = cli("train", *args, env=env)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    (run / "config.yaml").write_text("{}")  # what a finished run holds (RunFolder.finished)
    (run / "metrics.json").write_text("{}")
    finished = cli("train", f"resume={run}", env=env)
    assert finished.returncode == 2 and "that run finished; nothing to resume" in finished.stderr


@pytest.mark.slow
def test_a_sweep_killed_inside_a_trial_resumes_the_study_and_retries_that_trial_from_its_checkpoint(tmp_path):
    env = {**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")}
    sweep = [
        "-m",
        "sweep=optuna",
        "hydra/launcher=basic",  # the trial runs in the sweep's process: SIGKILL ends the worker too
        "hydra.sweeper.n_jobs=1",
        *RUN,
        "logger=none",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params={module.lr: 'interval(1e-4, 1e-3)'}",
        "optimized_metric=val/loss",  # mode follows: min
    ]
    sweep += killer(tmp_path / "killed") + ["+callbacks.killer.only_in=trial-1"]  # trial 0 finishes first
    died = domaintune("train", *sweep, env=env)
    assert died.returncode == -9  # the worker (and its in-process trial) killed after two epochs of trial 1
    folder = tmp_path / "outputs" / "sweeps" / "legal"
    finished_before = (folder / "trial-0" / "metrics.json").read_text()
    assert not (folder / "trial-1" / "metrics.json").exists()
    # The same command again; the retried trial's epochs after the death are spoiled, so its best epoch is one
    # from before the death (whose checkpoint lies in the dead trial's folder).
    again = cli("train", *sweep, "+callbacks.spoil._target_=killer.SpoilWeights", "+callbacks.spoil.epoch=2", env=env)
    assert again.returncode == 0, again.stderr[-3000:]

    with open(folder / "trials.csv", newline="") as handle:
        trials = list(csv.DictReader(handle))
    assert [(t["number"], t["state"]) for t in trials] == [("0", "complete"), ("1", "fail"), ("2", "complete")]
    assert "died while running it" in trials[1]["note"]
    assert trials[2]["note"] == f"retry of trial 1, resumed from {folder / 'trial-1'}"
    assert trials[1]["params.module.lr"] == trials[2]["params.module.lr"]
    metrics = json.loads((folder / "trial-2" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2, 3] and metrics["epochs_run"] == 4
    assert metrics["best"]["epoch"] in (0, 1)  # before the death: the spoiled epochs are worse
    # The saved (and tested) weights, the value told to Optuna and metrics.json's best: one epoch's.
    retried = load_run(folder / "trial-2")
    retried.datamodule.setup("fit")
    scores = evaluation_trainer(retried.cfg).validate(retried.module, datamodule=retried.datamodule, verbose=False)[0]
    assert scores["val/loss"] == pytest.approx(metrics["best"]["value"], abs=1e-4)
    assert float(trials[2]["value"]) == pytest.approx(metrics["best"]["value"])
    assert (folder / "trial-0" / "metrics.json").read_text() == finished_before  # nothing finished was overwritten


def test_the_training_order_of_an_epoch_follows_the_trainer_epoch():
    """A resumed run's sampler starts at the trainer's epoch, not at 0."""
    lengths = [5, 3, 8, 1, 9, 2, 7, 4] * 4
    counted = LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3)
    orders = [list(counted) for _ in range(3)]  # epochs 0, 1, 2 of an uninterrupted run
    resumed = LengthGroupedBatchSampler(lengths, 4, shuffle=True, seed=3, epoch=lambda: 2)
    assert list(resumed) == orders[2] != orders[1]
