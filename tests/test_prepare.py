"""`domaintune prepare`: cleaning counts, leakage, imbalance, the report; and the class-weight remedy."""

import json

import pytest
import torch

from domaintune.modules.sequence_classification import _class_weights
from helpers import TINY, cli, phrase, the_run


def test_balanced_class_weights_follow_inverse_frequency():
    weights = _class_weights("balanced", [90, 10], 2)
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 20]))
    assert _class_weights(None, [90, 10], 2) is None


def test_prepare_cleans_splits_and_reports(tmp_path):
    rows = [{"text": phrase(i), "label": "other"} for i in range(90)]
    rows += [{"text": phrase(100 + i), "label": "termination"} for i in range(10)]
    rows += [{"text": rows[1]["text"], "label": "other"}] * 3 + [{"text": " ", "label": "other"}]
    source = tmp_path / "clauses.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    result = cli("prepare", "task=legal", "model=tiny", f"data.path={source}", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cleaning"]["exact_duplicates"]["train"] == 3 and summary["cleaning"]["empty"]["train"] == 1
    assert sum(summary["rows"].values()) == 100 and summary["imbalance"]["warn"]
    assert (
        "warning: imbalanced" in result.stdout
        and (out / "labels.png").is_file()
        and (out / "token_lengths.png").is_file()
    )
    assert "module.class_weights=balanced" in (out / "report.md").read_text()
    # before any fine-tuning: the base model's probe on validation, fitted on nested quarter, half and all
    baseline = summary["baseline"]
    curve = baseline["curve"]
    assert [p["fraction"] for p in curve] == [0.25, 0.5, 1.0] and curve[0]["train_rows"] < curve[1]["train_rows"]
    assert (
        curve[-1]["val/macro_f1"] == baseline["val/macro_f1"] and curve[-1]["train_rows"] == summary["rows"]["train"]
    )
    low, high = curve[0]["val/macro_f1_ci95"]
    assert low <= curve[0]["val/macro_f1"] <= high and "base model on validation" in result.stdout
    assert "## The base model" in (out / "report.md").read_text()
    again = cli("prepare", "task=legal", "model=tiny", f"data.path={source}", f"out={out}")
    assert again.returncode == 2 and "already exists" in again.stderr
    # without out=, a new folder under paths.output_dir (as train's runs), overridden here
    placed = cli("prepare", "task=legal", "model=tiny", f"data.path={source}", f"paths.output_dir={tmp_path / 'p'}")
    assert placed.returncode == 0 and len(list((tmp_path / "p" / "prepared").glob("*/*/summary.json"))) == 1
    trained = cli(
        "train",
        "task=legal",
        *TINY,
        f"data.path={out}",
        "module.class_weights=balanced",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "o")},
    )
    assert trained.returncode == 0, trained.stderr[-2000:]


def test_evaluate_reproduces_the_run_verdict_and_scores_every_row_of_new_data(tiny_run, copy_run, tmp_path):
    run = copy_run(tiny_run[0])
    metrics = json.loads((run / "metrics.json").read_text())
    result = cli("evaluate", f"run={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = (run / "evaluations").glob("*/evaluation.json")
    evaluation = json.loads(report.read_text())
    assert evaluation["verdict"] == metrics["verdict"]  # the same weights, probe and rows give the same verdict
    assert evaluation["test"]["test/acc"] == metrics["test"]["test/acc"] and evaluation["data"]["same_as_training"]
    assert evaluation["verdict"]["line"] in result.stdout and (report.parent / "confusion_matrix.png").is_file()

    labels = list(json.loads((run / "label_map.json").read_text()))
    new = tmp_path / "new.jsonl"
    new.write_text(
        "".join(
            json.dumps({"text": f"message {i} about item {i * 3}", "label": labels[i % len(labels)]}) + "\n"
            for i in range(57)
        )
    )
    scored = cli("evaluate", f"run={run}", f"data.path={new}")
    assert scored.returncode == 0, scored.stderr[-2000:]
    newest = max((run / "evaluations").glob("*/evaluation.json"))
    on_new = json.loads(newest.read_text())
    assert on_new["data"]["test_rows"] == on_new["verdict"]["test_rows"] == 57  # every row, not a carved tenth
    assert on_new["baseline"]["val/acc"] == metrics["baseline"]["val/acc"]  # the probe: the run's own train rows

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": f"row {i}", "label": f"new{i % 2}"}) + "\n" for i in range(40)))
    wrong = cli("evaluate", f"run={run}", f"data.path={other}")
    assert (
        wrong.returncode == 2 and "labels the run never trained on" in wrong.stderr and "Traceback" not in wrong.stderr
    )
    missing = cli("evaluate", f"run={tmp_path}")
    assert missing.returncode == 2 and "not a finished run folder" in missing.stderr


def test_evaluate_refuses_a_run_whose_training_data_changed(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": f"note {i} on topic {i % 3} and {i * 7}", "label": f"l{i % 3}"}) + "\n"
            for i in range(60)
        )
    )
    env = {"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "o")}
    trained = cli("train", *TINY, f"data.path={data}", env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run = the_run(tmp_path / "o")
    with data.open("a") as handle:
        handle.write(json.dumps({"text": "an added row about something else", "label": "l0"}) + "\n")
    changed = cli("evaluate", f"run={run}")
    assert changed.returncode == 2 and "no longer the data" in changed.stderr and "Traceback" not in changed.stderr
    continued = cli("train", *TINY, f"data.path={data}", f"init_from={run}", env=env)  # its test set is gone too
    assert continued.returncode == 2 and "is no longer the data that run trained and tested on" in continued.stderr


def test_init_from_continues_a_run_and_checks_forgetting_on_its_test_set(tiny_run, tmp_path):
    first = tiny_run[0]
    env = {"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)}
    fast = [*TINY, "task=legal"]
    result = cli("train", *fast, f"init_from={first}", "regression_tolerance=0.0", "seed=7", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    second = the_run(tmp_path)
    regression = json.loads((second / "metrics.json").read_text())["regression"]
    assert regression["before"] == json.loads((first / "metrics.json").read_text())["test"][regression["metric"]]
    assert regression["regressed"] == (regression["drop"] > 0.0)
    assert f"earlier run's test set: {regression['metric']}" in result.stdout
    new_rows, earlier_rows = regression["verdicts"]["new_test_rows"], regression["verdicts"]["earlier_test_rows"]
    assert earlier_rows["metrics"]["macro_f1"]["fine_tuned"] == pytest.approx(regression["after"], abs=1e-6)
    assert earlier_rows["metrics"]["macro_f1"]["base"] == pytest.approx(regression["before"], abs=1e-6)
    assert new_rows["metrics"]["macro_f1"]["fine_tuned"] == pytest.approx(
        json.loads((second / "metrics.json").read_text())["test"]["test/macro_f1"], abs=1e-6
    )
    assert f"update: {new_rows['line']}" in result.stdout and "on the earlier run's test rows" in earlier_rows["line"]
    assert 0 < regression["test_rows_in_new_train"] <= regression["test_rows"]  # seed 7 splits the same rows otherwise
    assert (
        f"{regression['test_rows_in_new_train']} of its {regression['test_rows']} test rows are in the new train data"
        in result.stdout
    )
    wrong_labels = cli("train", *TINY, "task=support", f"init_from={first}", env=env)
    assert wrong_labels.returncode == 2 and "labels differ" in wrong_labels.stderr
    full = cli("train", *fast, "peft=none", f"init_from={first}", env=env)
    assert full.returncode == 2 and "another peft setting" in full.stderr
    assert (first / "metrics.json").is_file()


def test_prepare_instruction_data_dedupes_and_splits_by_prompt(tmp_path):
    rows = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(40)]
    rows += [{"instruction": "Question 3!", "response": "answer 3"}, {"instruction": "question 5", "response": ""}]
    source = tmp_path / "qa.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    result = cli("prepare", "task=support_replies", "model=tiny_causal", f"data.path={source}", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cleaning"]["empty"]["train"] == 1 and summary["cleaning"]["near_duplicates"]["train"] == 1
    assert sum(summary["rows"].values()) == 40 and "imbalance" not in summary
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"prompt", "response"}  # what the instruction datamodule reads back


def test_class_weights_weigh_rows_without_pulling_every_row_to_rare_classes():
    from domaintune.modules.sequence_classification import SequenceClassificationModule

    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])  # rows 1-2 right (class 0), row 3 right (class 1)
    labels = torch.tensor([0, 0, 1])
    module = SequenceClassificationModule.__new__(SequenceClassificationModule)
    torch.nn.Module.__init__(module)
    module._hparams = type("H", (), {"label_smoothing": 0.1})()
    module.register_buffer("class_weight", torch.tensor([0.1, 10.0]))
    per_row = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")
    expected = (per_row * torch.tensor([0.1, 0.1, 10.0])).sum() / 10.2
    assert torch.allclose(module.objective(logits, labels), expected)
