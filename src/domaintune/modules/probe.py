"""The base model's opponent for a kind with an encoder and a head: a logistic regression on
the frozen encoder's vectors, tuned as any fair baseline is (C and the feature scaling chosen on
validation), kept with the run so that `use=base` can predict with it and export it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# The base model's opponent is tuned as any baseline would be: inverse regularization C and the
# feature scaling chosen on validation (a logistic regression with scikit-learn's default C=1 on
# raw mean-pooled features underfits and flatters fine-tuning).
PROBE_C = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
PROBE_FEATURES = ("standardized", "l2")
FRACTIONS = (0.25, 0.5, 1.0)  # of the train rows: the probe's data curve, reported before any fine-tuning


class Probe:
    """A logistic regression on frozen sentence vectors, with its feature scaling (standardized,
    or L2-normalized as sentence-transformers serve them), and how it scored on validation. A
    multi-label probe (one-vs-rest) also has its decision thresholds, chosen on validation."""

    def __init__(
        self,
        features: str,
        center: torch.Tensor,
        scale: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        C: float,
        scores: dict[str, float],
        grid: list[dict],
        kind: str,  # the opponent in words, as the verdict names it
    ):
        self.features, self.center, self.scale, self.weight, self.bias = features, center, scale, weight, bias
        self.C, self.scores, self.grid, self.kind = C, scores, grid, kind
        self.curve: list[dict] = []  # validation scores as the train rows grow (FRACTIONS), where measured
        self.cut = None  # multi-label: each label's decision threshold (an array)
        self.thresholds: dict | None = None  # the same as the report shows it: {"way": ..., label: threshold}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().cpu()
        x = nn.functional.normalize(x, dim=-1) if self.features == "l2" else (x - self.center) / self.scale
        return x @ self.weight.T + self.bias

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the same linear map on raw features (standardization folds into a
        linear layer; L2 normalization does not, so only a standardized probe can start the head)."""
        weight = self.weight / self.scale
        return weight, self.bias - weight @ self.center

    def save(self, folder: Path) -> None:
        """`probe.safetensors` (scaling, weight, bias, and a multi-label probe's thresholds) and
        `probe.json` (how it was chosen): a few kilobytes that make `use=base` possible."""
        from safetensors.torch import save_file

        tensors = {"center": self.center, "scale": self.scale, "weight": self.weight, "bias": self.bias}
        if self.cut is not None:
            tensors["thresholds"] = torch.as_tensor(self.cut, dtype=torch.float)
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, folder / "probe.safetensors")
        (folder / "probe.json").write_text(json.dumps(self.report(), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Probe:
        from safetensors.torch import load_file

        from domaintune.errors import UserError

        if not (folder / "probe.safetensors").is_file():
            raise UserError(
                f"run={folder}: no probe.safetensors (the run is older than use=base, or never fitted its probe); "
                "train the run again to predict with its base model"
            )
        tensors, saved = load_file(folder / "probe.safetensors"), json.loads((folder / "probe.json").read_text())
        scores = {k.removeprefix("val/"): v for k, v in saved.items() if k.startswith("val/")}
        probe = cls(
            saved["features"],
            tensors["center"],
            tensors["scale"],
            tensors["weight"],
            tensors["bias"],
            saved["C"],
            scores,
            saved["grid"],
            saved["kind"],
        )
        if "thresholds" in tensors:
            probe.cut, probe.thresholds = tensors["thresholds"].numpy(), saved.get("thresholds")
        probe.curve = saved.get("curve", [])
        return probe

    def as_head(self) -> nn.Sequential:
        """The probe as a head on raw encoder vectors: a linear layer (standardization folded in),
        after an L2 normalization where its features are L2-normalized."""
        linear = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        weight, bias = self.folded() if self.features == "standardized" else (self.weight, self.bias)
        linear.weight.data.copy_(weight)
        linear.bias.data.copy_(bias)
        return nn.Sequential(*([L2Normalize()] if self.features == "l2" else []), linear)

    def report(self) -> dict:
        return {
            "kind": self.kind,
            "C": self.C,
            "features": self.features,
            **{f"val/{k}": v for k, v in self.scores.items()},
            **({"thresholds": self.thresholds} if self.thresholds else {}),
            **({"curve": self.curve} if self.curve else {}),
            "grid": self.grid,
        }


def probe_scaling(x_train: torch.Tensor, features: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A probe's feature scaling fitted on train (`standardized` or `l2`): its center and scale,
    and the train features so scaled."""
    if features == "l2":
        center, scale = torch.zeros(x_train.shape[1]), torch.ones(x_train.shape[1])
        return center, scale, nn.functional.normalize(x_train, dim=-1)
    center, scale = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    return center, scale, (x_train - center) / scale


def best_probes(candidates: list[Probe], key: str, sign: int) -> tuple[Probe, Probe]:
    """The best probe by validation `key` (`sign` -1 where lower is better), and the best
    standardized one (the one that can start a head)."""
    best = max(candidates, key=lambda p: sign * p.scores[key])
    start = max((p for p in candidates if p.features == "standardized"), key=lambda p: sign * p.scores[key])
    return best, start


class L2Normalize(nn.Module):
    """Vectors scaled to unit length, as sentence-transformers' Normalize module does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=-1)


def softmax_regression(scaled: torch.Tensor, targets: torch.Tensor, num_labels: int, C: float):
    """Multinomial logistic regression (scikit-learn) as a weight and bias over all `num_labels`
    classes: a class absent from `targets` gets zeros, and a two-class problem, which
    scikit-learn fits as one column, becomes the second class's logit."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    seen = torch.as_tensor(sorted(set(targets.tolist())))
    # measured on BANKING77 features on 2 busy cores: 2.5 s with one thread, 28 s with two
    with threadpool_limits(1):
        fitted = LogisticRegression(C=C, max_iter=1000).fit(scaled.numpy(), targets.numpy())
    weight, bias = torch.zeros(num_labels, scaled.shape[1]), torch.zeros(num_labels)
    coef, intercept = torch.as_tensor(fitted.coef_, dtype=torch.float), torch.as_tensor(fitted.intercept_).float()
    if len(seen) == 2:
        weight[seen[1]], bias[seen[1]] = coef[0], intercept[0]
    else:
        weight[seen], bias[seen] = coef, intercept
    return weight, bias
