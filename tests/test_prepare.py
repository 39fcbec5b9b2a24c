"""`domaintune prepare`: cleaning counts, leakage, imbalance, the report; and the class-weight remedy."""

import json

import pandas as pd
import torch

from conftest import domaintune
from domaintune.data.cleaning import CleaningReport, clean_split, near_key, normalize, remove_leakage
from domaintune.modules.sequence_classification import _class_weights


def test_normalize_and_near_key():
    assert normalize("  a\u200bb\x07 c\n\n d ") == "a b c d"
    assert near_key("Where is MY card?!") == near_key("where is my card") != near_key("where is my cards")


def test_clean_split_counts_empty_exact_and_near_duplicates():
    frame = pd.DataFrame({"text": ["Hi there", "hi there!", "Hi  there", "", "other", "other"],
                          "label": ["a", "a", "a", "a", "b", "b"]})
    report = CleaningReport()
    cleaned = clean_split(frame, "train", ("text", "label"), report)
    assert cleaned.text.tolist() == ["Hi there", "other"]
    assert (report.empty["train"], report.exact_duplicates["train"], report.near_duplicates["train"]) == (1, 2, 1)


def test_leaked_rows_leave_the_later_split():
    splits = {"train": pd.DataFrame({"text": ["x one", "y two"], "label": ["a", "b"]}),
              "test": pd.DataFrame({"text": ["X ONE!", "z three"], "label": ["a", "b"]})}
    report = CleaningReport()
    out = remove_leakage(splits, "text", report)
    assert out["test"].text.tolist() == ["z three"] and report.leaked == {"train": 0, "test": 1}


def test_balanced_class_weights_follow_inverse_frequency():
    weights = _class_weights("balanced", [90, 10], 2)
    assert torch.allclose(weights, torch.tensor([100 / 180, 100 / 20]))
    assert _class_weights(None, [90, 10], 2) is None


def test_prepare_cleans_splits_and_reports(tmp_path):
    rows = [{"text": f"clause number {i} about payment", "label": "other"} for i in range(90)]
    rows += [{"text": f"we may end your account {i}", "label": "termination"} for i in range(10)]
    rows += [{"text": "clause number 1 about payment", "label": "other"}] * 3 + [{"text": " ", "label": "other"}]
    source = tmp_path / "clauses.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    result = domaintune("prepare", "task=legal", "model=tiny", f"data.path={source}", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cleaning"]["exact_duplicates"]["train"] == 3 and summary["cleaning"]["empty"]["train"] == 1
    assert sum(summary["rows"].values()) == 100 and summary["imbalance"]["warn"]
    assert "warning: imbalanced" in result.stdout and (out / "labels.png").is_file() and (out / "token_lengths.png").is_file()
    assert "module.class_weights=balanced" in (out / "report.md").read_text()
    again = domaintune("prepare", "task=legal", "model=tiny", f"data.path={source}", f"out={out}")
    assert again.returncode == 2 and "already exists" in again.stderr
    trained = domaintune("train", "task=legal", "model=tiny", "logger=none", "trainer=debug", f"data.path={out}",
                         "module.class_weights=balanced", env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "o")})
    assert trained.returncode == 0, trained.stderr[-2000:]


def test_evaluate_reproduces_the_run_and_compares_with_the_probe(make_cfg, tmp_path):
    from pathlib import Path

    from domaintune import registry
    from domaintune.train import train

    registry.discover()
    cfg = make_cfg("model=tiny", "logger=none", "trainer=debug", "task=marketing")
    train(cfg)
    run = Path(cfg.paths.run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    result = domaintune("evaluate", f"run={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = (run / "evaluations").glob("*/evaluation.json")
    evaluation = json.loads(report.read_text())
    assert abs(evaluation["scores"]["fine_tuned"]["acc"] - metrics["test"]["test/acc"]) < 1e-6  # the best weights, reloaded
    assert abs(evaluation["scores"]["base"]["acc"] - metrics["baseline"]["val/acc"]) < 0.5
    low, high = evaluation["ci95"]["macro_f1"]
    assert low <= evaluation["difference"]["macro_f1"] <= high
    assert evaluation["verdict"] in result.stdout and (report.parent / "confusion_matrix.png").is_file()
    assert evaluation["data"]["same_as_training"]

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": f"row {i}", "label": f"new{i % 2}"}) + "\n" for i in range(40)))
    wrong = domaintune("evaluate", f"run={run}", f"data.path={other}")
    assert wrong.returncode == 2 and "labels differ from the run's" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = domaintune("evaluate", f"run={tmp_path}")
    assert missing.returncode == 2 and "not a finished run folder" in missing.stderr


def test_init_from_continues_a_run_and_checks_forgetting_on_its_test_set(tmp_path):
    from pathlib import Path

    env = {"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)}
    fast = ["model=tiny", "logger=none", "trainer=debug", "task=marketing"]
    assert domaintune("train", *fast, env=env).returncode == 0
    (first,) = [p.parent for p in tmp_path.glob("runs/*/*/metrics.json")]
    result = domaintune("train", *fast, f"init_from={first}", "regression_tolerance=0.0", "seed=7", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    (second,) = [p.parent for p in tmp_path.glob("runs/*/*/metrics.json") if p.parent != first]
    regression = json.loads((second / "metrics.json").read_text())["regression"]
    assert regression["before"] == json.loads((first / "metrics.json").read_text())["test"][regression["metric"]]
    assert regression["regressed"] == (regression["drop"] > 0.0)
    assert f"earlier run's test set: {regression['metric']}" in result.stdout
    assert 0 < regression["test_rows_in_new_train"] <= regression["test_rows"]  # seed 7 splits the same rows otherwise
    assert f"{regression['test_rows_in_new_train']} of its {regression['test_rows']} test rows are in the new train data" in result.stdout
    wrong_labels = domaintune("train", "model=tiny", "logger=none", "trainer=debug", "task=support", f"init_from={first}", env=env)
    assert wrong_labels.returncode == 2 and "labels differ" in wrong_labels.stderr
    full = domaintune("train", *fast, "peft=none", f"init_from={first}", env=env)
    assert full.returncode == 2 and "another peft setting" in full.stderr
    assert Path(first / "metrics.json").is_file()


def test_prepare_instruction_data_dedupes_and_splits_by_prompt(tmp_path):
    rows = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(40)]
    rows += [{"instruction": "Question 3!", "response": "answer 3"}, {"instruction": "question 5", "response": ""}]
    source = tmp_path / "qa.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    result = domaintune("prepare", "task=support_replies", "model=tiny_causal", f"data.path={source}", f"out={out}")
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
    assert torch.allclose(module.loss(logits, labels), expected)
