"""`domaintune evaluate`: a finished run's best weights against the base model on the same test
rows, by the same code that gives every run its verdict (the module's test stage): the run's own
test split, or every row of `data.path=<file>`. The base model's probe is fitted on the run's own
training data, which must still be the data the run trained on."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from domaintune.errors import DataError, UserError
from domaintune.outputs import read_run


def test_trainer(cfg, **overrides):
    """A Trainer that only tests, on one device, in the run's precision, with no logger."""
    import lightning.pytorch as pl

    return pl.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision, logger=False,
                      enable_checkpointing=False, enable_model_summary=False, **overrides)


def evaluate(run: str, overrides: list[str]) -> tuple[dict, Path]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from domaintune import registry

    registry.discover()  # the run's plugin datamodule is importable
    folder = Path(run)
    config, metrics = read_run(folder)
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.startswith("data."):
            raise UserError(f"'{override}': evaluate takes data.* overrides (data.path=<test data>) only")
    run_cfg = OmegaConf.create(config)
    cfg = OmegaConf.merge(run_cfg, OmegaConf.from_dotlist(overrides))  # typed values: max_length=256 is an int
    backbone = instantiate(cfg.model)
    datamodule = instantiate(run_cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")
    if datamodule.fingerprint != metrics["data"]["fingerprint"]:
        raise DataError(f"{datamodule.path}: no longer the data run={folder} trained on (fingerprint {datamodule.fingerprint}, "
                        f"the run's {metrics['data']['fingerprint']}); the base model's probe is fitted on the run's own "
                        "training rows: restore them, or train a new run")
    new_data = cfg.data.path != run_cfg.data.path
    if new_data:
        datamodule.use_as_test(Path(cfg.data.path), cfg.data)

    peft_config = instantiate(cfg.peft) if cfg.get("peft") else None
    module = instantiate(cfg.module, _partial_=True)(backbone=backbone, peft_config=peft_config, **datamodule.module_inputs())
    module.load_weights(folder)
    if new_data and "test_generate_rows" in module.hparams:  # a generative run answers every row of new data
        module.hparams.test_generate_rows = len(datamodule.datasets["test"])
    limit = None if new_data else cfg.trainer.get("limit_test_batches")  # the run's own test: as the run tested it
    scores = test_trainer(cfg, limit_test_batches=limit).test(module, datamodule=datamodule, verbose=False)[0]
    report = module.report()
    result = {
        "run": str(folder),
        "data": {"path": str(cfg.data.path if new_data else datamodule.path), "test_rows": len(datamodule.datasets["test"]),
                 "same_as_training": not new_data, "probe_fitted_on": str(datamodule.path)},
        "test": {k: round(float(v), 6) for k, v in scores.items()},
        "verdict": report["verdict"],
        "baseline": report.get("baseline", {}),
        "train_val_gap": _gap(metrics),
    }
    plot = None
    if "confusion_matrix" in report:
        result["per_class"] = report["per_class"]
        labels = list(report["per_class"])
        plot = lambda out: _plot_confusion(np.array(report["confusion_matrix"]), labels, out / "confusion_matrix.png")  # noqa: E731
    if getattr(module, "samples", None):
        result["samples"] = module.samples
    return _save(folder, result, plot)


def _save(folder: Path, result: dict, plot) -> tuple[dict, Path]:
    """A new `<run>/evaluations/<time>/`: earlier evaluations are never overwritten."""
    out = folder / "evaluations" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"
    out.mkdir(parents=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if plot is not None:
        plot(out)
    return result, out


def _gap(metrics: dict) -> dict:
    """Train and validation loss at the best epoch: validation far above training means overfitting."""
    best = next((e for e in metrics.get("history", []) if e.get("epoch") == metrics["best"]["epoch"]), {})
    gap = {"train/loss": best.get("train/loss"), "val/loss": best.get("val/loss")}
    if None not in gap.values():
        gap["val_minus_train"] = round(gap["val/loss"] - gap["train/loss"], 4)
    return gap


def _plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.3 * len(labels))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    axis.set_xticklabels(labels, rotation=90, fontsize=7)
    axis.set_yticklabels(labels, fontsize=7)
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
