"""The verdict: paired bootstrap intervals that agree with an independent computation, sentences
that follow the interval, and end-to-end runs whose verdict is known in advance."""

import itertools
import json
import random

import numpy as np
import pytest
from sklearn.metrics import f1_score

from domaintune import verdict
from helpers import cli, the_run

WORDS = (
    "apple river stone cloud tiger lemon candle forest silver garden violin rocket pepper island marble copper "
    "meadow falcon harbor velvet"
).split()
THINGS = (
    "window engine bottle ladder pencil carpet helmet wallet mirror basket cotton anchor blanket hammer jacket "
    "kettle lantern magnet needle pillow"
).split()


def test_one_macro_f1_the_logged_one_scikit_learns_and_the_verdicts_also_batched():
    # Classes 7 and 8 are only predicted (F1 0, counted), class 9 never occurs (left out), as torchmetrics, which
    # logs val/macro_f1 and test/macro_f1, and scikit-learn count them.
    import torch
    from torchmetrics.classification import MulticlassF1Score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, (5, 300))
    predicted = np.where(rng.random((5, 300)) < 0.7, truth, rng.integers(0, 9, (5, 300)))
    expected = [f1_score(t, p, average="macro", zero_division=0) for t, p in zip(truth, predicted)]
    logged = [
        MulticlassF1Score(10, average="macro")(torch.from_numpy(p), torch.from_numpy(t)).item()
        for t, p in zip(truth, predicted)
    ]
    assert np.allclose(verdict.macro_f1(truth, predicted), expected) and np.allclose(logged, expected, atol=1e-6)
    assert verdict.macro_f1(truth[0], predicted[0]) == pytest.approx(expected[0])


def test_the_search_sentence_follows_the_interval_of_best_against_defaults():
    def result(low, high):
        return {"metric": "acc", "gain": (low + high) / 2, "gain_ci95": [low, high], "rows": 500}

    assert verdict.search_line(result(0.004, 0.020)) == (
        "the search improved acc by 0.012 (95% CI 0.004 to 0.020, 500 test rows) over the task's defaults"
    )
    assert verdict.search_line(result(-0.01, 0.02)).startswith("the search was no better than the task's defaults")
    assert verdict.search_line(result(-0.03, -0.01)).endswith("; keep the defaults")


def test_paired_interval_agrees_with_a_plain_resampling_loop():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 400)
    tuned = np.where(rng.random(400) < 0.85, truth, 1 - truth)
    base = np.where(rng.random(400) < 0.75, truth, 1 - truth)
    result = verdict.compare("acc", verdict.accuracy, (truth, tuned), (truth, base))
    draws = [
        (tuned[rows] == truth[rows]).mean() - (base[rows] == truth[rows]).mean()
        for rows in (rng.integers(0, 400, 400) for _ in range(4000))
    ]
    assert result["ci95"] == pytest.approx(np.percentile(draws, [2.5, 97.5]), abs=0.012)
    assert result["difference"] == pytest.approx((tuned == truth).mean() - (base == truth).mean())
    assert result["ci95"][0] > 0 and verdict.line(result, "x").startswith("fine-tuning improved acc by 0.1")


def test_the_sentence_follows_the_interval_and_the_direction_of_the_metric():
    truth = np.arange(200) % 2
    right, wrong = truth.copy(), 1 - truth
    worse = verdict.compare("acc", verdict.accuracy, (truth, wrong), (truth, right))
    assert worse["gain_ci95"][1] < 0 and verdict.line(worse, "the probe").startswith("the base model is better")
    tied = verdict.compare("acc", verdict.accuracy, (truth, right), (truth, right))
    assert tied["ci95"] == [0.0, 0.0] and "no significant difference" in verdict.line(tied, "the probe")
    lower_loss = verdict.compare("loss", verdict.mean, (np.full(50, 0.2),), (np.full(50, 0.5),), mode="min")
    assert lower_loss["gain"] == pytest.approx(0.3) and verdict.line(lower_loss, "x").startswith(
        "fine-tuning improved loss"
    )
    tokens = verdict.compare(
        "loss",
        verdict.token_mean,
        (np.array([2.0, 6.0]), np.array([1.0, 3.0])),
        (np.array([4.0, 4.0]), np.array([1.0, 3.0])),
        mode="min",
    )
    assert (tokens["fine_tuned"], tokens["base"]) == (2.0, 2.0)  # per token, not the mean of per-row means


def _write(path, rows):
    random.Random(0).shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train(tmp_path, data):
    result = cli(
        "train",
        "model=tiny",
        "logger=none",
        f"data.path={data}",
        "peft=none",
        "trainer.max_epochs=8",
        "module.lr=3e-3",
        "module.head_lr=3e-3",
        "data.batch_size=16",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((the_run(tmp_path) / "metrics.json").read_text()), result.stdout


@pytest.mark.slow
def test_no_gain_when_the_frozen_encoder_already_separates_the_classes(tmp_path):
    rows = [{"text": f"{a} {b}", "label": "nature"} for a, b in itertools.combinations(WORDS, 2)]
    rows += [{"text": f"{a} {b}", "label": "object"} for a, b in itertools.combinations(THINGS, 2)]
    metrics, stdout = _train(tmp_path, _write(tmp_path / "separable.jsonl", rows))
    acc = metrics["verdict"]["metrics"]["acc"]
    assert acc["base"] >= 0.95 and acc["gain_ci95"][0] <= 0  # the probe is (nearly) perfect on test: nothing to gain
    assert metrics["verdict"]["line"].startswith("no significant difference in acc")
    assert metrics["verdict"]["line"] in stdout and metrics["baseline"]["C"] in (
        0.001,
        0.01,
        0.1,
        1.0,
        10.0,
        100.0,
        1000.0,
    )


@pytest.mark.slow
def test_fine_tuning_wins_where_labels_depend_on_word_order_the_pooled_encoder_cannot_see(tmp_path):
    rows = [{"text": f"{a} {b}", "label": "first"} for a in WORDS for b in THINGS]
    rows += [{"text": f"{b} {a}", "label": "second"} for a in WORDS for b in THINGS]
    metrics, _ = _train(tmp_path, _write(tmp_path / "order.jsonl", rows))
    acc = metrics["verdict"]["metrics"]["acc"]
    assert acc["base"] < 0.7 and acc["fine_tuned"] > 0.9 and acc["gain_ci95"][0] > 0
    assert metrics["verdict"]["line"].startswith("fine-tuning improved acc")
    assert metrics["verdict"]["test_rows"] == metrics["data"]["test_rows"]
