"""What a finished run leaves in its folder: metrics.json, learning curve, summary text."""

from __future__ import annotations

import json
from pathlib import Path

from domaintune.errors import UserError


def best_epoch(history: list[dict], metric: str, mode: str) -> dict | None:
    rows = [row for row in history if metric in row]
    if not rows:
        return None
    return (max if mode == "max" else min)(rows, key=lambda row: row[metric])


def read_run(folder: Path, key: str = "run") -> tuple[dict, dict]:
    """The config and metrics of a finished run folder; a one-line error naming `key=` otherwise."""
    if not (folder / "metrics.json").is_file() or not (folder / "config.yaml").is_file():
        raise UserError(f"{key}={folder}: not a finished run folder (no metrics.json / config.yaml); pass outputs/runs/<date>/<run>")
    import yaml

    return yaml.safe_load((folder / "config.yaml").read_text()), json.loads((folder / "metrics.json").read_text())


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return path


def plot_learning_curve(history: list[dict], metric: str, path: Path) -> Path | None:
    """Train and validation loss, and the optimized metric, per epoch."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train/loss", "val/loss"):
        if all(key in row for row in history):
            loss_axis.plot(epochs, [row[key] for row in history], marker="o", label=key)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    if all(metric in row for row in history):
        metric_axis.plot(epochs, [row[metric] for row in history], marker="o", color="tab:green")
    metric_axis.set(xlabel="epoch", ylabel=metric, title=metric)
    for axis in (loss_axis, metric_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


PROBE = "the frozen encoder with a linear head"


def verdict(metric: str, value: float, baseline: float, mode: str, instead: str = PROBE) -> str:
    """Plain words on whether fine-tuning beat the base model (`instead`: what to use if not)."""
    gain = (value - baseline) * (1 if mode == "max" else -1)
    if gain > 0:
        return f"fine-tuning improved {metric} by {gain:.4f}"
    if gain == 0:
        return f"fine-tuning only tied the base model: {instead} is as good and cheaper"
    return f"fine-tuning did NOT beat the base model: {instead} is the better choice"


def baseline_line(metrics: dict, value: float | None) -> str | None:
    """'<base model>: <metric> <its value>; <verdict>' for a run's (or best trial's) value."""
    baseline, metric = metrics.get("baseline", {}), metrics.get("best", {}).get("metric")
    if metric not in baseline or value is None:
        return None
    instead = baseline.get("instead", PROBE)
    return (f"  base model ({baseline.get('kind', 'linear probe')}): {metric} {baseline[metric]:.4f}; "
            + verdict(metric, value, baseline[metric], metrics.get("mode", "max"), instead))


def summary_text(metrics: dict) -> str:
    """The few lines a user reads after a run: best epoch, test scores, baseline, where things are."""
    best, test = metrics["best"], metrics.get("test", {})
    stopped = " (early stopping: validation stopped improving)" if metrics.get("stopped_early") else ""
    lines = [f"domaintune: {metrics['task']} finished in {metrics['time_s']:.0f}s, {metrics['epochs_run']} epoch(s){stopped}"]
    if best["value"] is not None:
        lines.append(f"  best {best['metric']} = {best['value']:.4f} at epoch {best['epoch']}")
    if test:
        lines.append("  test (best checkpoint): " + "  ".join(f"{k.removeprefix('test/')} {v:.4f}" for k, v in test.items()))
    compared = baseline_line(metrics, best["value"])
    if compared:
        lines.append(compared)
    regression = metrics.get("regression", {})
    if "drop" in regression:
        state = (f"REGRESSION: it forgot more than the tolerance {regression['tolerance']}" if regression["regressed"]
                 else f"kept within the tolerance {regression['tolerance']}")
        lines.append(f"  earlier run's test set: {regression['metric']} {regression['before']:.4f} -> {regression['after']:.4f}; {state}")
        if regression.get("test_rows_in_new_train"):
            lines.append(f"  note: {regression['test_rows_in_new_train']} of its {regression['test_rows']} test rows are in the new "
                         "train data, so this check is optimistic; keep earlier test rows out of new training data")
    lines.append(f"  outputs: {metrics['run_dir']}")
    return "\n".join(lines)
