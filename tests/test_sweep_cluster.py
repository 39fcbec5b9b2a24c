"""Sweeps beyond one process: distinct workers, parallel batches, trial-side heartbeats and
limited retries, strict sampler keywords, hydra-optuna-sweeper configs, several objectives. A
cluster launcher's dead job: test_sweep_slurm.py, on a real SLURM cluster."""

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from helpers import BIN, HELPERS, IN_PROCESS, ROOT, TINY_SWEEP, cli, domaintune, read_wandb, sweep, trials

TINY = TINY_SWEEP
SUPPORT = Path("sweeps") / "support"  # the study's folder under an output folder
SPACE = {"module.lr": FloatDistribution(1e-5, 1e-3, log=True), "trainer.max_epochs": IntDistribution(1, 2)}


def proposals(rows: list[dict]) -> list[tuple]:
    """The parameter sets the sampler proposed (a retry repeats its trial's on purpose)."""
    keys = sorted(k for k in rows[0] if k.startswith("params."))
    return [tuple(r[k] for k in keys) for r in rows if "retry of" not in r["note"]]


@pytest.mark.slow
def test_two_sweep_processes_started_together_on_one_journal_study_never_repeat_parameters(tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    command = [str(BIN / "domaintune"), "train", "-m", "sweep=optuna", *IN_PROCESS, *TINY, "hydra.sweeper.n_trials=4"]
    command.append(f"hydra.sweeper.storage={journal}")
    env = {**os.environ, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path)}
    shells = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for shell in shells:
        assert shell.wait(timeout=600) == 0, shell.stderr.read()[-3000:]
    rows = trials(tmp_path / SUPPORT)
    numbers = [int(r["number"]) for r in rows]
    assert sorted(numbers) == list(range(len(numbers)))  # no trial number twice, none lost
    assert sum(r["state"] in ("complete", "pruned") for r in rows) >= 4
    assert len({r["worker"] for r in rows}) == 2  # both shells took trials
    found = proposals(rows)
    assert len(set(found)) == len(found), found  # before: trials 0/1 and 2/3 were identical


def test_a_one_process_sweep_proposes_the_same_trials_on_every_run():
    from domaintune.sweep.study import build_sampler

    def run(seed: int) -> list[dict]:
        sampler = build_sampler({"_target_": "optuna.samplers.TPESampler", "seed": seed, "n_startup_trials": 3}, SPACE)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        for _ in range(6):
            trial = study.ask(SPACE)
            study.tell(trial, -abs(trial.params["module.lr"] - 3e-4))
        return [t.params for t in study.trials]

    first = run(0)
    assert run(0) == first  # the study's seed makes the sweep repeatable
    assert run(1) != first
    assert len({tuple(p.values()) for p in first}) == 6


def test_a_typo_in_a_sampler_keyword_is_one_line_with_exit_code_2(tmp_path):
    result = sweep(tmp_path, "+hydra.sweeper.sampler.n_startup_trial=3")
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "hydra.sweeper.sampler.n_startup_trial: TPESampler takes no such keyword; did you mean 'n_startup_trials'?"
        in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "sweeps" / "support" / "trial-0").exists()  # refused before any trial ran


def test_samplers_and_pruners_are_chosen_by_group_or_by_target(tmp_path):
    result = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        "~hydra.sweeper.sampler.n_startup_trials",
        "~hydra.sweeper.sampler.multivariate",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="support", storage=f"sqlite:///{tmp_path}/sweeps/support/study.db")
    assert len(study.trials) == 2 and study.user_attrs["pruner"]["_target_"] == "optuna.pruners.NopPruner"


# lightning-hydra-template's configs/hparams_search/mnist_optuna.yaml, with our task's keys
HPARAMS_SEARCH = """\
# @package _global_

# example hyperparameter optimization of some experiment with Optuna:
# python train.py -m hparams_search=mnist_optuna experiment=example

defaults:
  - override /hydra/sweeper: optuna

# choose metric which will be optimized by Optuna
# make sure this is the correct name of some metric logged in lightning module!
optimized_metric: "val/acc_best"

# here we define Optuna hyperparameter search
# it optimizes for value returned from function with @hydra.main decorator
# docs: https://hydra.cc/docs/next/plugins/optuna_sweeper
hydra:
  mode: "MULTIRUN" # set hydra to multirun by default if this config is attached

  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper

    # storage URL to persist optimization results
    # for example, you can use SQLite if you set 'sqlite:///example.db'
    storage: null

    # name of the study to persist optimization results
    study_name: null

    # number of parallel workers
    n_jobs: 1

    # 'minimize' or 'maximize' the objective
    direction: maximize

    # total number of runs that will be executed
    n_trials: 3

    # choose Optuna hyperparameter sampler
    # you can choose bayesian sampler (tpe), random search (without optimization), grid sampler, and others
    # docs: https://optuna.readthedocs.io/en/stable/reference/samplers.html
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10 # number of random sampling runs before optimization starts

    # define hyperparameter search space
    params:
      module.lr: interval(0.0001, 0.1)
      data.batch_size: choice(8, 16)
      module.dropout: choice(0.0, 0.1)
"""


@pytest.mark.slow
def test_a_hydra_optuna_sweeper_hparams_search_config_runs_unchanged(tmp_path):
    # lightning-hydra-template's file as it is (override /hydra/sweeper: optuna, its plugin's _target_,
    # val/acc_best): no flag on the command line, and no trial but the best is tested.
    config_dir = tmp_path / "configs"
    (config_dir / "hparams_search").mkdir(parents=True)
    (config_dir / "hparams_search" / "support_optuna.yaml").write_text(HPARAMS_SEARCH)
    result = cli(
        "train",
        "--config-dir",
        str(config_dir),
        "hparams_search=support_optuna",
        "hydra.sweeper.custom_search_space=extend_space.head_lr_from_lr",
        "model=tiny",
        "logger=csv",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        env={**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "outputs" / "multiruns").glob("*/*")  # hydra.sweep.dir of the default config
    with open(folder / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["state"] for r in rows] == ["complete"] * 3
    searched = {"params.module.lr", "params.data.batch_size", "params.module.dropout", "params.module.head_lr"}
    assert {k for k in rows[0] if k.startswith("params.")} == searched  # the file's space, none of ours added
    assert all(r["note"] == "" for r in rows)  # custom_search_space: no trial of the defaults
    assert all(0.0001 <= float(r["params.module.lr"]) <= 0.1 for r in rows)
    for row in rows:  # custom_search_space suggested the head's rate from the encoder's
        assert 5 <= float(row["params.module.head_lr"]) / float(row["params.module.lr"]) <= 20
        config = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
        assert config["module"]["head_lr"] == pytest.approx(float(row["params.module.head_lr"]))
    assert "sweep 'support'" in result.stdout  # study_name null: the task's name
    for row in rows:  # val/acc_best is val/acc's best epoch; no trial touched the test split
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert metrics["best"]["metric"] == "val/acc" and metrics["test"] == {}
    assert json.loads((folder / "best_test.json").read_text())["test"]["test/acc"] >= 0  # the best, once

    wrong = cli(
        "train",
        "--config-dir",
        str(config_dir),
        "hparams_search=support_optuna",
        "model=tiny",
        "hydra.sweeper.direction=minimize",  # mode follows val/acc: max
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "wrong")},
    )
    assert wrong.returncode == 2 and "hydra.sweeper.direction=minimize disagrees with mode=max" in wrong.stderr


@pytest.mark.slow
def test_a_two_objective_sweep_writes_the_pareto_front_and_one_experiment_per_pareto_trial(tmp_path):
    result = sweep(
        tmp_path,
        "logger=wandb",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.objectives=[val/acc,model/trainable_params]",
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.params.peft.r=choice(2,8)",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front of val/acc, model/trainable_params on validation" in result.stdout
    folder = tmp_path / "sweeps" / "support"
    rows = trials(tmp_path / SUPPORT)
    assert all(r["state"] == "complete" for r in rows) and len(rows) == 4
    assert "value.val/acc" in rows[0] and "value.model/trainable_params" in rows[0] and "value" not in rows[0]
    study = optuna.load_study(study_name="support", storage=f"sqlite:///{folder}/study.db")
    front = sorted(t.number for t in study.best_trials)
    assert sorted(int(p.stem.split("-")[1]) for p in (folder / "experiment").glob("pareto-*.yaml")) == front
    assert (folder / "plots" / "pareto_front.png").stat().st_size > 0 and (
        folder / "plots" / "pareto_front.html"
    ).exists()
    assert not (folder / "best.yaml").exists() and not (folder / "best_test.json").exists()  # no single best to test
    for row in rows:  # each objective is the run's own figure, also in its W&B summary
        metrics = json.loads((folder / f"trial-{row['number']}" / "metrics.json").read_text())
        assert float(row["value.model/trainable_params"]) == metrics["cost"]["model/trainable_params"]
        assert float(row["value.val/acc"]) == pytest.approx(metrics["best"]["value"])
        record = read_wandb(folder / f"trial-{row['number']}")
        assert record["summary"]["model/trainable_params"] == metrics["cost"]["model/trainable_params"]
    pareto = (folder / "experiment" / f"pareto-{front[0]}.yaml").read_text()
    assert "peft:" in pareto and "module:" in pareto  # the trial's parameters, as an experiment
    reproduced = cli(
        "train",
        "--config-dir",
        str(folder),
        f"experiment=pareto-{front[0]}",
        "logger=none",
        "test=false",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "repro")},
    )
    assert reproduced.returncode == 0, reproduced.stderr[-3000:]


@pytest.mark.slow
def test_by_default_two_trials_run_at_once_in_reused_processes_and_prune_there(tmp_path):
    # Validation accuracy never reaches 1.1: the threshold pruner stops every trial at its second epoch, from
    # the trial's own joblib process (it reaches the study through storage).
    result = cli(
        "train",
        "-m",
        "sweep=optuna",
        *TINY,
        "hydra.sweeper.n_trials=4",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.n_warmup_steps=1",
        "hydra.sweeper.pruner.lower=1.1",
        "hydra.sweeper.params.trainer.max_epochs=int(interval(3,4))",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / SUPPORT)
    assert [r["state"] for r in rows] == ["pruned"] * 4 and all(r["epochs_run"] == "2" for r in rows)
    assert {r["run_dir"].rsplit("/", 1)[1] for r in rows} == {f"trial-{n}" for n in range(4)}
    study = optuna.load_study(study_name="support", storage=f"sqlite:///{tmp_path}/sweeps/support/study.db")
    first, second, third, fourth = study.trials
    assert second.datetime_start < first.datetime_complete  # a batch of two: both ran at once
    assert third.datetime_start >= max(first.datetime_complete, second.datetime_complete)  # then the next batch
    for trial in study.trials:  # the job's own process beat (it records heartbeat_from after its first beat)
        assert trial.user_attrs["heartbeat_from"] != trial.user_attrs["worker"]
    assert len({t.user_attrs["heartbeat_from"] for t in study.trials}) == 2  # joblib kept its two processes


@pytest.mark.slow
def test_a_lost_batch_keeps_each_trials_own_outcome_and_retries_only_the_dead_one(tmp_path):
    # Two trials at once under joblib: trial 0 is pruned at its second epoch and records it; then trial 1's
    # process is killed, joblib gives up the whole batch, and the sweeper reads each trial's own folder.
    trial_0 = tmp_path / SUPPORT / "trial-0"
    result = domaintune(
        "train",
        "-m",
        "sweep=optuna",
        *TINY,
        "hydra.sweeper.n_trials=2",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.n_warmup_steps=1",
        "hydra.sweeper.pruner.lower=1.1",  # never reached: every trial is pruned at its second epoch
        "hydra.sweeper.params.trainer.max_epochs=3",
        "+callbacks.killer._target_=killer.KillAtEpoch",
        "+callbacks.killer.epoch=1",
        f"+callbacks.killer.marker={tmp_path / 'killed-once'}",
        "+callbacks.killer.only_in=trial-1",
        f"+callbacks.killer.wait_for={trial_0 / 'outcome.json'}",
        env={**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / SUPPORT)
    assert [(r["number"], r["state"]) for r in rows] == [("0", "pruned"), ("1", "fail"), ("2", "pruned")]
    assert rows[0]["note"] == "pruned at epoch 1 with val/acc=" + rows[0]["note"].rsplit("=", 1)[1]
    assert json.loads((trial_0 / "outcome.json").read_text())["state"] == "pruned"
    assert "its job died (TerminatedWorkerError" in rows[1]["note"]
    study = optuna.load_study(study_name="support", storage=f"sqlite:///{tmp_path}/{SUPPORT}/study.db")
    assert [t.user_attrs.get("retry_of") for t in study.trials] == [None, None, 1]  # only the dead one is retried


@pytest.mark.slow
def test_a_trial_that_kills_its_process_every_time_is_retried_max_retry_times_then_counts_as_a_failure(tmp_path):
    result = domaintune(
        "train",
        "-m",
        "sweep=optuna",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.sweeper.n_jobs=1",  # one trial per launch: each death is its own
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_retry=1",
        "+callbacks.killer._target_=killer.KillAtEpoch",
        "+callbacks.killer.epoch=0",
        "+callbacks.killer.marker=${paths.run_dir}/killed",  # every trial's process, every time
        env={**HELPERS, "DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "2 of 2 trials failed (more than hydra.sweeper.max_failure_rate=0.5)" in result.stderr
    rows = trials(tmp_path / SUPPORT)
    assert [r["state"] for r in rows] == ["fail"] * 4 and all("its job died" in r["note"] for r in rows)
    study = optuna.load_study(study_name="support", storage=f"sqlite:///{tmp_path}/sweeps/support/study.db")
    retry_of = {t.number: t.user_attrs.get("retry_of") for t in study.trials}
    assert retry_of == {0: None, 1: 0, 2: None, 3: 2}  # one retry each (max_retry=1), then a new trial
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(study.trials[3]) == [2]


def test_a_journal_storage_without_heartbeats_never_waits_forever(tmp_path):
    from domaintune.sweep.study import open_study, storage_url

    journal = tmp_path / "study.journal"
    tpe, median = {"_target_": "optuna.samplers.TPESampler", "seed": 0}, {"_target_": "optuna.pruners.MedianPruner"}
    study = open_study("support", storage_url(str(journal), tmp_path), ["maximize"], tpe, median, SPACE)
    held = study.ask(SPACE)
    held.set_user_attr("worker", "another-machine:4242")  # running there, or dead: a journal cannot tell
    started = time.time()
    result = sweep(
        tmp_path, "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={journal}", "hydra.sweeper.wait_timeout=3"
    )
    assert result.returncode == 2 and time.time() - started < 120
    assert "waited 3 s (hydra.sweeper.wait_timeout) for trial(s) 0 (another-machine:4242)" in result.stderr
    assert "Traceback" not in result.stderr


def test_objectives_and_directions_are_checked_before_any_trial():
    from domaintune.errors import UserError
    from domaintune.sweep.runner import _objectives
    from domaintune.sweep.study import directions

    assert _objectives(None, "val/acc") is None and _objectives(["val/acc"], "val/acc") is None
    assert _objectives(["val/acc", "time/epoch_s"], "val/acc") == ["val/acc", "time/epoch_s"]
    with pytest.raises(UserError, match="one objective is the optimized metric; set optimized_metric=val/loss"):
        _objectives(["val/loss"], "val/acc")
    with pytest.raises(UserError, match="'test/acc' is not a run figure"):
        _objectives(["val/acc", "test/acc"], "val/acc")  # selection never looks at the test split
    assert directions(None, None, "max") == ["maximize"] and directions("minimize", None, "min") == ["minimize"]
    assert directions(["maximize", "minimize"], ["val/acc", "time/epoch_s"], "max") == ["maximize", "minimize"]
    with pytest.raises(UserError, match="give hydra.sweeper.direction as a list of 2"):
        directions("maximize", ["val/acc", "time/epoch_s"], "max")
    with pytest.raises(UserError, match="name the metrics too with hydra.sweeper.objectives"):
        directions(["maximize", "minimize"], None, "max")
    with pytest.raises(UserError, match="use maximize or minimize"):
        directions("up", None, "max")


@pytest.mark.slow
def test_a_grid_sweep_runs_every_point_of_its_grid_once(tmp_path):
    result = sweep(
        tmp_path,
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.params={module.lr: 'choice(1e-4, 3e-4, 1e-3)', trainer.max_epochs: 'choice(1)'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(float(r["params.module.lr"]) for r in trials(tmp_path / SUPPORT)) == [1e-4, 3e-4, 1e-3]


def test_a_point_is_trained_once_and_an_exhausted_space_ends_the_sweep(tmp_path):
    """TPE on a 4-point space with 8 trials asked: a repeated proposal gets the earlier trial's
    value without training, and once all 4 points are trained the sweep stops asking."""
    result = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=8",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "hydra.sweeper.params={module.lr: 'choice(1e-4, 3e-4)', trainer.max_epochs: 'choice(1, 2)'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / "sweeps" / "support")
    trained = [r for r in rows if "repeat of" not in r["note"]]
    points = {(r["params.module.lr"], r["params.trainer.max_epochs"]) for r in trained}
    assert len(trained) == len(points) == 4 and all(r["state"] == "complete" for r in rows)
    folders = sorted(p.parent.name for p in (tmp_path / "sweeps" / "support").glob("trial-*/metrics.json"))
    assert folders == sorted(f"trial-{r['number']}" for r in trained)  # repeats trained nothing
    for repeat in (r for r in rows if "repeat of" in r["note"]):
        earlier = next(r for r in rows if repeat["note"] == f"repeat of trial {r['number']}")
        assert (repeat["params.module.lr"], repeat["value"]) == (earlier["params.module.lr"], earlier["value"])
    assert len(rows) < 8 and "every point of the search space has been trained" in result.stdout  # asked no more


def test_trial_0_trains_the_defaults_once_and_only_when_the_space_holds_them(tmp_path):
    from omegaconf import OmegaConf

    from domaintune.sweep.study import enqueue_defaults, open_study, storage_url

    tpe, median = {"_target_": "optuna.samplers.TPESampler", "seed": 0}, {"_target_": "optuna.pruners.MedianPruner"}
    url = storage_url(None, tmp_path)
    cfg = OmegaConf.create({"module": {"lr": 1e-3}, "trainer": {"max_epochs": 2}})
    study = open_study("support", url, ["maximize"], tpe, median, SPACE)
    assert enqueue_defaults(study, cfg, SPACE) is None
    first = study.ask(SPACE)
    assert first.params == {"module.lr": 1e-3, "trainer.max_epochs": 2} and first.user_attrs["defaults"] is True
    assert enqueue_defaults(study, cfg, SPACE) is None and len(study.trials) == 1  # a resumed study: not again
    cfg.trainer.max_epochs = 6
    other = open_study("other", url, ["maximize"], tpe, median, SPACE)
    assert enqueue_defaults(other, cfg, SPACE) == (
        "no trial of the task's defaults: trainer.max_epochs=6 lies outside its search space"
    )
    assert other.trials == []
    # a config group's default is its choice (peft=lora), not the node it composes
    groups = {"peft": CategoricalDistribution(["lora", "ia3"])}
    chosen = OmegaConf.create({"peft": {"r": 16}, "hydra": {"runtime": {"choices": {"peft": "lora"}}}})
    third = open_study("third", url, ["maximize"], tpe, median, groups)
    assert enqueue_defaults(third, chosen, groups) is None and third.ask(groups).params == {"peft": "lora"}
    steps = {"data.batch_size": IntDistribution(16, 48, step=16)}  # range(16, 64, 16): 20 is not one of its points
    off_grid = OmegaConf.create({"data": {"batch_size": 20}})
    assert "data.batch_size=20 lies outside" in enqueue_defaults(
        open_study("fourth", url, ["maximize"], tpe, median, steps), off_grid, steps
    )


def test_plots_of_trials_that_tie_draw_without_warnings(tmp_path):
    import warnings

    from domaintune.sweep.report import _write_plots

    study = optuna.create_study(direction="maximize")
    for lr, epochs in ((1e-4, 1), (3e-4, 2), (1e-3, 1), (2e-4, 2)):
        trial = optuna.trial.create_trial(
            params={"module.lr": lr, "trainer.max_epochs": epochs},
            distributions=SPACE,
            value=0.5,  # every trial ties
            intermediate_values={0: 0.5},
        )
        study.add_trial(trial)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _write_plots(study, tmp_path / "plots")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "plots" / "param_importances.png").is_file()


def test_our_sweeper_is_chosen_wherever_an_optuna_sweeper_is():
    from domaintune.sweep.overrides import SWEEPER, own_sweeper

    pinned = f"hydra.sweeper._target_={SWEEPER}"
    for chosen in ("hparams_search=mnist_optuna", "hydra/sweeper=optuna", "hydra/sweeper=domaintune_optuna"):
        assert own_sweeper(["task=legal", chosen]) == ["task=legal", chosen, pinned]
    for other in ("hparams_search=null", "hydra/sweeper=basic", "module.lr=1e-4,3e-4"):
        assert own_sweeper([other]) == [other]  # a plain multirun keeps Hydra's basic sweeper


def test_the_best_and_the_defaults_trial_are_compared_only_on_the_same_test_rows(tmp_path):
    import numpy as np

    from domaintune import verdict
    from domaintune.sweep.report import _against_defaults

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}, user_attrs={"defaults": True}))
    study.add_trial(optuna.trial.create_trial(value=0.7, params={}, distributions={}))
    _, best = study.trials
    truth = np.array([0, 1] * 50)

    def evaluation(name: str, predicted, rows: str):
        (tmp_path / name).mkdir(exist_ok=True)
        verdict.save_scored(tmp_path / name, {"acc": verdict.Scored("accuracy", (truth, predicted))}, rows)
        return tmp_path / name

    evaluation("best", truth, rows="a1")
    cached = {"trial": 0, "evaluation": str(evaluation("defaults", 1 - truth, rows="a1"))}  # tested earlier
    same = _against_defaults(study, best, tmp_path / "best", "val/acc", cached)["search"]
    assert same["line"].startswith("the search improved acc by 1.000") and (same["best"], same["defaults"]) == (1, 0)
    evaluation("defaults", 1 - truth, rows="b2")  # another split of the same size (e.g. another seed)
    other = _against_defaults(study, best, tmp_path / "best", "val/acc", cached)["search"]
    assert other == {"line": "not compared: the two trials were tested on different rows"}


def test_a_lost_batch_mate_that_failed_on_bad_input_stops_the_sweep_in_one_line(tmp_path):
    from domaintune.errors import DataError, UserError
    from domaintune.runfolder import RunFolder
    from domaintune.sweep.runner import _tell_from_folder

    study = optuna.create_study(direction="maximize")
    trial = study.ask(SPACE)
    run = tmp_path / "trial-0"
    run.mkdir()
    with pytest.raises(DataError), RunFolder(run).recording_outcome():  # what the trial's own process records
        raise DataError("data.csv row 7: no label; fill it or drop the row")
    with pytest.raises(UserError, match="data.csv row 7: no label"):
        _tell_from_folder(study, trial, None, tmp_path)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
