"""Multi-label classification: label sets read as files write them (lists, separated strings, 0/1
columns, ids into a names file in a header-less TSV), split by iterative stratification, scored
by one definition of each metric, thresholds chosen on validation, and a finished run that
predicts and exports (ONNX sigmoid probabilities checked in onnxruntime)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domaintune.data.labels import LabelReader
from domaintune.data.splits import load_splits, read_labelled, stratified_split
from domaintune.errors import DataError
from helpers import cli, metrics, phrase

NAMES = ("anger", "joy", "neutral", "surprise")


def read(path: Path, **data) -> dict[str, pd.DataFrame]:
    return read_labelled(path, LabelReader.from_data(data, path))[0]


@pytest.mark.parametrize(
    ("name", "content", "data"),
    [
        ("list.jsonl", '{"text": "a", "labels": ["joy", "surprise"]}\n{"text": "b", "labels": []}\n', {}),
        ("cells.csv", 'text,labels\na,"[""joy"", ""surprise""]"\nb,[]\n', {}),
        ("piped.csv", "text,label\na,joy|surprise\nb,\n", {"label_separator": "|"}),
        ("flags.csv", "text,joy,surprise,anger\na,1,1,0\nb,0,0,0\n", {}),  # 0/1 columns found by their values
        ("chosen.csv", "text,joy,surprise,score\na,1,1,0\nb,0,0,1\n", {"label_column": ["joy", "surprise"]}),
    ],
)
def test_label_sets_are_read_as_files_write_them(tmp_path, name, content, data):
    path = tmp_path / name
    path.write_text(content)
    train = read(path, **data)["train"]
    expected = [("joy", "surprise")] if name == "piped.csv" else [("joy", "surprise"), ()]  # an empty cell is missing
    assert train.labels.tolist() == expected


def test_goemotions_layout_header_less_tsv_with_label_ids_and_csv_quoting(tmp_path, caplog):
    """GoEmotions as published: no header, `text<TAB>ids<TAB>comment id`, ids into a names file,
    texts with quotes written CSV-style. Rows written here by us in that layout."""
    (tmp_path / "emotions.txt").write_text("\n".join(NAMES))
    rows = [
        'He said ""no"" and left',  # quoted with inner quotes doubled, as the published files are
        "What a day",
        "Fine I guess",
    ]
    (tmp_path / "train.tsv").write_text(f'"{rows[0]}"\t0,3\tc1\n{rows[1]}\t1\tc2\n{rows[2]}\t2\tc3\n')
    data = {"column_names": ["text", "labels", "id"], "label_separator": ",", "label_names": "emotions.txt"}
    with caplog.at_level("INFO"):
        train = read(tmp_path, **data)["train"]
    assert train.text.tolist() == ['He said "no" and left', "What a day", "Fine I guess"]
    assert train.labels.tolist() == [("anger", "surprise"), ("joy",), ("neutral",)]
    assert "multi-label data: 4 labels, 33.3% of 3 rows have two or more" in caplog.text

    (tmp_path / "train.tsv").write_text("What a day\t7\tc2\n")
    with pytest.raises(DataError, match=r"train.tsv: row 1: label '7' is not an id into data.label_names \(0 to 3\)"):
        read(tmp_path, **data)
    with pytest.raises(DataError, match=r"rows have more fields than data.column_names=\['text', 'labels'\]"):
        read(tmp_path, **{**data, "column_names": ["text", "labels"]})


def test_a_stray_quote_in_plain_tsv_text_stays_text(tmp_path):
    (tmp_path / "d.tsv").write_text('text\tlabel\n"Quoted" at the start\ta\nplain\tb\n')
    assert read(tmp_path / "d.tsv")["train"].text.tolist() == ['"Quoted" at the start', "plain"]


def test_iterative_stratification_keeps_rare_labels_in_held_out_rows():
    rng = np.random.default_rng(0)
    sets = [tuple(sorted({f"common{rng.integers(3)}", *(["rare"] if i < 4 else [])})) for i in range(200)]
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(200)], "labels": sets})
    rest, held = stratified_split(frame, 0.25, seed=0)
    assert len(held) == 50 and len(rest) == 150
    assert sum("rare" in labels for labels in held.labels) == 1  # a quarter of its 4 rows


def test_conflicting_label_sets_are_reported_and_val_test_keep_train_labels(tmp_path):
    rows = [{"text": phrase(i), "labels": ["a", "b"] if i % 2 else ["a"]} for i in range(40)]
    rows.append({"text": phrase(0), "labels": ["b"]})  # same text, another label set
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    splits, report = load_splits(path, LabelReader(None, None, None, None), 0.2, 0.2, 0)
    assert report.conflicting_labels >= 1
    assert {label for labels in splits["test"].labels for label in labels} <= {"a", "b"}


def test_each_metric_has_one_definition_that_scikit_learn_shares():
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    from domaintune.modules.multi_label import scores

    rng = np.random.default_rng(0)
    truth, predicted = rng.random((300, 6)) < 0.3, rng.random((300, 6)) < 0.35
    truth[:5], predicted[:5] = False, False  # rows with no labels, predicted none: exactly right
    found = scores(truth, predicted)
    assert found["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"), abs=1e-6)
    assert found["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-6)
    assert found["samples_f1"] == pytest.approx(
        f1_score(truth, predicted, average="samples", zero_division=1.0), abs=1e-6
    )
    assert found["subset_acc"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-6)
    assert found["hamming"] == pytest.approx(hamming_loss(truth, predicted), abs=1e-6)


def test_thresholds_are_per_label_only_where_validation_says_it_helps():
    from domaintune.modules.multi_label import choose_thresholds

    rng = np.random.default_rng(0)
    truth = rng.random((400, 3)) < 0.4
    # label 0 is separable at 0.2, label 1 at 0.8, label 2 at 0.5: one threshold cannot serve all
    noise = rng.random((400, 3)) * 0.1
    probabilities = np.where(truth, [0.25, 0.85, 0.55], [0.1, 0.7, 0.4]) + noise
    thresholds, way = choose_thresholds(probabilities, truth, "auto", "micro_f1")
    assert way == "per_label" and thresholds[0] < 0.3 < 0.7 < thresholds[1]
    alike = np.where(truth, 0.7, 0.3) + noise  # the same threshold serves every label
    thresholds, way = choose_thresholds(alike, truth, "auto", "micro_f1")
    assert way == "global" and len(set(thresholds)) == 1


def test_a_multi_label_run_ends_with_a_verdict_on_micro_and_macro_f1(multi_label_run):
    run, result = multi_label_run
    found = metrics(run)
    assert found["data"]["multi_label"] is True
    compared = found["verdict"]["metrics"]
    assert list(compared)[:2] == ["micro_f1", "macro_f1"] and all(len(c["ci95"]) == 2 for c in compared.values())
    assert found["verdict"]["base"].startswith("one-vs-rest logistic regression")
    assert {"micro_f1", "macro_f1", "samples_f1", "subset_acc", "hamming"} <= {
        k.removeprefix("test/") for k in found["test"]
    }
    saved = json.loads((run / "thresholds.json").read_text())
    assert saved["way"] in ("global", "per_label") and set(saved["thresholds"]) == set(found["per_label"])
    assert found["baseline"]["thresholds"]["way"] in ("global", "per_label")
    curve = found["baseline"]["curve"]  # the probe on nested quarters, halves and all of the train rows
    assert [p["fraction"] for p in curve] == [0.25, 0.5, 1.0] and curve[0]["train_rows"] < curve[-1]["train_rows"]
    assert curve[-1]["val/micro_f1"] == found["baseline"]["val/micro_f1"] and len(curve[0]["val/micro_f1_ci95"]) == 2
    assert "MultiLabelClassificationModule" in (run / "config.yaml").read_text()
    assert "verdict on the test split:" in result.stdout


def test_predict_gives_labels_above_thresholds_and_every_probability(multi_label_run, copy_run, tmp_path):
    run = copy_run(multi_label_run[0])
    rows = [json.loads(line) for line in (Path(metrics(run)["data"]["path"])).read_text().splitlines()[:12]]
    path = tmp_path / "new.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = cli("predict", f"run={run}", f"data.path={path}", f"out={tmp_path / 'p'}")
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    for predicted, probabilities in zip(table.predicted, table.probabilities):
        probabilities = json.loads(probabilities)
        assert set(probabilities) == set(thresholds)
        assert json.loads(predicted) == [k for k, p in probabilities.items() if p >= thresholds[k]]
    scores = json.loads((tmp_path / "p" / "metrics.json").read_text())["metrics"]
    assert scores["labelled_rows"] == 12 and 0 <= scores["micro_f1"] <= 1
    assert "micro_f1" in result.stdout


def test_export_onnx_gives_our_sigmoid_probabilities_in_onnxruntime(multi_label_run, copy_run):
    import onnxruntime
    import torch
    from transformers import AutoTokenizer

    from domaintune.runs import load_run

    run = copy_run(multi_label_run[0])
    texts = ["I was charged twice and want my money back", "My parcel is late", "hello"]
    finished = load_run(run)
    tokenizer = finished.module.backbone.load_tokenizer()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        ours = finished.module(batch["input_ids"], batch["attention_mask"]).sigmoid().numpy()

    result = cli("export", f"run={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = run / "export"
    card = json.loads((folder / "classifier.json").read_text())
    assert card["multi_label"] and len(card["thresholds"]) == len(card["labels"])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    tokens = AutoTokenizer.from_pretrained(folder)(
        texts, padding=True, truncation=True, max_length=32, return_tensors="np"
    )
    (theirs,) = session.run(
        ["probabilities"], {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    )
    assert np.abs(theirs - ours).max() < 1e-4


def test_a_multirun_on_label_sets_must_name_its_metric(make_cfg):
    """A single run optimizes val/micro_f1 where the task says val/acc (with a log line); a sweep
    or multirun, whose trials table and direction name the metric, is told to say so instead."""
    from domaintune.errors import UserError
    from domaintune.runs import use_variant

    cfg = make_cfg("task=support")
    with pytest.raises(UserError, match="a sweep or multirun must name its metric: add optimized_metric=val/micro_f1"):
        use_variant(cfg, "multi_label", in_multirun=True)
    use_variant(cfg, "multi_label")
    assert cfg.optimized_metric == "val/micro_f1" and cfg.mode == "max"
    assert cfg.module._target_.endswith("MultiLabelClassificationModule") and cfg.module.thresholds == "auto"
