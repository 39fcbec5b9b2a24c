"""Encoder + pooling + linear head for text classification, trained fully or through a peft adapter."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from domaintune import precision, verdict
from domaintune.api import TaskModule
from domaintune.data.splits import nested_rows
from domaintune.data.text_classification import TextClassificationDataModule
from domaintune.kinds import Kind, register_kind
from domaintune.models import Backbone
from domaintune.modules.probe import (
    FRACTIONS,
    PROBE_C,
    PROBE_FEATURES,
    L2Normalize,
    Probe,
    best_probes,
    probe_scaling,
    softmax_regression,
)
from domaintune.modules.shared import EncoderWithHead, gather_rows

log = logging.getLogger(__name__)
BASE_KIND = "linear probe on the frozen base encoder (logistic regression, C and scaling chosen on validation)"
BASE_IS = "the frozen encoder with a linear head"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pooler_output=None) -> torch.Tensor:
    """Sentence vector the way the encoder was pre-trained: mean of real tokens, [CLS], or BERT's pooler."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, 0]
    return pooler_output


def _class_weights(kind: str | None, counts: list[int] | None, num_labels: int) -> torch.Tensor | None:
    """`balanced`: each class weighs rows / (classes x its rows), as scikit-learn's, so a rare class
    counts as much as the majority in the loss (the imbalance remedy `prepare` suggests)."""
    if kind is None:
        return None
    if kind != "balanced":
        from domaintune.errors import UserError

        raise UserError(f"module.class_weights '{kind}' is unknown; use balanced or null")
    counts_t = torch.as_tensor(counts or [1] * num_labels, dtype=torch.float).clamp(min=1)
    return counts_t.sum() / (num_labels * counts_t)


def fit_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    num_labels: int,
    metric: str,
) -> tuple[Probe, Probe]:
    """Every (features, C) of the grid fitted on train and scored on validation by `metric`
    (val/acc, val/macro_f1 or val/loss): the best probe, and the best standardized one (the one
    that can start a head)."""
    key = metric.removeprefix("val/")
    key = key if key in ("acc", "macro_f1", "loss") else "acc"
    sign = -1 if key == "loss" else 1
    candidates, grid = [], []
    for features in PROBE_FEATURES:
        center, scale, scaled = probe_scaling(x_train, features)
        for C in PROBE_C:
            weight, bias = softmax_regression(scaled, y_train, num_labels, C)
            probe = Probe(features, center, scale, weight, bias, C, {}, grid, BASE_KIND)
            probe.scores = classification_scores(probe.logits(x_val), y_val)
            grid.append({"features": features, "C": C, f"val/{key}": probe.scores[key]})
            candidates.append(probe)
    best, start = best_probes(candidates, key, sign)
    best.curve = data_curve(best, x_train, y_train, x_val, y_val, num_labels)
    return best, start


def data_curve(probe: Probe, x_train, y_train, x_val, y_val, num_labels: int) -> list[dict]:
    """Is the base model already good, and does more data still help it? The chosen probe (its
    scaling and C) fitted again on nested, stratified quarters and halves of the train rows,
    each scored on validation with 95% intervals on accuracy and macro-F1."""
    curve = []
    for fraction, rows in zip(FRACTIONS, map(torch.as_tensor, nested_rows(y_train.tolist(), FRACTIONS))):
        if fraction == 1.0:
            fitted = probe
        else:
            center, scale, scaled = probe_scaling(x_train[rows], probe.features)
            weight, bias = softmax_regression(scaled, y_train[rows], num_labels, probe.C)
            fitted = Probe(probe.features, center, scale, weight, bias, probe.C, {}, [], probe.kind)
        truth, predicted = y_val.numpy(), fitted.logits(x_val).argmax(-1).numpy()
        point = {"fraction": fraction, "train_rows": len(rows)}
        for name, statistic in (("acc", "accuracy"), ("macro_f1", "macro_f1")):
            point[f"val/{name}"] = round(float(verdict.STATISTICS[statistic](truth, predicted)), 6)
            point[f"val/{name}_ci95"] = verdict.interval(statistic, (truth, predicted))
        curve.append(point)
    return curve


def classification_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy, macro-F1 (verdict.macro_f1: over the classes in the truth or the predictions) and
    plain cross-entropy of `logits`."""
    truth, predicted = labels.numpy(), logits.argmax(-1).numpy()
    return {
        "acc": round(float(verdict.accuracy(truth, predicted)), 6),
        "macro_f1": round(float(verdict.macro_f1(truth, predicted)), 6),
        "loss": round(float(nn.functional.cross_entropy(logits, labels)), 6),
    }


class SequenceClassificationModule(EncoderWithHead, TaskModule):
    """Fine-tunes `encoder` with a fresh head. With `peft_config` only the adapter and head train.

    `head_init="probe"` fits the head as a logistic regression on frozen features before
    fine-tuning (linear-probe-then-fine-tune); its validation scores are the base model's,
    reported as the run's baseline so every run says whether fine-tuning paid off.
    """

    activation = "softmax"  # what turns the head's logits into the probabilities predict and model.onnx give
    PROBE_SETTINGS: ClassVar[tuple[str, ...]] = ("pooling", "num_labels", "probe_metric")  # what the probe depends on

    def __init__(
        self,
        backbone: Backbone,
        num_labels: int,
        labels: list[str] | None = None,
        peft_config=None,
        *,  # the rest from conf/module/sequence_classification.yaml, where their defaults are
        pooling: str,
        dropout: float,
        lr: float,
        head_lr: float,
        weight_decay: float,
        warmup_ratio: float,
        schedule: str,
        label_smoothing: float,
        head_init: str,
        class_weights: str | None,
        class_counts: list[int] | None = None,
        probe_metric: str,
    ):
        super().__init__(backbone, peft_config)
        self.save_hyperparameters(ignore=["backbone", "peft_config", "class_counts"], logger=False)
        self.encoder = encoder = self.adapt(self.base_encoder(), peft_config)
        self.labels = labels or [str(i) for i in range(num_labels)]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, num_labels))
        weights = _class_weights(class_weights, class_counts, num_labels)
        self.register_buffer(
            "class_weight", weights if weights is not None else torch.ones(num_labels), persistent=False
        )
        summary = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_labels, average="micro"),
                "macro_f1": MulticlassF1Score(num_labels, average="macro"),
            }
        )
        self.val_metrics, self.test_metrics = summary.clone(prefix="val/"), summary.clone(prefix="test/")
        self.per_class = MetricCollection(
            {
                "precision": MulticlassPrecision(num_labels, average=None),
                "recall": MulticlassRecall(num_labels, average=None),
                "f1": MulticlassF1Score(num_labels, average=None),
                "confusion": MulticlassConfusionMatrix(num_labels),
            }
        )
        self.test_report: dict = {}
        self.test_rows: dict[str, list[torch.Tensor]] = {}

    def base_encoder(self):
        """A fresh copy of the base encoder, its pooler dropped unless `pooling=pooler` reads it (it
        would waste compute and leave DDP with gradient-less weights)."""
        encoder = self.backbone.load_model()
        if self.hparams.pooling != "pooler" and getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        return encoder

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, encoder=None) -> torch.Tensor:
        """Sentence vectors in float32, whatever `model.dtype` is: the head and the probe are float32."""
        out = (encoder or self.encoder)(input_ids=input_ids, attention_mask=attention_mask)
        return pool(
            out.last_hidden_state, attention_mask, self.hparams.pooling, getattr(out, "pooler_output", None)
        ).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The plain loss every */loss logs (and the probe's, the base model's, is scored by)."""
        return nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)

    def objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What training minimizes: cross-entropy with label smoothing, each row weighted by its
        true class's weight. Not CrossEntropyLoss(weight=...): with label smoothing it also weighs
        the smoothed targets, so every row is pulled toward the rarest classes and training
        collapses onto them. Logged as train/objective; every */loss is plain cross-entropy."""
        per_row = nn.functional.cross_entropy(
            logits, labels, label_smoothing=self.hparams.label_smoothing, reduction="none"
        )
        weight = self.class_weight[labels]
        return (per_row * weight).sum() / weight.sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        objective, rows = self.objective(logits, batch["labels"]), len(batch["labels"])
        self.log("train/objective", objective, on_step=True, on_epoch=True, prog_bar=True, batch_size=rows)
        self.log("train/loss", self.loss(logits.detach(), batch["labels"]), on_epoch=True, batch_size=rows)
        return objective

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        self.val_metrics.update(logits, batch["labels"])
        self.log(
            "val/loss",
            self.loss(logits, batch["labels"]),
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["labels"]),
            sync_dist=True,
        )
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def on_test_start(self) -> None:
        if self.probe is None:  # head_init=random: the base model's opponent is fitted now, on the base encoder
            self._fit_probe()
        self.test_rows = {key: [] for key in ("truth", "tuned", "base", "tuned_loss", "base_loss")}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        labels = batch["labels"]
        logits = self(batch["input_ids"], batch["attention_mask"])
        with self._base_encoder() as base:
            base_logits = self.probe.logits(self.embed(batch["input_ids"], batch["attention_mask"], base))
        self.update_test_metrics(logits, labels)
        self.log("test/loss", self.loss(logits, labels), on_epoch=True, batch_size=len(labels), sync_dist=True)
        rows = {
            "truth": labels,
            "tuned": self.decided(logits),
            "base": self.decided(base_logits),
            "tuned_loss": self.loss(logits, labels, reduction="none"),
            "base_loss": self.loss(base_logits, labels.cpu(), reduction="none"),
        }
        for key, values in rows.items():
            self.test_rows[key].append(values.detach().cpu())

    def update_test_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """A test batch's share of the test metrics and the per-class report."""
        self.test_metrics.update(logits, labels)
        self.per_class.update(logits, labels)
        self.log_dict(self.test_metrics, on_epoch=True)

    def decided(self, logits: torch.Tensor) -> torch.Tensor:
        """What a test row keeps of a model's logits for the verdict: its predicted class."""
        return logits.argmax(-1)

    def on_test_epoch_end(self) -> None:
        values = self.per_class.compute()
        support = values["confusion"].sum(1)
        rows = {key: gather_rows(self, parts) for key, parts in self.test_rows.items()}
        truth = rows["truth"].astype(int)
        tuned, base = rows["tuned"].astype(int), rows["base"].astype(int)

        def scored(predicted: np.ndarray, losses: np.ndarray) -> dict[str, verdict.Scored]:
            return {
                "acc": verdict.Scored("accuracy", (truth, predicted)),
                "macro_f1": verdict.Scored("macro_f1", (truth, predicted)),
                "loss": verdict.Scored("mean", (losses,), mode="min"),
            }

        self.scored, self.base_scored = scored(tuned, rows["tuned_loss"]), scored(base, rows["base_loss"])
        compared = {
            name: verdict.compare_scored(name, self.scored[name], self.base_scored[name]) for name in self.scored
        }
        first = self.hparams.probe_metric.removeprefix("val/")
        order = [first] + [k for k in compared if k != first] if first in compared else list(compared)
        self.test_report = {
            "verdict": verdict.verdict([compared[k] for k in order], BASE_KIND, BASE_IS),
            "per_class": {
                label: {
                    "precision": round(values["precision"][i].item(), 4),
                    "recall": round(values["recall"][i].item(), 4),
                    "f1": round(values["f1"][i].item(), 4),
                    "support": int(support[i].item()),
                }
                for i, label in enumerate(self.labels)
            },
            "confusion_matrix": values["confusion"].tolist(),
        }
        self.per_class.reset()

    def on_test_end(self) -> None:
        self._base_copy = None

    def on_fit_start(self) -> None:
        if self.hparams.head_init == "probe":  # with loaded weights only its scores are kept, as the baseline
            self._fit_probe()

    @torch.no_grad()
    def features(self, loader, base: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence vectors and labels of every row of `loader`: this model's, or (`base`) the base encoder's."""
        was_training = self.training
        self.eval()
        feats, labels = [], []
        with (
            self._base_encoder() if base else nullcontext(self.encoder) as encoder,
            precision.autocast(self.compute_precision, self.device),
        ):
            for batch in loader:
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                feats.append(self.embed(batch["input_ids"], batch["attention_mask"], encoder).cpu())
                labels.append(batch["labels"].cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(labels)

    def probe_settings(self, datamodule) -> tuple:
        """What the probe depends on besides the base model and the rows (for its cache)."""
        return getattr(datamodule, "max_length", None), *(self.hparams.get(name) for name in self.PROBE_SETTINGS)

    def fit_probe(self, datamodule) -> tuple[Probe, Probe]:
        """The tuned probe on `datamodule`'s train and validation rows, and the one that can start a head."""
        x_train, y_train = self.features(datamodule.train_dataloader(), base=True)
        x_val, y_val = self.features(datamodule.val_dataloader(), base=True)
        return fit_probe(x_train, y_train, x_val, y_val, self.hparams.num_labels, self.hparams.probe_metric)

    def report(self) -> dict:
        """What this module adds to metrics.json: the test verdict and per-class report, and the
        probe (how it was chosen, its validation scores)."""
        return {**self.test_report, **self.baseline_report()}

    def head_settings(self) -> dict:
        """What classifier.json holds besides the labels, pooling and max_length."""
        return {}

    @torch.no_grad()
    def export(self, folder: Path, datamodule, onnx: bool = True) -> dict:
        """In float32: the merged encoder and tokenizer as a Hugging Face folder that is also a
        sentence-transformers model (with our pooling and max_length), the head and label map
        (`classifier.safetensors`, `classifier.json`), and `model.onnx` (ids in, probabilities out)."""
        from domaintune.modules import export

        self.merge()
        self.encoder.float()
        self.head.float()
        self.eval()
        if getattr(self.encoder, "pooler", 0) is None:
            # training dropped the unused pooler; the base model's goes back, so loaders find every weight
            self.encoder.pooler = self.backbone.load_model().pooler
        self.encoder.save_pretrained(folder)
        self.backbone.load_tokenizer().save_pretrained(folder)
        pooling, max_length = self.hparams.pooling, datamodule.max_length
        normalize = isinstance(self.head[0], L2Normalize)  # use=base with a probe on L2-normalized vectors
        sentence = export.write_sentence_transformers(
            folder, self.encoder.config.hidden_size, pooling, max_length, normalize
        )
        export.write_head(folder, self.head[-1], self.labels, pooling, max_length, **self.head_settings())
        if onnx:
            export.write_onnx(folder / "model.onnx", self, self.encoder.config.vocab_size, self.activation)
        usage = export.USAGE[self.activation].format(max_length=max_length)
        if not sentence:
            usage = f"pooling={pooling} has no sentence-transformers equivalent: use `model.onnx`.\n\n" + usage
        return {"library_name": "sentence-transformers" if sentence else "transformers", "usage": usage}

    @torch.no_grad()
    def predict(self, texts: list[str], datamodule) -> list[dict]:
        """Per text, in input order, its answer as the columns of predictions.csv."""
        from tqdm.auto import tqdm

        self.merge()
        self.eval()
        found: list[dict | None] = [None] * len(texts)
        batches = tqdm(
            datamodule.predict_batches(texts),
            total=-(-len(texts) // datamodule.eval_batch_size),
            desc="predict",
            unit="batch",
            disable=len(texts) <= datamodule.eval_batch_size,
        )
        for rows, batch in batches:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            with precision.autocast(self.compute_precision, self.device):
                logits = self(batch["input_ids"], batch["attention_mask"])
            probabilities = self.probabilities(logits).cpu()
            for r, row in enumerate(rows):
                found[row] = self.answer(probabilities[r])
        return found

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def answer(self, probabilities: torch.Tensor, top: int = 3) -> dict:
        """One row's answer: the predicted label, its probability and the `top` labels."""
        values, indices = probabilities.topk(min(top, len(self.labels)))
        ranked = [(self.labels[j], round(float(p), 6)) for j, p in zip(indices.tolist(), values.tolist())]
        return {"predicted": ranked[0][0], "probability": ranked[0][1], "top3": ranked}

    def score_predictions(self, truth: list[str], predicted: list[str]) -> dict:
        """Accuracy and macro-F1 over the labelled rows; a label the run never saw counts as wrong."""
        index = {label: i for i, label in enumerate(self.labels)}
        truth_ids = np.array([index.get(label, len(self.labels)) for label in truth], dtype=np.int32)
        predicted_ids = np.array([index[label] for label in predicted], dtype=np.int32)
        return {
            "labelled_rows": len(truth_ids),
            "unknown_labels": int((truth_ids == len(self.labels)).sum()),
            "acc": round(float(verdict.accuracy(truth_ids, predicted_ids)), 6),
            "macro_f1": round(float(verdict.macro_f1(truth_ids, predicted_ids)), 6),
        }

    def save_test_outputs(self, folder: Path) -> None:
        """The confusion matrix of the last test stage, as a PNG."""
        if "confusion_matrix" in self.test_report:
            plot_confusion(
                np.array(self.test_report["confusion_matrix"]), self.labels, folder / "confusion_matrix.png"
            )


register_kind(
    Kind(
        name="classification",
        module=SequenceClassificationModule,
        datamodule=TextClassificationDataModule,
        metrics={"loss": "min", "acc": "max", "macro_f1": "max"},
        opponent=BASE_KIND,
        serves=frozenset({"predict"}),
        base=True,
        export="text-classification",
    )
)


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.3 * len(labels))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix (test)",
    )
    axis.set_xticklabels(labels, rotation=90, fontsize=7)
    axis.set_yticklabels(labels, fontsize=7)
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
