"""`domaintune predict`: a classification run labels new texts, in input order, with scores."""

import csv
import json
from pathlib import Path

from helpers import cli, phrase


def write_split(path: Path, seeds: range) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for seed in seeds:
            writer.writerow([phrase(seed), "abc"[seed % 3]])


def test_predict_labels_every_row_in_input_order_and_matches_the_run_test_accuracy(make_cfg, tmp_path):
    from domaintune import registry
    from domaintune.train import train

    data = tmp_path / "data"
    data.mkdir()
    write_split(data / "train.csv", range(0, 150))
    write_split(data / "val.csv", range(150, 180))
    write_split(data / "test.csv", range(180, 217))
    registry.discover()
    cfg = make_cfg("model=tiny", "logger=none", "task=support", f"data.path={data}", "trainer.max_epochs=1")
    train(cfg)
    run = Path(cfg.paths.run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"]["test_rows"] == 37  # nothing removed: the run tested exactly test.csv

    result = cli("predict", f"run={run}", f"data.path={data / 'test.csv'}")
    assert result.returncode == 0, result.stderr[-2000:]
    (table,) = (run / "predictions").glob("*/predictions.csv")
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["text"] for r in rows] == [phrase(seed) for seed in range(180, 217)]  # input order
    top = [json.loads(r["top3"]) for r in rows]
    assert all(
        len(t) == 3 and t[0][0] == r["predicted"] and float(r["probability"]) == t[0][1] for t, r in zip(top, rows)
    )
    assert all(abs(sum(p for _, p in t) - 1) < 1e-4 for t in top)  # three labels: the top 3 hold all the probability
    scores = json.loads((table.parent / "metrics.json").read_text())["metrics"]
    assert scores["labelled_rows"] == 37 and scores["acc"] == round(metrics["test"]["test/acc"], 6)
    assert f"acc {scores['acc']:.4f}" in result.stdout

    from domaintune.predict import predict

    chunked, folder = predict(str(run), str(data / "test.csv"), out=str(tmp_path / "chunked"), chunk_rows=5)
    with open(folder / "predictions.csv", newline="") as handle:
        streamed = list(csv.DictReader(handle))  # 8 chunks: the same rows, labels and (up to padding) scores
    assert [(r["text"], r["predicted"]) for r in streamed] == [(r["text"], r["predicted"]) for r in rows]
    assert max(abs(float(a["probability"]) - float(b["probability"])) for a, b in zip(streamed, rows)) < 1e-5
    assert chunked["metrics"] == scores and chunked["rows"] == 37

    one = cli("predict", f"run={run}", f"text={phrase(3)}")
    assert one.returncode == 0 and one.stdout.split(" ", 2)[:2] in (["predicted:", c] for c in "abc"), one.stdout
    taken = cli("predict", f"run={run}", f"text={phrase(3)}", f"out={table.parent}")
    assert taken.returncode == 2 and "already exists" in taken.stderr and "Traceback" not in taken.stderr
    wrong = cli("generate", f"run={run}", "prompt=hello")
    assert wrong.returncode == 2  # the kind declares what it serves (TaskModule.serves); the line names it
    assert f"a classification run does not generate; label texts with `domaintune predict run={run}" in (wrong.stderr)
