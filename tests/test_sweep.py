"""Optuna sweeps on the tiny model: search-space syntax, the sweep folder, pruning, failures,
W&B, the dashboard, workers on PostgreSQL and dead workers."""

import json
import os
import signal
import subprocess
import time

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sqlalchemy.engine import make_url

from domaintune.errors import UserError
from domaintune.sweep.search_space import parse
from helpers import BIN, CONSOLE_NOISE, IN_PROCESS, ROOT, TINY_SWEEP, cli, read_wandb, sweep, trials


def test_search_space_syntax_of_hydra_optuna_sweeper():
    space, fixed = parse(
        {"module.lr": "tag(log, interval(1e-5, 1e-3))", "trainer.max_epochs": "int(interval(1, 5))"},
        [
            "peft.r=choice(4,8,16)",
            "data.batch_size=range(16,64,16)",
            "module.dropout=interval(0.0, 0.3)",
            "task=legal",
        ],
    )
    assert space["module.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert space["trainer.max_epochs"] == IntDistribution(1, 5)
    assert space["peft.r"] == CategoricalDistribution([4, 8, 16])
    assert space["data.batch_size"] == IntDistribution(16, 48, step=16)  # range's stop is excluded, as in Hydra
    assert space["module.dropout"] == FloatDistribution(0.0, 0.3)
    assert fixed == ["task=legal"]
    command_line_wins, _ = parse({"module.lr": "interval(0.1, 0.2)"}, ["module.lr=interval(0.3, 0.4)"])
    assert command_line_wins["module.lr"] == FloatDistribution(0.3, 0.4)
    with pytest.raises(UserError, match="sweep parameters"):
        parse({}, ["module.lr=interval(0.1"])


@pytest.mark.slow
def test_sweep_finishes_n_trials_and_writes_its_folder(small_sweep, tmp_path):
    folder, result = small_sweep
    rows = trials(folder)
    assert [r["state"] for r in rows] == ["complete"] * 3
    assert {r["params.peft.r"] for r in rows} <= {"8", "16"} and all(r["epochs_run"] in ("1", "2") for r in rows)
    # trial 0: the task's defaults (LoRA's rate, r 16), inside the default space, a decade either side of it
    assert (rows[0]["params.module.lr"], rows[0]["params.peft.r"], rows[0]["note"]) == (
        "0.001",
        "16",
        "the task's defaults",
    )
    assert "searched: module.lr 0.0001..0.01 (log), peft.r one of 8, 16" in result.stdout
    assert all(1e-4 <= float(r["params.module.lr"]) <= 1e-2 for r in rows)
    assert all((folder / f"trial-{n}" / "metrics.json").is_file() for n in range(3))
    assert "module:\n  lr:" in (folder / "best.yaml").read_text()
    # trials are chosen on validation and not tested; the best one alone is tested, once, at the end
    assert all(json.loads((folder / f"trial-{n}" / "metrics.json").read_text())["test"] == {} for n in range(3))
    tested = json.loads((folder / "best_test.json").read_text())
    best = max(rows, key=lambda r: float(r["value"]))
    assert tested["trial"] == int(best["number"]) and tested["validation"] == pytest.approx(float(best["value"]))
    assert len(list((folder / f"trial-{best['number']}" / "evaluations").glob("*/evaluation.json"))) == 1
    assert f"verdict on the test split: {tested['verdict']['line']}" in result.stdout
    assert (
        f"selected on validation: val/acc {float(best['value']):.4f} (the best of the trials); "
        f"tested once: test/acc {tested['test']['test/acc']:.4f}"
    ) in result.stdout
    assert f"# Test verdict: {tested['verdict']['line']}" in (folder / "best.yaml").read_text()
    # did the search pay? the best trial against the defaults trial, tested once each on the same rows
    search = tested["search"]["line"]
    assert f"search vs defaults on the test split: {search}" in result.stdout
    assert f"# Search vs defaults: {search}" in (folder / "best.yaml").read_text()
    if tested["trial"] == 0:
        assert search == "the task's defaults (trial 0) were the best trial"
    else:
        assert tested["defaults"]["trial"] == 0 and "95% CI" in search and "the task's defaults" in search
        assert tested["search"]["rows"] == tested["verdict"]["test_rows"]  # the same test rows as the verdict
        assert len(list((folder / "trial-0" / "evaluations").glob("*/scored.npz"))) == 1
    assert [word for word in CONSOLE_NOISE if word in result.stdout + result.stderr] == []  # a quiet sweep
    record = read_wandb(folder)  # the sweep's own W&B run says it too
    assert record["summary"]["search"] == search and record["summary"]["best/trial"] == tested["trial"]
    for plot in ("optimization_history", "intermediate_values", "parallel_coordinate", "param_importances"):
        assert (folder / "plots" / f"{plot}.png").is_file() and (folder / "plots" / f"{plot}.html").is_file()
    assert (
        "reproduce: domaintune train trainer.max_epochs=2 model=tiny" in result.stdout
        and "sweep=optuna" not in result.stdout.split("reproduce:")[1].splitlines()[0]
    )
    compared = cli("compare", str(folder), str(folder / "trial-0"))
    assert compared.returncode == 0
    lines = compared.stdout.splitlines()
    assert lines[0].split()[:5] == ["source", "run", "state", "metric", "value"] and len(lines) == 5
    assert all(" complete " in line and "module.lr=" in line for line in lines[1:4])
    assert "different data" not in compared.stdout
    # best.yaml reproduces the best trial as an experiment
    again = cli(
        "train",
        "--config-dir",
        str(folder),
        "experiment=best",
        "logger=none",
        "trainer.limit_val_batches=1",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "repro")},
    )
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_each_trial_is_a_wandb_run_grouped_by_study(small_sweep):
    folder, _ = small_sweep
    for number in range(3):
        record = read_wandb(folder / f"trial-{number}")
        assert record["name"] == f"trial-{number}" and record["state"] == "finished"
        assert record["summary"]["outcome"] == "complete"
        wandb_config = record["config"]["logger"]["wandb"]
        assert wandb_config["group"] == "support" and wandb_config["job_type"] == "trial"
        pruning = record["config"]["callbacks"]["optuna_pruning"]  # the sweeper's own config node, not the core's
        assert pruning["study"] == "support" and pruning["monitor"] == "val/acc" and "lr" in record["config"]["module"]


@pytest.mark.slow
def test_dashboard_serves_the_study(small_sweep, tmp_path):
    folder, _ = small_sweep
    import urllib.request

    server = subprocess.Popen(
        [str(BIN / "domaintune"), "dashboard", str(folder), "--port", "18765"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, body = time.time() + 60, ""
        while time.time() < deadline and "support" not in body:
            try:
                body = urllib.request.urlopen("http://127.0.0.1:18765/api/studies", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert '"study_name": "support"' in body.replace('":"', '": "')
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
    missing = cli("dashboard", str(tmp_path))
    assert missing.returncode == 2 and "no study.db" in missing.stderr


def test_pruning_actually_prunes(tmp_path):
    # Validation accuracy can never reach 1.1: a threshold pruner prunes every trial at its first report.
    result = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=1.1",
        "trainer.max_epochs=3",
        "hydra.sweeper.params.trainer.max_epochs=int(interval(3,4))",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(tmp_path / "sweeps" / "support")
    assert [r["state"] for r in rows] == ["pruned", "pruned"]
    assert all(r["epochs_run"] == "1" and "pruned at epoch 0" in r["note"] for r in rows)


def test_failed_trials_are_recorded_and_the_failure_rate_stops_the_sweep(tmp_path):
    result = sweep(tmp_path, "hydra.sweeper.n_trials=3", "module.schedule=no_such_schedule")
    assert result.returncode == 2
    assert "2 of 2 trials failed (more than hydra.sweeper.max_failure_rate=0.5)" in result.stderr
    rows = trials(tmp_path / "sweeps" / "support")
    assert [r["state"] for r in rows] == ["fail", "fail"] and all("no_such_schedule" in r["note"] for r in rows)


def test_range_keeps_every_value_of_an_uneven_step():
    space, _ = parse({}, ["x=range(1,9,3)"])
    assert space["x"] == IntDistribution(1, 7, step=3)


def test_samplers_and_pruners_are_config_groups_or_targets_and_their_keywords_are_checked():
    from domaintune.sweep.study import build_pruner, build_sampler

    hyperband = {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1, "reduction_factor": 3}
    assert type(build_pruner(hyperband)).__name__ == "HyperbandPruner"
    with pytest.raises(UserError, match=r"MedianPruner takes no such keyword; did you mean 'n_startup_trials'\?"):
        build_pruner({"_target_": "optuna.pruners.MedianPruner", "n_startup_trial": 4})
    with pytest.raises(
        UserError, match=r"hydra.sweeper.pruner.name is not a setting; choose one with hydra/sweeper/pruner=<"
    ):
        build_pruner({"name": "hyperband"})
    with pytest.raises(UserError, match="'optuna.samplers.NoSuchSampler' is not a class that can be imported"):
        build_sampler({"_target_": "optuna.samplers.NoSuchSampler"}, {})
    with pytest.raises(UserError, match="RandomSampler takes no such keyword; valid: seed"):
        build_sampler({"_target_": "optuna.samplers.RandomSampler", "seed": 0, "n_startup_trials": 10}, {})


@pytest.mark.slow
def test_three_workers_share_one_postgresql_study_and_no_file_or_console_keeps_its_password(tmp_path, postgres_url):
    """The same command in three shells, the study on PostgreSQL: every trial number once, none
    lost. The server asks for a password: one shell passes the URL on the command line, the others
    in $DOMAINTUNE_STORAGE; the trials reach the study all the same, and the password appears in no
    file under the outputs (configs, Hydra's records, logs, W&B runs) and in no console line."""
    import optuna

    command = [
        str(BIN / "domaintune"),
        "train",
        "-m",
        "sweep=optuna",
        *IN_PROCESS,
        *TINY_SWEEP,
        "logger=wandb",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.study_name=pg",
    ]
    outputs, consoles = tmp_path / "outputs", tmp_path / "consoles"
    consoles.mkdir()
    env = {**os.environ, "DOMAINTUNE_OUTPUT_DIR": str(outputs)}
    workers = []
    for n in range(3):
        given = [f"hydra.sweeper.storage={postgres_url}"] if n == 0 else []
        with open(consoles / f"{n}.out", "w") as out, open(consoles / f"{n}.err", "w") as err:
            workers.append(
                subprocess.Popen(
                    command + given,
                    cwd=ROOT,
                    env=env if given else {**env, "DOMAINTUNE_STORAGE": postgres_url},
                    stdout=out,
                    stderr=err,
                )
            )
    for n, worker in enumerate(workers):
        assert worker.wait(timeout=600) == 0, (consoles / f"{n}.err").read_text()[-3000:]
    password = make_url(postgres_url).password.encode()
    leaks = [str(p) for p in [*outputs.rglob("*"), *consoles.iterdir()] if p.is_file() and password in p.read_bytes()]
    assert leaks == []
    consoles_text = "".join(p.read_text() for p in consoles.iterdir())  # three sweeps with W&B: a quiet console
    assert [word for word in CONSOLE_NOISE if word in consoles_text] == []
    assert list(outputs.rglob("wandb/offline-run-*")) and list(outputs.rglob(".hydra/overrides.yaml"))
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(len(numbers)))
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 6 and not [t for t in study.trials if t.state.name == "RUNNING"]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 3  # no barrier: every worker took trials
    proposed = [tuple(sorted(t.params.items())) for t in study.trials if "retry_of" not in t.user_attrs]
    assert len(set(proposed)) == len(proposed)  # three shells, one seed: still no parameters proposed twice
    assert {int(r["number"]) for r in trials(outputs / "sweeps" / "pg")} == set(numbers)


def test_an_unreachable_storage_is_a_one_line_error_without_its_password(tmp_path):
    result = sweep(tmp_path, "hydra.sweeper.storage=postgresql+psycopg://postgres:hunter2@127.0.0.1:1/none")
    assert result.returncode == 2
    assert "hydra.sweeper.storage 'postgresql+psycopg://postgres@127.0.0.1:1/none': cannot open it" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "hunter2" not in result.stderr + result.stdout


def test_a_storage_password_travels_apart_from_its_url(monkeypatch):
    from domaintune.sweep.secrets import PASSWORD_ENV, masked, strip_storage_password, with_password

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    url = "postgresql+psycopg://user:p%40ss@db.example:5432/studies"
    assert masked(url) == "postgresql+psycopg://user:***@db.example:5432/studies"
    assert strip_storage_password([f"hydra.sweeper.storage='{url}'", "module.lr=1e-4"]) == [
        "hydra.sweeper.storage='postgresql+psycopg://user@db.example:5432/studies'",
        "module.lr=1e-4",
    ]
    assert os.environ[PASSWORD_ENV] == "p@ss"  # for this process and the jobs it starts
    assert with_password("postgresql+psycopg://user@db.example:5432/studies") == url
    assert with_password("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"  # nothing to add
    assert masked("/tmp/study.journal") == "/tmp/study.journal"


def test_a_trial_whose_worker_stopped_beating_on_another_machine_is_retried(tmp_path):
    """No pid to check on another machine: the heartbeat on the database tells that its worker died."""
    from domaintune.sweep.study import RetryDeadTrial, open_study, storage_url

    folder = tmp_path / "sweeps" / "support"
    space = {"module.lr": FloatDistribution(1e-5, 1e-3, log=True), "trainer.max_epochs": IntDistribution(1, 2)}
    beat = {"heartbeat_interval": 1, "retry": RetryDeadTrial(2)}
    tpe, median = {"_target_": "optuna.samplers.TPESampler", "seed": 0}, {"_target_": "optuna.pruners.MedianPruner"}
    study = open_study("support", storage_url(None, folder), ["maximize"], tpe, median, space, beat)
    study.enqueue_trial({"module.lr": 5e-4, "trainer.max_epochs": 1})
    lost = study.ask(space)
    lost.set_user_attr("worker", "another-machine:4242")
    study._storage.record_heartbeat(lost._trial_id)  # one beat, then that machine went silent
    time.sleep(2.5)
    result = sweep(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.heartbeat_interval=1")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trials(folder)
    assert next(r for r in rows if r["number"] == "0")["state"] == "fail"
    retried = [r for r in rows if r["number"] != "0" and r["params.module.lr"] == "0.0005"]
    assert len(retried) == 1 and retried[0]["state"] in ("complete", "pruned")
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 2


def test_a_bad_mode_stops_a_sweep_before_it_opens_its_study(tmp_path):
    result = sweep(tmp_path, "mode=maximize")
    assert result.returncode == 2 and "mode='maximize': input should be 'min' or 'max'" in result.stderr
    assert not (tmp_path / "sweeps" / "support" / "study.db").exists()  # no study made with a wrong direction
