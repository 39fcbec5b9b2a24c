"""Encoder + pooling + linear head for text classification, trained fully or through a peft adapter."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
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

from domaintune.models import Backbone

log = logging.getLogger(__name__)
_PROBES: dict[tuple, tuple] = {}  # (backbone, data fingerprint, pooling, labels) -> fitted probe head


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


class SequenceClassificationModule(pl.LightningModule):
    """Fine-tunes `encoder` with a fresh head. With `peft_config` only the adapter and head train.

    `head_init="probe"` fits the head as a logistic regression on frozen features before
    fine-tuning (linear-probe-then-fine-tune); its validation scores are the base model's,
    reported as the run's baseline so every run says whether fine-tuning paid off.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_labels: int,
        labels: list[str] | None = None,
        peft_config=None,
        pooling: str = "mean",
        dropout: float = 0.1,
        lr: float = 1e-4,
        head_lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        schedule: str = "linear",
        label_smoothing: float = 0.0,
        head_init: str = "random",
        class_weights: str | None = None,
        class_counts: list[int] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "peft_config", "class_counts"], logger=False)
        self.backbone = backbone
        encoder = backbone.load_model()
        if pooling != "pooler" and getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: would waste compute and leave DDP with gradient-less weights
        if peft_config is not None:
            from peft import get_peft_model

            encoder = get_peft_model(encoder, peft_config)
        self.encoder = encoder
        self.labels = labels or [str(i) for i in range(num_labels)]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, num_labels))
        weights = _class_weights(class_weights, class_counts, num_labels)
        self.register_buffer("class_weight", weights if weights is not None else torch.ones(num_labels), persistent=False)
        summary = MetricCollection({
            "acc": MulticlassAccuracy(num_labels, average="micro"),
            "macro_f1": MulticlassF1Score(num_labels, average="macro"),
        })
        self.val_metrics, self.test_metrics = summary.clone(prefix="val/"), summary.clone(prefix="test/")
        self.per_class = MetricCollection({
            "precision": MulticlassPrecision(num_labels, average=None),
            "recall": MulticlassRecall(num_labels, average=None),
            "f1": MulticlassF1Score(num_labels, average=None),
            "confusion": MulticlassConfusionMatrix(num_labels),
        })
        self.test_report: dict = {}
        self.probe_scores: dict[str, float] = {}
        self.loaded_from: Path | None = None
        # Checkpoints keep only what trains (adapter/head or the whole encoder): frozen base weights
        # are loaded from the model anyway, so leave them out and load the rest non-strictly.
        self.strict_loading = peft_config is None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence vectors in float32, whatever `model.dtype` is: the head and the probe are float32."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return pool(out.last_hidden_state, attention_mask, self.hparams.pooling, getattr(out, "pooler_output", None)).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))

    def _step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"])
        return self.loss(logits, batch["labels"]), logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (with label smoothing), each row weighted by its true class's weight. Not
        CrossEntropyLoss(weight=...): with label smoothing it also weighs the smoothed targets, so
        every row is pulled toward the rarest classes and training collapses onto them."""
        per_row = nn.functional.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing, reduction="none")
        weight = self.class_weight[labels]
        return (per_row * weight).sum() / weight.sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.val_metrics.update(logits, batch["labels"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]), sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits = self._step(batch)
        self.test_metrics.update(logits, batch["labels"])
        self.per_class.update(logits, batch["labels"])
        self.log("test/loss", loss, on_epoch=True, batch_size=len(batch["labels"]), sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        values = self.per_class.compute()
        support = values["confusion"].sum(1)
        self.test_report = {
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

    def on_fit_start(self) -> None:
        if self.hparams.head_init == "probe":  # with loaded weights only its scores are kept, as the baseline
            self._fit_probe_head()

    def load_weights(self, folder: Path) -> None:
        """Start from a finished run's weights (`init_from`): its adapter (or encoder) and head."""
        from safetensors.torch import load_file

        from domaintune.errors import UserError

        if (folder / "adapter").is_dir():
            if not hasattr(self.encoder, "peft_config"):
                raise UserError(f"init_from={folder}: that run trained an adapter; use the same peft setting (not peft=none)")
            from peft import set_peft_model_state_dict

            loaded = set_peft_model_state_dict(self.encoder, load_file(folder / "adapter" / "adapter_model.safetensors"))
            unexpected = loaded.unexpected_keys
        else:
            if hasattr(self.encoder, "peft_config"):
                raise UserError(f"init_from={folder}: that run fine-tuned the whole encoder; continue it with peft=none")
            unexpected = self.encoder.load_state_dict(load_file(folder / "encoder" / "model.safetensors"), strict=False).unexpected_keys
        if unexpected:
            raise UserError(f"{folder}: its weights do not fit this model ({len(unexpected)} unknown, e.g. {unexpected[0]}); "
                            "use the run's own model and peft settings")
        self.head.load_state_dict(load_file(folder / "head.safetensors"))
        self.loaded_from = folder

    @torch.no_grad()
    def _features(self, loader) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.training
        self.eval()
        feats, labels = [], []
        for batch in loader:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            feats.append(self.embed(batch["input_ids"], batch["attention_mask"]).float().cpu())
            labels.append(batch["labels"].cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(labels)

    def _fit_probe_head(self) -> None:
        """Logistic regression on frozen base features -> head weights; its val scores are the baseline.
        It depends only on the base model and the data, so trials of a sweep fit it once."""
        datamodule = self.trainer.datamodule
        if self.loaded_from is not None and not hasattr(self.encoder, "peft_config"):
            return  # a fine-tuned encoder was loaded: no frozen base features here; the earlier run has the baseline
        key = (self.backbone.key, datamodule.fingerprint, getattr(datamodule, "max_length", None),
               self.hparams.pooling, self.hparams.num_labels)
        if key not in _PROBES:
            # under DDP every process sees its shard: all take rank 0's probe, so the copies agree
            _PROBES[key] = self.trainer.strategy.broadcast(self.fit_probe(datamodule), src=0)
        weight, bias, self.probe_scores = _PROBES[key]
        log.info("linear probe on the frozen base model: %s", self.probe_scores)
        if self.loaded_from is None:  # loaded weights keep their own head
            self.head[-1].weight.data.copy_(weight)
            self.head[-1].bias.data.copy_(bias)

    def fit_probe(self, datamodule) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        from sklearn.linear_model import LogisticRegression

        from contextlib import nullcontext

        frozen_base = self.encoder.disable_adapter() if hasattr(self.encoder, "peft_config") else nullcontext()
        with frozen_base:  # the base encoder's features, also when an adapter was loaded (init_from)
            x_train, y_train = self._features(datamodule.train_dataloader())
            x_val, y_val = self._features(datamodule.val_dataloader())
        probe = LogisticRegression(max_iter=1000).fit(x_train.numpy(), y_train.numpy())
        logits = torch.as_tensor(probe.decision_function(x_val.numpy()), dtype=torch.float32)
        if logits.ndim == 1:  # sklearn scores binary problems with one column
            logits = torch.stack([-logits, logits], dim=1)
        scores = torch.full((len(y_val), self.hparams.num_labels), float("-inf"))
        scores[:, torch.as_tensor(probe.classes_)] = logits
        metrics = self.val_metrics.clone().cpu()
        probe_scores = {k: round(v.item(), 6) for k, v in metrics(scores, y_val).items()}
        linear = self.head[-1]
        weight, bias = torch.zeros_like(linear.weight), torch.zeros_like(linear.bias)
        seen = torch.as_tensor(probe.classes_)
        if len(seen) == 2:
            weight[seen[1]], bias[seen[1]] = torch.as_tensor(probe.coef_[0]), float(probe.intercept_[0])
        else:
            weight[seen] = torch.as_tensor(probe.coef_, dtype=weight.dtype)
            bias[seen] = torch.as_tensor(probe.intercept_, dtype=bias.dtype)
        return weight, bias, probe_scores

    def configure_optimizers(self):
        from transformers import get_scheduler

        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW([
            {"params": encoder_params, "lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
            {"params": self.head.parameters(), "lr": self.hparams.head_lr, "weight_decay": 0.0},
        ])
        total = self.trainer.estimated_stepping_batches
        scheduler = get_scheduler(
            self.hparams.schedule, optimizer,
            num_warmup_steps=int(self.hparams.warmup_ratio * total), num_training_steps=total,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        frozen = {name for name, p in self.named_parameters(remove_duplicate=False) if not p.requires_grad}  # tied weights too
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}

    def report(self) -> dict:
        """What this module adds to metrics.json: the test per-class report and the probe baseline."""
        baseline = {"baseline": {"kind": "linear probe on the frozen base encoder", **self.probe_scores}}
        return {**self.test_report, **(baseline if self.probe_scores else {})}

    def save_artifacts(self, folder: Path) -> None:
        """Best weights in safetensors: the peft adapter (or the whole encoder) and the head."""
        from safetensors.torch import save_file

        self.encoder.save_pretrained(folder / ("adapter" if hasattr(self.encoder, "peft_config") else "encoder"))
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, folder / "head.safetensors")
