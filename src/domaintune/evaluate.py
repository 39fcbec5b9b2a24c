"""`domaintune evaluate`: a finished run's best weights against the base model on the same test
rows, by the same code that gives every run its verdict (the module's test stage): the run's own
test split, or every row of `data.path=<file>`. The base model's probe is fitted on the run's own
training data, which must still be the data the run trained on."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from domaintune import verdict
from domaintune.errors import DataError, UserError
from domaintune.runs import load_run, test_trainer


def evaluate(run: str, overrides: list[str]) -> tuple[dict, Path]:
    from omegaconf import OmegaConf

    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.startswith("data."):
            raise UserError(f"'{override}': evaluate takes data.* overrides (data.path=<test data>) only")
    finished = load_run(Path(run))
    folder, datamodule, module = finished.folder, finished.datamodule, finished.module
    cfg = OmegaConf.merge(finished.cfg, OmegaConf.from_dotlist(overrides))  # typed values: max_length=256 is an int
    datamodule.setup("fit")
    trained_on = finished.metrics["data"]["fingerprint"]
    if datamodule.fingerprint != trained_on:
        raise DataError(
            f"{datamodule.path}: no longer the data run={folder} trained on (fingerprint {datamodule.fingerprint}, "
            f"the run's {trained_on}); the base model's probe is fitted on the run's own "
            "training rows: restore them, or train a new run"
        )
    new_data = cfg.data.path != finished.cfg.data.path
    if new_data:
        datamodule.use_as_test(Path(cfg.data.path), cfg.data)
        module.test_every_row(len(datamodule.datasets["test"]))
    limit = None if new_data else cfg.trainer.get("limit_test_batches")  # the run's own test: as the run tested it
    scores = test_trainer(cfg, limit_test_batches=limit).test(module, datamodule=datamodule, verbose=False)[0]
    result = {
        "run": str(folder),
        "data": {
            "path": str(cfg.data.path if new_data else datamodule.path),
            "test_rows": len(datamodule.datasets["test"]),
            "same_as_training": not new_data,
            "probe_fitted_on": str(datamodule.path),
        },
        "test": {k: round(float(v), 6) for k, v in scores.items()},
        **module.report(),
        "train_val_gap": _gap(finished.metrics),
    }
    # earlier evaluations are never overwritten
    out = folder / "evaluations" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"
    out.mkdir(parents=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    module.save_test_outputs(out)
    if module.scored:  # a kind with a verdict keeps its per-row scores
        verdict.save_scored(out, module.scored, _rows_identity(datamodule.datasets["test"]))
    return result, out


def _rows_identity(dataset) -> str:
    """A digest of the test rows (their token ids, or each row as printed for a dataset without
    them): two evaluations compare row by row only when equal."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    rows = dataset.ids if hasattr(dataset, "ids") else (repr(dataset[i]) for i in range(len(dataset)))
    for row in rows:
        digest.update((row.encode() if isinstance(row, str) else np.asarray(row).tobytes()) + b"|")
    return digest.hexdigest()[:16]


def _gap(metrics: dict) -> dict:
    """Train and validation loss at the best epoch: validation far above training means overfitting."""
    best = next((e for e in metrics.get("history", []) if e.get("epoch") == metrics["best"]["epoch"]), {})
    gap = {"train/loss": best.get("train/loss"), "val/loss": best.get("val/loss")}
    if None not in gap.values():
        gap["val_minus_train"] = round(gap["val/loss"] - gap["train/loss"], 4)
    return gap
