"""`domaintune evaluate`: a finished classification run's best weights against the base model (a
linear probe on the frozen base encoder) on the same test rows, with bootstrap intervals on the
difference, a per-class report, a confusion matrix and the train/val gap."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from domaintune.errors import DataError, UserError
from domaintune.outputs import read_run

BOOTSTRAP = 1000


def _module(cfg, datamodule, backbone, folder: Path | None):
    """The run's classifier with its saved weights (`folder`), or the bare base encoder (None)."""
    from hydra.utils import instantiate

    peft_config = instantiate(cfg.peft) if folder is not None and cfg.get("peft") else None
    module = instantiate(cfg.module, _partial_=True)(backbone=backbone, peft_config=peft_config, **datamodule.module_inputs())
    if folder is not None:
        module.load_weights(folder)
    return module.eval()


def _predict(module, loader) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        features, labels = module._features(loader)
        return module.head(features).argmax(-1).numpy(), labels.numpy()


def _scores(truth: np.ndarray, predicted: np.ndarray, classes=None) -> dict[str, float]:
    """Accuracy and macro-F1 over `classes` (default: the classes present in `truth`, so a class a
    bootstrap draw left out does not count as F1 0 for both models)."""
    from sklearn.metrics import f1_score

    classes = np.unique(truth) if classes is None else classes
    return {"acc": float((truth == predicted).mean()),
            "macro_f1": float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0))}


def bootstrap_difference(truth, tuned, base, seed: int = 0) -> dict[str, list[float]]:
    """95% interval of (fine-tuned - base) for each score, resampling the same test rows for both."""
    rng = np.random.default_rng(seed)
    draws = {"acc": [], "macro_f1": []}
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(truth), len(truth))
        a, b = _scores(truth[rows], tuned[rows]), _scores(truth[rows], base[rows])
        for key in draws:
            draws[key].append(a[key] - b[key])
    return {key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for key, v in draws.items()}


def verdict_line(metric: str, difference: float, interval: list[float]) -> str:
    low, high = interval
    if low > 0:
        return f"fine-tuning improved {metric} by {difference:.2f} (95% CI {low:.2f} to {high:.2f})"
    if high < 0:
        return f"fine-tuning made {metric} WORSE by {-difference:.2f} (95% CI {low:.2f} to {high:.2f}): use the base model with a linear head"
    return (f"fine-tuning changed {metric} by {difference:+.2f}, not distinguishable from the base model "
            f"(95% CI {low:.2f} to {high:.2f}): the frozen encoder with a linear head is as good and cheaper")


def evaluate(run: str, overrides: list[str]) -> tuple[dict, Path]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from domaintune import registry

    folder = Path(run)
    config, metrics = read_run(folder)
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.startswith("data."):
            raise UserError(f"'{override}': evaluate takes data.* overrides (data.path=<test data>) only")
    cfg = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(overrides))  # typed values: max_length=256 is an int
    if not (folder / "head.safetensors").is_file():
        return _save(folder, _evaluate_generative(folder, cfg, metrics, bool(overrides)), None)
    registry.discover()
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("test")
    trained = json.loads((folder / "label_map.json").read_text())
    if list(trained) != datamodule.labels:
        unknown = sorted(set(datamodule.labels) - set(trained))
        raise DataError(f"{datamodule.path}: its labels differ from the run's ({len(trained)} labels)"
                        + (f"; unknown to the model: {unknown[:5]}" if unknown else "") + "; evaluate on data with the run's labels")

    tuned_module = _module(cfg, datamodule, backbone, folder)
    tuned, truth = _predict(tuned_module, datamodule.test_dataloader())
    base_module = _module(cfg, datamodule, backbone, None)
    weight, bias, _ = base_module.fit_probe(datamodule)  # the probe fitted on train, as every run reports it
    base_module.head[-1].weight.data.copy_(weight)
    base_module.head[-1].bias.data.copy_(bias)
    base, _ = _predict(base_module, datamodule.test_dataloader())
    classes = list(range(len(datamodule.labels)))
    scores = {"fine_tuned": _scores(truth, tuned), "base": _scores(truth, base)}
    intervals = bootstrap_difference(truth, tuned, base)
    metric = "macro_f1"
    difference = scores["fine_tuned"][metric] - scores["base"][metric]
    gap = _gap(metrics)
    from sklearn.metrics import classification_report, confusion_matrix

    result = {
        "run": str(folder), "data": {"path": str(datamodule.path), "fingerprint": datamodule.fingerprint, "test_rows": len(truth),
                                     "same_as_training": datamodule.fingerprint == metrics["data"]["fingerprint"]},
        "base_kind": "linear probe on the frozen base encoder",
        "scores": scores, "difference": {k: scores["fine_tuned"][k] - scores["base"][k] for k in ("acc", "macro_f1")},
        "ci95": intervals, "train_val_gap": gap,
        "per_class": classification_report(truth, tuned, labels=classes, target_names=datamodule.labels, output_dict=True, zero_division=0),
        "verdict": verdict_line(metric, difference, intervals[metric]),
    }
    matrix = confusion_matrix(truth, tuned, labels=classes)
    return _save(folder, result, lambda out: _plot_confusion(matrix, datamodule.labels, out / "confusion_matrix.png"))


def _save(folder: Path, result: dict, plot) -> tuple[dict, Path]:
    """A new `<run>/evaluations/<time>/`: earlier evaluations are never overwritten."""
    out = folder / "evaluations" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}"
    out.mkdir(parents=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    if plot is not None:
        plot(out)
    return result, out


def _evaluate_generative(folder: Path, cfg, metrics: dict, new_data: bool) -> dict:
    """ROUGE-L of the fine-tuned and the base model on the same test prompts: the run's own
    `samples.jsonl`, or fresh answers on `data.path=...`."""
    from torchmetrics.functional.text.rouge import rouge_score

    if new_data:
        references, tuned, base = _answer_new_data(folder, cfg)
    else:
        if not (folder / "samples.jsonl").is_file():
            raise UserError(f"run={folder}: no samples.jsonl (the run generated no test answers); pass data.path=<test data>")
        samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        references, tuned, base = ([s[k] for s in samples] for k in ("reference", "fine_tuned", "base"))

    def per_row(answers):
        return np.array([float(rouge_score(a, r, rouge_keys="rougeL")["rougeL_fmeasure"]) for a, r in zip(answers, references)])

    a, b = per_row(tuned), per_row(base)
    rng = np.random.default_rng(0)
    draws = [(a[rows] - b[rows]).mean() for rows in (rng.integers(0, len(a), len(a)) for _ in range(BOOTSTRAP))]
    interval = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
    test, baseline = metrics.get("test", {}), metrics.get("baseline", {})
    return {
        "run": str(folder), "data": {"path": str(cfg.data.path), "test_rows": len(a), "same_as_training": not new_data},
        "base_kind": "no fine-tuning",
        "scores": {"fine_tuned": {"rougeL": float(a.mean()), **({k.removeprefix("test/"): v for k, v in test.items() if "ppl" in k} if not new_data else {})},
                   "base": {"rougeL": float(b.mean()), **({k.removeprefix("test/"): v for k, v in baseline.items() if k == "test/ppl"} if not new_data else {})}},
        "difference": {"rougeL": float(a.mean() - b.mean())}, "ci95": {"rougeL": interval},
        "train_val_gap": _gap(metrics),
        "verdict": verdict_line("ROUGE-L", float(a.mean() - b.mean()), interval),
    }


def _answer_new_data(folder: Path, cfg) -> tuple[list[str], list[str], list[str]]:
    from hydra.utils import instantiate

    from domaintune.inference import load_run
    from domaintune.modules.causal_lm import generate

    model, tokenizer, _, _ = load_run(str(folder))
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=tokenizer)
    datamodule.setup("test")
    prompt_ids, _, references = datamodule.generation_rows("test", int(cfg.module.test_generate_rows))
    new_tokens = int(cfg.module.max_new_tokens)
    tuned = generate(model, tokenizer, prompt_ids, new_tokens)
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            base = generate(model, tokenizer, prompt_ids, new_tokens)
    else:
        base = generate(instantiate(cfg.model).load_model(), tokenizer, prompt_ids, new_tokens)
    return references, tuned, base


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
