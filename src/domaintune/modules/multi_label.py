"""Multi-label text classification: the sequence classifier with one sigmoid per label, trained
with binary cross-entropy, and decision thresholds chosen on validation (one for all labels, or
one per label where that helps on validation). Its base-model opponent is one-vs-rest logistic
regression on the frozen encoder's features, tuned the same way."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from domaintune import verdict
from domaintune.data.labels import labels_in, one_hot
from domaintune.data.splits import nested_rows
from domaintune.data.text_classification import TextClassificationDataModule
from domaintune.errors import UserError
from domaintune.kinds import Kind, register_kind
from domaintune.modules.probe import FRACTIONS, PROBE_C, PROBE_FEATURES, Probe, best_probes, probe_scaling
from domaintune.modules.sequence_classification import SequenceClassificationModule
from domaintune.modules.shared import gather_rows

log = logging.getLogger(__name__)
BASE_KIND = (
    "one-vs-rest logistic regression on the frozen base encoder (C, scaling and thresholds chosen on validation)"
)
BASE_IS = "the frozen encoder with one-vs-rest logistic regression"
CANDIDATES = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the decision thresholds tried on validation
THRESHOLDS = ("auto", "global", "per_label")
# What each metric is computed with (domaintune.verdict, one definition for logs, probe and verdict).
STATISTIC = {
    "micro_f1": "micro_f1",
    "macro_f1": "label_macro_f1",
    "samples_f1": "samples_f1",
    "subset_acc": "subset_accuracy",
    "hamming": "hamming_loss",
}
DIRECTIONS = {
    "loss": "min",
    "micro_f1": "max",
    "macro_f1": "max",
    "samples_f1": "max",
    "subset_acc": "max",
    "hamming": "min",
}


def columns(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-label columns the verdict's multi-label statistics read: truth's, then the predictions'."""
    return (*truth.T.astype(np.uint8), *predicted.T.astype(np.uint8))


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Every thresholded metric of 0/1 arrays (rows, labels)."""
    both = columns(truth, predicted)
    return {name: round(float(verdict.STATISTICS[statistic](*both)), 6) for name, statistic in STATISTIC.items()}


def _score(probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, metric: str) -> float:
    value = scores(truth, probabilities >= thresholds)[metric]
    return -value if DIRECTIONS[metric] == "min" else value


def _per_label(probabilities: np.ndarray, truth: np.ndarray, start: float) -> np.ndarray:
    """Each label's threshold that maximizes its own F1 (ties: the one nearest `start`)."""
    truth = truth.astype(bool)
    chosen = np.full(truth.shape[1], start)
    for j in range(truth.shape[1]):
        predicted = probabilities[:, j, None] >= CANDIDATES  # (rows, candidates)
        hits, support = (predicted & truth[:, j, None]).sum(0), predicted.sum(0) + truth[:, j].sum()
        f1 = np.divide(2 * hits, support, out=np.zeros(len(CANDIDATES)), where=support > 0)
        best = np.flatnonzero(f1 == f1.max())
        chosen[j] = CANDIDATES[best[np.abs(CANDIDATES[best] - start).argmin()]] if f1.max() > 0 else start
    return chosen


def _global(probabilities: np.ndarray, truth: np.ndarray, metric: str) -> float:
    values = [_score(probabilities, truth, np.full(truth.shape[1], t), metric) for t in CANDIDATES]
    return float(CANDIDATES[int(np.argmax(values))])


def choose_thresholds(probabilities: np.ndarray, truth: np.ndarray, how: str, metric: str) -> tuple[np.ndarray, str]:
    """Decision thresholds chosen on validation rows, and which way (`global` or `per_label`).
    `auto` asks validation itself whether per-label thresholds help: both ways are chosen on
    one half of the rows and scored on the other, both halves in turn; per-label thresholds are
    kept only when they score better there (they overfit rare labels otherwise)."""
    metric = metric if metric in STATISTIC else "micro_f1"  # the loss does not depend on thresholds
    labels = truth.shape[1]
    if how == "auto" and len(truth) >= 4:
        halves = (np.arange(len(truth)) % 2 == 0, np.arange(len(truth)) % 2 == 1)
        totals = {"global": 0.0, "per_label": 0.0}
        for fit, held in (halves, halves[::-1]):
            start = _global(probabilities[fit], truth[fit], metric)
            candidates = {
                "global": np.full(labels, start),
                "per_label": _per_label(probabilities[fit], truth[fit], start),
            }
            for way, thresholds in candidates.items():
                totals[way] += _score(probabilities[held], truth[held], thresholds, metric)
        how = "per_label" if totals["per_label"] > totals["global"] else "global"
    how = "global" if how == "auto" else how
    start = _global(probabilities, truth, metric)
    return (_per_label(probabilities, truth, start) if how == "per_label" else np.full(labels, start)), how


def _sigmoid(logits: torch.Tensor) -> np.ndarray:
    return logits.float().sigmoid().numpy()


def fit_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    names: list[str],
    metric: str,
    how: str,
) -> tuple[Probe, Probe]:
    """One-vs-rest logistic regression for every (features, C) of the grid, fitted on train, its
    thresholds chosen on validation and scored there by `metric`: the best probe, and the best
    standardized one (the one that can start a head)."""
    from sklearn.linear_model import LogisticRegression

    key = metric.removeprefix("val/")
    key = key if key in DIRECTIONS else "micro_f1"
    sign = -1 if DIRECTIONS[key] == "min" else 1
    targets, labels = y_train.numpy().astype(int), y_train.shape[1]
    candidates, grid = [], []
    for features in PROBE_FEATURES:
        center, scale, scaled = probe_scaling(x_train, features)
        scaled = scaled.numpy()
        fitted = [LogisticRegression(max_iter=1000, warm_start=True) for _ in range(labels)]
        for C in PROBE_C:  # ascending: each label's fit starts from the previous C's solution
            weight, bias = one_vs_rest(scaled, targets, C, fitted)
            probe = Probe(features, center, scale, weight, bias, C, {}, grid, BASE_KIND)
            logits = probe.logits(x_val)
            chosen, way = choose_thresholds(_sigmoid(logits), y_val.numpy(), how, key)
            probe.cut, probe.thresholds = chosen, {"way": way, **dict(zip(names, chosen.round(4).tolist()))}
            probe.scores = {
                **scores(y_val.numpy(), _sigmoid(logits) >= chosen),
                "loss": round(float(nn.functional.binary_cross_entropy_with_logits(logits, y_val.float())), 6),
            }
            grid.append({"features": features, "C": C, f"val/{key}": probe.scores[key], "thresholds": way})
            candidates.append(probe)
    best, start = best_probes(candidates, key, sign)
    best.curve = data_curve(best, x_train, targets, x_val, y_val.numpy())
    return best, start


def one_vs_rest(scaled: np.ndarray, targets: np.ndarray, C: float, models: list) -> tuple[torch.Tensor, torch.Tensor]:
    """One logistic regression per label (`models`, one per label, refitted at `C`) as a weight and
    bias; a label every train row has, or none has, is a constant."""
    from threadpoolctl import threadpool_limits

    weight, bias = torch.zeros(targets.shape[1], scaled.shape[1]), torch.zeros(targets.shape[1])
    for j, model in enumerate(models):
        if targets[:, j].min() == targets[:, j].max():
            bias[j] = 10.0 if targets[0, j] else -10.0
            continue
        with threadpool_limits(1):
            model.set_params(C=C).fit(scaled, targets[:, j])
        weight[j], bias[j] = torch.as_tensor(model.coef_[0], dtype=torch.float), float(model.intercept_[0])
    return weight, bias


def data_curve(probe: Probe, x_train, targets: np.ndarray, x_val, truth: np.ndarray) -> list[dict]:
    """The chosen probe (scaling, C, thresholds) fitted again on nested quarters and halves of the
    train rows, stratified by each row's rarest label, scored on validation with 95% intervals
    on micro- and macro-F1."""
    from sklearn.linear_model import LogisticRegression

    counts = targets.sum(0)
    rarest = [int(min(np.flatnonzero(row), key=counts.__getitem__)) if row.any() else -1 for row in targets]
    curve = []
    for fraction, rows in zip(FRACTIONS, nested_rows(rarest, FRACTIONS)):
        fitted = probe
        if fraction < 1:
            center, scale, scaled = probe_scaling(x_train[rows], probe.features)
            models = [LogisticRegression(max_iter=1000) for _ in range(targets.shape[1])]
            weight, bias = one_vs_rest(scaled.numpy(), targets[rows], probe.C, models)
            fitted = Probe(probe.features, center, scale, weight, bias, probe.C, {}, [], probe.kind)
        both = columns(truth, _sigmoid(fitted.logits(x_val)) >= probe.cut)
        point = {"fraction": fraction, "train_rows": len(rows)}
        for name in ("micro_f1", "macro_f1"):
            point[f"val/{name}"] = round(float(verdict.STATISTICS[STATISTIC[name]](*both)), 6)
            point[f"val/{name}_ci95"] = verdict.interval(STATISTIC[name], both)
        curve.append(point)
    return curve


class MultiLabelClassificationModule(SequenceClassificationModule):
    """Fine-tunes `encoder` with one sigmoid output per label. Everything but the outputs, the
    loss, the metrics and the opponent is the sequence classifier's: pooling, adapters, the probe
    that starts the head, export. `thresholds` (auto, global, per_label) are re-chosen on each
    validation pass, so the best checkpoint carries the ones chosen with its weights."""

    activation = "sigmoid"
    PROBE_SETTINGS = (*SequenceClassificationModule.PROBE_SETTINGS, "thresholds")

    def __init__(self, backbone, num_labels: int, labels: list[str] | None = None, peft_config=None, **settings):
        how = settings.pop("thresholds")
        if how not in THRESHOLDS:
            raise UserError(f"module.thresholds={how!r}: use one of {', '.join(THRESHOLDS)}")
        super().__init__(backbone, num_labels, labels, peft_config, **settings)
        self.hparams["thresholds"] = how
        self.register_buffer("thresholds", torch.full((num_labels,), 0.5))  # saved in every checkpoint
        self.threshold_way = "global"
        self.val_rows: dict[str, list[torch.Tensor]] = {}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Binary cross-entropy, averaged over the labels (per row with `reduction="none"`)."""
        per_row = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), reduction="none"
        ).mean(-1)
        return per_row if reduction == "none" else per_row.mean()

    def objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What training minimizes: binary cross-entropy on targets smoothed toward 1/2 by
        `label_smoothing`; with `class_weights=balanced` each label's positives weigh (mean
        positives per label) / (its positives), so rare labels are not learned as "never"."""
        smoothing = self.hparams.label_smoothing
        targets = labels.float() * (1 - smoothing) + smoothing / 2
        weighted = self.hparams.class_weights is not None
        return nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets, pos_weight=self.class_weight if weighted else None
        )

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    # -- validation: thresholds chosen on each pass -------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_rows = {"truth": [], "probabilities": []}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        labels = batch["labels"]
        self.log(
            "val/loss", self.loss(logits, labels), on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True
        )
        self.val_rows["truth"].append(labels.detach().cpu())
        self.val_rows["probabilities"].append(self.probabilities(logits).detach().cpu())

    def on_validation_epoch_end(self) -> None:
        truth = gather_rows(self, self.val_rows["truth"])
        probabilities = gather_rows(self, self.val_rows["probabilities"])
        metric = self.hparams.probe_metric.removeprefix("val/")
        thresholds, self.threshold_way = choose_thresholds(probabilities, truth, self.hparams.thresholds, metric)
        self.thresholds.copy_(torch.as_tensor(thresholds, dtype=self.thresholds.dtype))
        for name, value in scores(truth, probabilities >= thresholds).items():
            self.log(f"val/{name}", value, prog_bar=name == "micro_f1")

    # -- test: the verdict against the one-vs-rest probe -------------------------------------------
    def update_test_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Nothing per batch: the test metrics need every row's probabilities and the thresholds."""

    def decided(self, logits: torch.Tensor) -> torch.Tensor:
        """A test row keeps every label's probability; the thresholds decide at the end."""
        return self.probabilities(logits)

    def on_test_epoch_end(self) -> None:
        rows = {key: gather_rows(self, parts) for key, parts in self.test_rows.items()}
        truth = rows["truth"].astype(bool)
        tuned = rows["tuned"] >= self.thresholds.cpu().numpy()
        base = rows["base"] >= self.probe.cut
        for name, value in scores(truth, tuned).items():
            self.log(f"test/{name}", value)

        def scored(predicted: np.ndarray, losses: np.ndarray) -> dict[str, verdict.Scored]:
            both = columns(truth, predicted)
            found = {name: verdict.Scored(STATISTIC[name], both, DIRECTIONS[name]) for name in STATISTIC}
            return {**found, "loss": verdict.Scored("mean", (losses,), mode="min")}

        self.scored, self.base_scored = scored(tuned, rows["tuned_loss"]), scored(base, rows["base_loss"])
        first = self.hparams.probe_metric.removeprefix("val/")
        order = list(
            dict.fromkeys([first, "micro_f1", "macro_f1"] if first in self.scored else ["micro_f1", "macro_f1"])
        )
        compared = [verdict.compare_scored(name, self.scored[name], self.base_scored[name]) for name in order]
        per_label = scores_per_label(truth, tuned)
        self.test_report = {
            "verdict": verdict.verdict(compared, BASE_KIND, BASE_IS),
            "thresholds": {"way": self.threshold_way, **self._by_label()},
            "per_label": {
                label: {**per_label[i], "threshold": round(float(self.thresholds[i]), 4)}
                for i, label in enumerate(self.labels)
            },
        }

    def fit_probe(self, datamodule) -> tuple[Probe, Probe]:
        x_train, y_train = self.features(datamodule.train_dataloader(), base=True)
        x_val, y_val = self.features(datamodule.val_dataloader(), base=True)
        return fit_probe(
            x_train, y_train, x_val, y_val, self.labels, self.hparams.probe_metric, self.hparams.thresholds
        )

    # -- a finished run: weights with their thresholds, predict, export ---------------------------
    def save_artifacts(self, folder) -> None:
        import json

        super().save_artifacts(folder)
        (folder / "thresholds.json").write_text(
            json.dumps({"way": self.threshold_way, "thresholds": self._by_label()}, indent=2)
        )

    def load_weights(self, folder) -> None:
        import json

        super().load_weights(folder)
        saved = json.loads((folder / "thresholds.json").read_text())
        self.threshold_way = saved["way"]
        self.thresholds.copy_(torch.as_tensor([saved["thresholds"][label] for label in self.labels]))

    def _by_label(self) -> dict[str, float]:
        return {label: round(float(t), 4) for label, t in zip(self.labels, self.thresholds.tolist())}

    def adopt_probe(self, probe) -> None:
        self.thresholds.copy_(torch.as_tensor(probe.cut, dtype=self.thresholds.dtype))
        self.threshold_way = probe.thresholds["way"]

    def answer(self, probabilities: torch.Tensor) -> dict:
        """One row's answer: the labels at or above their thresholds, and every label's probability."""
        above = (probabilities >= self.thresholds.cpu()).tolist()
        return {
            "predicted": [label for label, on in zip(self.labels, above) if on],
            "probabilities": {label: round(float(p), 6) for label, p in zip(self.labels, probabilities.tolist())},
        }

    def score_predictions(self, truth: list, predicted: list) -> dict:
        """The multi-label metrics over the labelled rows; a label the run never saw counts as missed."""
        unknown = sorted(labels_in(truth) - set(self.labels))
        names = self.labels + unknown
        return {
            "labelled_rows": len(truth),
            "unknown_labels": len(unknown),
            **scores(one_hot(truth, names), one_hot(predicted, names)),
        }

    def head_settings(self) -> dict:
        return {
            "multi_label": True,
            "thresholds": [round(float(t), 4) for t in self.thresholds],
            "threshold_way": self.threshold_way,
        }

    def save_test_outputs(self, folder) -> None:
        """Multi-label runs have no confusion matrix; the per-label report is in metrics.json."""


def scores_per_label(truth: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """Precision, recall, F1 and support of each label (column)."""
    hits, guessed, support = (truth & predicted).sum(0), predicted.sum(0), truth.sum(0)
    precision = np.divide(hits, guessed, out=np.zeros(len(hits)), where=guessed > 0)
    recall = np.divide(hits, support, out=np.zeros(len(hits)), where=support > 0)
    f1 = np.divide(2 * hits, guessed + support, out=np.zeros(len(hits)), where=(guessed + support) > 0)
    return [
        {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4), "support": int(n)}
        for p, r, f, n in zip(precision, recall, f1, support)
    ]


register_kind(
    Kind(
        name="multi_label_classification",
        module=MultiLabelClassificationModule,
        datamodule=TextClassificationDataModule,
        metrics=DIRECTIONS,
        opponent=BASE_KIND,
        serves=frozenset({"predict"}),
        base=True,
        export="text-classification",
    )
)
