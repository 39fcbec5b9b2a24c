"""Did fine-tuning pay? The fine-tuned and the base model scored on the same test rows, a paired
bootstrap 95% interval on each difference, and one plain sentence that comes from nothing else.

The interval is scipy's percentile bootstrap (`scipy.stats.bootstrap`, `paired=True`): BCa's
jackknife costs one statistic per test row, too slow for large test sets, and it breaks down when
both models agree on every row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESAMPLES = 2000
METHOD = "paired percentile bootstrap, 2000 resamples"


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Accuracy along the last axis (one value per resample when the arrays are batched)."""
    return (truth == predicted).mean(axis=-1)


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 along the last axis: the mean F1 over the classes that occur in the truth or the
    predictions of each resample (a class only predicted scores 0; one neither has is left out).
    The one definition of every macro-F1 domaintune prints: torchmetrics' `MulticlassF1Score
    (average="macro")`, which logs `val/macro_f1` and `test/macro_f1`, and scikit-learn's
    `f1_score(average="macro")` give the same value."""
    single = np.ndim(truth) == 1
    truth, predicted = np.atleast_2d(truth), np.atleast_2d(predicted)
    resamples, classes = len(truth), int(max(truth.max(), predicted.max())) + 1
    offset = np.arange(resamples)[:, None] * classes

    def per_class(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.bincount((offset + values)[rows], minlength=resamples * classes).reshape(resamples, classes)

    every = np.ones(truth.shape, dtype=bool)
    support, guessed, hits = per_class(truth, every), per_class(predicted, every), per_class(truth, truth == predicted)
    f1 = np.divide(2 * hits, support + guessed, out=np.zeros(support.shape), where=(support + guessed) > 0)
    occurs = (support + guessed) > 0
    result = (f1 * occurs).sum(-1) / occurs.sum(-1)
    return result[0] if single else result


def mean(values: np.ndarray) -> np.ndarray:
    """Mean of per-row values (cross-entropy of each test row, ROUGE-L of each answer)."""
    return values.mean(axis=-1)


def token_mean(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Loss per token over the rows: per-row sums over per-row token counts, as a test loss is."""
    return sums.sum(axis=-1) / counts.sum(axis=-1)


def _sets(columns: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Multi-label columns, one per label, truth's then the predictions' (each along the rows, the
    last axis): two boolean arrays (..., labels, rows)."""
    half = len(columns) // 2
    return np.stack(columns[:half], axis=-2).astype(bool), np.stack(columns[half:], axis=-2).astype(bool)


def _ratio(top: np.ndarray, bottom: np.ndarray, empty: float = 0.0) -> np.ndarray:
    return np.divide(top, bottom, out=np.full(np.shape(top), empty, dtype=float), where=bottom > 0)


def micro_f1(*columns: np.ndarray) -> np.ndarray:
    """Multi-label micro-F1: F1 of every (row, label) decision pooled; columns as `_sets` reads them."""
    truth, predicted = _sets(columns)
    hits = (truth & predicted).sum((-2, -1))
    return _ratio(2 * hits, truth.sum((-2, -1)) + predicted.sum((-2, -1)))


def label_macro_f1(*columns: np.ndarray) -> np.ndarray:
    """Multi-label macro-F1: the mean F1 over the labels that occur in the truth or the
    predictions, as the single-label `macro_f1` counts classes."""
    truth, predicted = _sets(columns)
    support = truth.sum(-1) + predicted.sum(-1)
    f1 = _ratio(2 * (truth & predicted).sum(-1), support)
    return _ratio((f1 * (support > 0)).sum(-1), (support > 0).sum(-1))


def samples_f1(*columns: np.ndarray) -> np.ndarray:
    """Multi-label samples-F1: each row's F1 of its label set, averaged; a row with no labels that
    is predicted none scores 1 (the answer is exactly right)."""
    truth, predicted = _sets(columns)
    return _ratio(2 * (truth & predicted).sum(-2), truth.sum(-2) + predicted.sum(-2), empty=1.0).mean(-1)


def subset_accuracy(*columns: np.ndarray) -> np.ndarray:
    """Multi-label subset accuracy: the share of rows whose predicted label set is exactly right."""
    truth, predicted = _sets(columns)
    return (truth == predicted).all(-2).mean(-1)


def hamming_loss(*columns: np.ndarray) -> np.ndarray:
    """Multi-label Hamming loss: the share of (row, label) decisions that are wrong."""
    truth, predicted = _sets(columns)
    return (truth != predicted).mean((-2, -1))


def pooled_f1(hits: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """F1 of counts pooled over the rows: each row's hits, predictions and true items (a
    sentence's entities) summed, then 2 hits / (predicted + true), as seqeval's entity-level
    micro F1 is computed."""
    return _ratio(2 * hits.sum(-1), predicted.sum(-1) + truth.sum(-1))


STATISTICS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "mean": mean,
    "token_mean": token_mean,
    "micro_f1": micro_f1,
    "label_macro_f1": label_macro_f1,
    "samples_f1": samples_f1,
    "subset_accuracy": subset_accuracy,
    "hamming_loss": hamming_loss,
    "pooled_f1": pooled_f1,
}


@dataclass
class Scored:
    """One model's per-row columns of a metric on the test rows (e.g. truth and predictions) and
    the statistic in STATISTICS that reduces them: all a paired comparison of two models on the
    same rows needs, the base model's or another run's."""

    statistic: str
    columns: tuple[np.ndarray, ...]
    mode: str = "max"


def compare_scored(name: str, tuned: Scored, base: Scored) -> dict:
    return compare(name, STATISTICS[tuned.statistic], tuned.columns, base.columns, mode=tuned.mode)


def save_scored(folder: Path, scored: dict[str, Scored], rows: str) -> None:
    """A test stage's per-row scores (`scored.npz` + `scored.json`), for comparing runs later;
    `rows` identifies the test rows they were scored on (two runs compare only on the same)."""
    if not scored:
        return
    arrays = {f"{name}.{i}": column for name, s in scored.items() for i, column in enumerate(s.columns)}
    np.savez_compressed(folder / "scored.npz", **arrays)
    spec = {name: {"statistic": s.statistic, "mode": s.mode, "columns": len(s.columns)} for name, s in scored.items()}
    (folder / "scored.json").write_text(json.dumps({"rows": rows, "metrics": spec}, indent=2) + "\n")


def scored_rows(folder: Path) -> str | None:
    """What identifies the test rows a saved test stage scored (see save_scored)."""
    path = folder / "scored.json"
    return json.loads(path.read_text())["rows"] if path.is_file() else None


def load_scored(folder: Path) -> dict[str, Scored]:
    if not (folder / "scored.json").is_file():
        return {}
    arrays = np.load(folder / "scored.npz")
    return {
        name: Scored(s["statistic"], tuple(arrays[f"{name}.{i}"] for i in range(s["columns"])), s["mode"])
        for name, s in json.loads((folder / "scored.json").read_text())["metrics"].items()
    }


def interval(statistic: str, columns: tuple[np.ndarray, ...], seed: int = 0) -> list[float]:
    """One model's 95% percentile bootstrap interval of `statistic` (a name in STATISTICS) over
    its rows, resampled with `columns` (e.g. truth and predictions) kept together."""
    from scipy.stats import bootstrap

    if len(columns[0]) < 2:
        value = float(STATISTICS[statistic](*columns))
        return [round(value, 6), round(value, 6)]
    result = bootstrap(
        columns,
        lambda *c, axis=-1: STATISTICS[statistic](*c),
        paired=True,
        vectorized=True,
        n_resamples=RESAMPLES,
        batch=max(1, 4_000_000 // (len(columns[0]) * len(columns))),
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(seed),
    )
    return [round(float(v), 6) for v in result.confidence_interval]


def compare(name: str, statistic, tuned: tuple, base: tuple, mode: str = "max", seed: int = 0) -> dict:
    """`statistic(*columns)` of the fine-tuned and the base model on the same rows (`tuned` and
    `base` are tuples of per-row columns, e.g. (truth, predictions)), their difference and its
    paired bootstrap 95% interval. `gain` is the difference signed so that positive is better."""
    from scipy.stats import bootstrap

    tuned_value, base_value = float(statistic(*tuned)), float(statistic(*base))
    width = len(tuned)

    def difference(*columns, axis=-1):
        return statistic(*columns[:width]) - statistic(*columns[width:])

    rows = len(tuned[0])
    if rows < 2:
        low = high = tuned_value - base_value
    else:
        result = bootstrap(
            (*tuned, *base),
            difference,
            paired=True,
            vectorized=True,
            n_resamples=RESAMPLES,
            batch=max(1, 4_000_000 // (rows * len(tuned))),
            method="percentile",
            confidence_level=0.95,
            rng=np.random.default_rng(seed),
        )  # batches of resamples: bounded memory for big test sets
        low, high = (float(v) for v in result.confidence_interval)
    sign = 1 if mode == "max" else -1
    gain_interval = sorted((sign * low, sign * high))
    return {
        "metric": name,
        "fine_tuned": round(tuned_value, 6),
        "base": round(base_value, 6),
        "difference": round(tuned_value - base_value, 6),
        "ci95": [round(low, 6), round(high, 6)],
        "gain": round(sign * (tuned_value - base_value), 6),
        "gain_ci95": [round(v, 6) for v in gain_interval],
        "mode": mode,
        "rows": rows,
    }


def _reading(result: dict, digits: int) -> tuple[str, str]:
    """Where a gain's interval lies (`better`: above zero, `worse`: below, `unclear`) and the
    interval in words."""
    low, high = result["gain_ci95"]
    interval = f"95% CI {low:.{digits}f} to {high:.{digits}f}, {result['rows']} test rows"
    return ("better" if low > 0 else "worse" if high < 0 else "unclear"), interval


def line(result: dict, base_is: str) -> str:
    """The verdict sentence. `base_is`: what the user keeps when fine-tuning did not pay off."""
    metric, gain = result["metric"], result["gain"]
    reading, interval = _reading(result, 2)
    if reading == "better":
        return f"fine-tuning improved {metric} by {gain:.2f} ({interval})"
    if reading == "worse":
        worse = f"fine-tuning made {metric} worse by {-gain:.2f} ({interval})"
        return f"the base model is better: {worse}; {base_is} is the better choice"
    return f"no significant difference in {metric} ({gain:+.2f}; {interval}): {base_is} is as good and cheaper"


def search_line(result: dict) -> str:
    """Did a sweep's search pay? Its best trial against the trial of the task's defaults, tested on
    the same rows (`result` from compare_scored, the best trial as the fine-tuned side)."""
    metric, gain = result["metric"], result["gain"]
    reading, interval = _reading(result, 3)
    if reading == "better":
        return f"the search improved {metric} by {gain:.3f} ({interval}) over the task's defaults"
    if reading == "worse":
        return f"the search did worse than the task's defaults: {metric} {gain:+.3f} ({interval}); keep the defaults"
    return f"the search was no better than the task's defaults: {metric} {gain:+.3f} ({interval})"


def update_line(result: dict, where: str) -> str:
    """Did an update (`init_from` on new data) pay on `where`? The updated model against the
    earlier one on the same rows (`result` from compare_scored, the updated model first)."""
    metric, gain = result["metric"], result["gain"]
    reading, interval = _reading(result, 3)
    if reading == "better":
        return f"the update improved {metric} by {gain:.3f} on {where} ({interval})"
    if reading == "worse":
        return f"the update made {metric} worse by {-gain:.3f} on {where} ({interval})"
    return f"no significant change in {metric} on {where} ({gain:+.3f}; {interval})"


def verdict(results: list[dict], base_kind: str, base_is: str) -> dict:
    """metrics.json's `verdict`: the first result (the optimized metric) decides the sentence."""
    return {
        "line": line(results[0], base_is),
        "base": base_kind,
        "method": METHOD,
        "test_rows": results[0]["rows"],
        "metrics": {r["metric"]: r for r in results},
    }
