"""Is the base model a fair opponent? A finished classification run's probe (the verdict's base
model) against an independent, tuned logistic-regression probe on the same rows.

The independent probe shares none of our probe code: frozen mean-pooled features straight from
`transformers`, L2-normalized as sentence-transformers serves all-MiniLM-L6-v2, and scikit-learn's
`LogisticRegressionCV` choosing C from 13 values (1e-3 to 1e3) by 5-fold cross-validation on the
run's train + validation rows. Both are scored on the run's test rows (after its cleaning).

A multi-label run's probe (one-vs-rest, C, scaling and thresholds chosen on validation) is
compared on test micro-F1 with scikit-learn's `OneVsRestClassifier(LogisticRegression())` as a
practitioner would first fit it: C=1, a 0.5 threshold, on the same L2-normalized features of
the run's train rows.

    python bench/probe.py <run folder> [<run folder> ...]
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch


def features(model_dir: str, texts: list[str], max_length: int) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tokenizer, encoder = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 128):
            batch = tokenizer(
                texts[start : start + 128], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out).numpy()


def compare(run: Path) -> float:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    from domaintune import registry

    registry.add_plugin_folders()
    cfg = OmegaConf.load(run / "config.yaml")
    metrics = json.loads((run / "metrics.json").read_text())
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")  # the run's own rows, cleaned and split as the run had them
    tokenizer = datamodule.tokenizer
    texts = {
        split: [tokenizer.decode(ids, skip_special_tokens=True) for ids in ds.ids]
        for split, ds in datamodule.datasets.items()
    }
    labels = {split: np.asarray(ds.labels) for split, ds in datamodule.datasets.items()}
    model_dir = str(backbone.name_or_path)
    x = {split: features(model_dir, texts[split], int(cfg.data.max_length)) for split in texts}
    warnings.filterwarnings("ignore")
    if metrics["data"].get("multi_label"):
        return compare_sets(run, metrics, x, labels)
    with threadpool_limits(1):
        probe = LogisticRegressionCV(Cs=np.logspace(-3, 3, 13), cv=5, max_iter=2000).fit(
            np.concatenate([x["train"], x["val"]]), np.concatenate([labels["train"], labels["val"]])
        )
    independent = float((probe.predict(x["test"]) == labels["test"]).mean())
    ours = metrics["verdict"]["metrics"]["acc"]["base"]
    print(
        f"{run}: {len(labels['test'])} test rows; our probe ({metrics['baseline']['features']} features, "
        f"C={metrics['baseline']['C']:g}) test acc {ours:.4f}; independent LogisticRegressionCV (C={probe.C_[0]:g}) "
        f"{independent:.4f}; difference {ours - independent:+.4f} (bar >= -0.015)",
        flush=True,
    )
    return ours - independent


def compare_sets(run: Path, metrics: dict, x: dict, labels: dict) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        probe = OneVsRestClassifier(LogisticRegression(max_iter=2000)).fit(x["train"], labels["train"].astype(int))
    independent = float(f1_score(labels["test"].astype(int), probe.predict(x["test"]), average="micro"))
    ours = metrics["verdict"]["metrics"]["micro_f1"]["base"]
    print(
        f"{run}: {len(labels['test'])} test rows; our one-vs-rest probe ({metrics['baseline']['features']} features, "
        f"C={metrics['baseline']['C']:g}, thresholds {metrics['baseline']['thresholds']['way']}) test micro-F1 "
        f"{ours:.4f}; independent OneVsRestClassifier(LogisticRegression()) {independent:.4f}; difference "
        f"{ours - independent:+.4f} (bar >= -0.015)",
        flush=True,
    )
    return ours - independent


if __name__ == "__main__":
    runs = [Path(arg) for arg in sys.argv[1:]]
    if not runs:
        sys.exit(__doc__)
    sys.exit(0 if all(compare(run) >= -0.015 for run in runs) else 1)
