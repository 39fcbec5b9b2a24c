import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CONSOLE_NOISE, ROOT, TINY, cli, domaintune, error_line, finished_runs, metrics, read_wandb, the_run


def test_help_does_not_import_heavy_libraries():
    heavy = "('torch', 'lightning', 'transformers', 'hydra')"
    code = f"import sys, domaintune.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = domaintune("--help")
    assert result.returncode == 0 and "new-plugin" in result.stdout and "plugins" in result.stdout


def test_plugins_lists_name_kind_and_source():
    result = cli("plugins")
    assert result.returncode == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert {"sequence_classification", "text_classification", "legal", "support", "marketing"} <= set(lines)
    assert "module" in lines["sequence_classification"] and "entry point" in lines["sequence_classification"]
    assert "datamodule" in lines["support"] and str(ROOT / "plugins" / "support") in lines["support"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["task=nope"],
            "unknown task 'nope'; available: legal, legal_summaries, marketing, marketing_copy, medical, support, "
            "support_replies",
        ),
        (["model=bert9"], "unknown model 'bert9'"),
        (["data.path=/no/such/data.csv"], "/no/such/data.csv: no such file or folder"),
        (["data.path=README.md"], "README.md: unknown data format"),
        (["data.label_column=nope"], "no column 'nope' (data.label_column)"),
        (["-m", "task=legal,nope"], "unknown task 'nope'"),
        (["model.pooling=max"], "model.pooling 'max' is unknown; use mean, cls or pooler"),
        (["model.dtype=float64"], "model.dtype 'float64' is unknown; use auto, float32, bfloat16 or float16"),
        (["data.val_fraction=0"], "data.val_fraction=0"),
        (["-m", "trainer=ddp", "trainer.accelerator=cpu"], "trainer=ddp cannot run inside a multirun"),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc': input should be a valid integer"),
        (["module.lr=-1"], "module.lr=-1: input should be greater than 0"),
        (["data.batch_size=0"], "data.batch_size=0: input should be greater than or equal to 1"),
        (["data.test_fraction=1.5"], "data.test_fraction=1.5: input should be less than 1"),
        (["mode=maximize"], "mode='maximize': input should be 'min' or 'max'"),
        (["optimized_metric=val/loss", "mode=max"], "mode=max contradicts optimized_metric=val/loss, which is better"),
        (
            ["optimized_metric=val/nope"],
            "no kind of this module declares a direction for it (classification: val/acc, val/loss, val/macro_f1; ",
        ),
        (["module.lrr=1e-4"], "unknown config key 'module.lrr'; did you mean module.lr?"),
        (["trainer.max_epoch=3"], "unknown config key 'trainer.max_epoch'; did you mean trainer.max_epochs?"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    flags, overrides = [a for a in args if a == "-m"], [a for a in args if a != "-m"]  # the case's own keys win
    result = cli("train", *flags, *TINY, *overrides, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in error_line(result)
    assert "Traceback" not in result.stderr + result.stdout
    assert not finished_runs(tmp_path)


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "data.path=/no/such/data.csv", *TINY], "/no/such/data.csv: no such file or folder"),  # in the job
        (["train", "-m", *TINY, "trainer=ddp", "trainer.accelerator=cpu"], "cannot run inside a multirun"),
        (
            ["prepare", "task=legal", "model=tiny", f"data.path={ROOT / 'tests/data/bad/invalid_json_line.jsonl'}"],
            "line 7 is not valid JSON",
        ),
    ],
    ids=["train", "multirun", "prepare"],
)
def test_a_real_terminal_sees_one_line_and_no_traceback(tmp_path, args, message):
    """The in-process checks above, confirmed where a traceback would reach a user: a process of its own."""
    result = domaintune(*args, cwd=tmp_path, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "outputs")})
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in error_line(result)
    assert "Traceback" not in result.stderr + result.stdout
    assert not finished_runs(tmp_path)


def test_train_prints_a_summary_and_writes_its_run_folder(tiny_run):
    run, result = tiny_run
    assert run.parent.parent.name == "runs" and run.name.endswith("_legal")
    assert "selected on validation: val/macro_f1" in result.stdout and f"outputs: {run}" in result.stdout
    assert f"verdict on the test split: {metrics(run)['verdict']['line']}" in result.stdout


@pytest.mark.slow
def test_multirun_over_tasks_gives_each_run_its_own_folder_and_a_quiet_console(tmp_path):
    result = domaintune(
        "train", "-m", "task=legal,support,marketing", *TINY, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = finished_runs(tmp_path / "multiruns")
    assert sorted(metrics(p)["task"] for p in runs) == ["legal", "marketing", "support"]
    assert len(set(runs)) == 3
    assert [word for word in CONSOLE_NOISE if word in result.stdout + result.stderr] == []


@pytest.mark.slow
def test_new_plugin_trains_at_once_and_is_never_overwritten(tmp_path):
    # Real processes: the project's own `plugins` package must be imported from its folder, as a user's would.
    result = domaintune("new-plugin", "insurance", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    task = tmp_path / "conf" / "task" / "insurance.yaml"
    assert (tmp_path / "plugins" / "insurance" / "__init__.py").is_file() and task.is_file()
    listed = domaintune("plugins", cwd=tmp_path)
    assert any(line.startswith("insurance ") and "plugins/insurance" in line for line in listed.stdout.splitlines())
    trained = domaintune("train", "task=insurance", *TINY, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert metrics(the_run(tmp_path / "outputs"))["data"]["train_rows"] > 50
    before = task.read_text()
    again = domaintune("new-plugin", "insurance", cwd=tmp_path)
    assert again.returncode == 2 and "exists already" in again.stderr and task.read_text() == before
    taken = domaintune("new-plugin", "legal", cwd=tmp_path)
    assert taken.returncode == 2 and "exists already" in taken.stderr


def test_init_writes_a_project_and_never_overwrites_one(tmp_path):
    result = cli("init", "Claims-2026", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "Claims-2026"
    assert (project / "conf" / "task" / "claims_2026.yaml").is_file()
    assert (project / "plugins" / "claims_2026" / "data" / "examples.jsonl").is_file()
    assert (
        "task=claims_2026" in (project / "README.md").read_text()
        and "outputs/" in (project / ".gitignore").read_text()
    )
    assert "cd Claims-2026 && domaintune train task=claims_2026" in result.stdout
    before = (project / "README.md").read_text()
    again = cli("init", "Claims-2026", cwd=tmp_path)
    assert again.returncode == 2 and "exists and is not empty" in error_line(again)
    assert (project / "README.md").read_text() == before
    named = cli("init", "other", "--task", "support", cwd=tmp_path)
    assert named.returncode == 2 and "'support' exists already" in named.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    result = domaintune(
        "train",
        "model=tiny",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "logger=csv",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = metrics(the_run(tmp_path / "runs"))
    assert found["world_size"] == 2 and found["epochs_run"] == 2
    # each process tested its shard; the metrics were synchronised over all test rows
    assert sum(c["support"] for c in found["per_class"].values()) == found["data"]["test_rows"]


def test_plain_multirun_is_grouped_in_wandb_and_tabled_like_a_sweep(tmp_path):
    args = ["-m", "module.lr=1e-4,3e-4", "model=tiny", "logger=wandb", "trainer=debug"]
    result = cli("train", *args, env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    (table,) = (tmp_path / "multiruns").glob("*/*/trials.csv")
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["number"], r["state"], r["params.module.lr"]) for r in rows] == [
        ("0", "complete", "0.0001"),
        ("1", "complete", "0.0003"),
    ]
    group = f"{table.parent.parent.name}_{table.parent.name}"
    for row in rows:
        assert float(row["value"]) == json.loads((Path(row["run_dir"]) / "metrics.json").read_text())["best"]["value"]
        record = read_wandb(Path(row["run_dir"]))
        assert record["name"] == f"trial-{row['number']}" and record["state"] == "finished"
        assert record["config"]["logger"]["wandb"]["group"] == group
        assert record["config"]["logger"]["wandb"]["job_type"] == "trial"
    compared = cli("compare", str(table.parent))
    assert compared.returncode == 0 and "module.lr=0.0003" in compared.stdout


def test_compare_says_when_the_runs_used_different_data(tiny_run, tiny_causal_run):
    compared = cli("compare", str(tiny_run[0]), str(tiny_causal_run[0]))  # legal clauses, support replies
    assert compared.returncode == 0 and "these runs used 2 different data sets" in compared.stdout + compared.stderr
