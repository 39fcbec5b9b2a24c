"""Did fine-tuning pay? The fine-tuned and the base model scored on the same test rows, a paired
bootstrap 95% interval on each difference, and one plain sentence that comes from nothing else.

The interval is scipy's percentile bootstrap (`scipy.stats.bootstrap`, `paired=True`): BCa's
jackknife costs one statistic per test row, too slow for large test sets, and it breaks down when
both models agree on every row."""

from __future__ import annotations

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
            batch=max(1, 4_000_000 // rows),
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


def line(result: dict, base_is: str) -> str:
    """The verdict sentence. `base_is`: what the user keeps when fine-tuning did not pay off."""
    metric, gain = result["metric"], result["gain"]
    low, high = result["gain_ci95"]
    interval = f"95% CI {low:.2f} to {high:.2f}, {result['rows']} test rows"
    if low > 0:
        return f"fine-tuning improved {metric} by {gain:.2f} ({interval})"
    if high < 0:
        worse = f"fine-tuning made {metric} worse by {-gain:.2f} ({interval})"
        return f"the base model is better: {worse}; {base_is} is the better choice"
    return f"no significant difference in {metric} ({gain:+.2f}; {interval}): {base_is} is as good and cheaper"


def verdict(results: list[dict], base_kind: str, base_is: str) -> dict:
    """metrics.json's `verdict`: the first result (the optimized metric) decides the sentence."""
    return {
        "line": line(results[0], base_is),
        "base": base_kind,
        "method": METHOD,
        "test_rows": results[0]["rows"],
        "metrics": {r["metric"]: r for r in results},
    }
