"""What a finished run leaves in its folder (config, weights, metrics.json, learning curve), its
summary text and W&B summary, and the atomic file writes runs and sweeps share."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from domaintune import direction


def best_epoch(history: list[dict], metric: str, mode: str) -> dict | None:
    """The epoch whose weights the run kept (`callbacks.BestWeights` chooses by the same rule)."""
    best = None
    for row in (row for row in history if metric in row):
        if direction.improves(row[metric], best[metric] if best else None, mode):
            best = row
    return best


def write_json(path: Path, data: dict) -> Path:
    """JSON written whole, then renamed over `path`: a reader (another worker, a sweeper) sees the
    whole file or none."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=2, default=float) + "\n")
    return partial.replace(path)


def write_csv(path: Path, rows: list[dict]) -> None:
    """A table written whole, then renamed over `path`: parallel writers never leave half a file."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def run_metrics(cfg, trainer, history, datamodule, module, test_results: dict, seconds: float) -> dict:
    """metrics.json of a run: the best validation epoch, the test scores, the data and what cleaning
    removed, the epoch history, and what the module reports (the verdict against its base model)."""
    import torch

    best = best_epoch(history.epochs, cfg.optimized_metric, cfg.mode) or {}
    return {
        "task": cfg.task_name,
        "mode": cfg.mode,
        "run_dir": str(cfg.paths.run_dir),
        "best": {"metric": cfg.optimized_metric, "value": best.get(cfg.optimized_metric), "epoch": best.get("epoch")},
        "epochs_run": len(history.epochs),
        "stopped_early": bool(trainer.early_stopping_callback and trainer.early_stopping_callback.stopped_epoch),
        "world_size": trainer.world_size,
        "threads": torch.get_num_threads(),  # intra-op threads (a parallel sweep gives each trial fewer)
        "time_s": round(seconds, 1),
        "sanity_check_s": history.sanity_seconds,
        "test": {k: round(float(v), 6) for k, v in test_results.items()},
        "data": {
            "path": str(datamodule.path),
            "fingerprint": datamodule.fingerprint,
            **{f"{split}_rows": len(ds) for split, ds in datamodule.datasets.items()},
            "removed": datamodule.cleaning,  # duplicates and leakage taken out before training
            **datamodule.report(),
        },
        "history": history.epochs,
        "cost": cost(history.epochs, module),
        **module.report(),
    }


COSTS = ("time/epoch_s", "model/trainable_params")


def cost(history: list[dict], module) -> dict:
    """What a run costs, beside what it scores (a multi-objective sweep trades one for the other):
    mean seconds of a training epoch (its validation included) and trainable parameters."""
    seconds = [row["seconds"] for row in history if "seconds" in row]
    epoch_s, params = COSTS
    return {
        epoch_s: round(sum(seconds) / len(seconds), 3) if seconds else None,
        params: sum(p.numel() for p in module.parameters() if p.requires_grad),
    }


def save_artifacts(run_dir: Path, cfg, datamodule, module, history: list[dict], checkpoints: list[str]) -> None:
    """The resolved config, the best weights and the learning curve; the resume checkpoint goes, and
    its folder when it is left empty. The weights are written on a thread while the curve is drawn:
    safetensors writes without holding the GIL, so a sweep's next trial waits for the longer of the
    two instead of both."""
    from concurrent.futures import ThreadPoolExecutor

    from omegaconf import OmegaConf

    run_dir.mkdir(parents=True, exist_ok=True)  # a run without checkpoints has written nothing there yet
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    datamodule.save_artifacts(run_dir)
    with ThreadPoolExecutor(1, thread_name_prefix="weights") as disk:
        weights = disk.submit(module.save_artifacts, run_dir)
        plot_learning_curve(history, cfg.optimized_metric, run_dir / "learning_curve.png")
        weights.result()
    remove_checkpoints(checkpoints)


def remove_checkpoints(checkpoints: list[str]) -> None:
    for checkpoint in filter(None, checkpoints):
        Path(checkpoint).unlink(missing_ok=True)
        if Path(checkpoint).parent.is_dir() and not any(Path(checkpoint).parent.iterdir()):
            Path(checkpoint).parent.rmdir()


def tracker_summary(metrics: dict) -> dict:
    """The run's outcome as flat W&B summary keys: best epoch, baseline, verdict, data removed."""
    return {
        "best/value": metrics["best"]["value"],
        "best/epoch": metrics["best"]["epoch"],
        **{f"baseline/{k}": v for k, v in metrics.get("baseline", {}).items() if isinstance(v, (int, float))},
        **{  # the probe's data curve: baseline/curve/25pct/val/acc, ...
            f"baseline/curve/{point['fraction']:.0%}/{k}".replace("%", "pct"): v
            for point in metrics.get("baseline", {}).get("curve", [])
            for k, v in point.items()
            if k.startswith("val/") and not k.endswith("_ci95")
        },
        **verdict_summary(metrics.get("verdict")),
        **update_summary(metrics.get("regression", {}).get("verdicts", {})),
        **{f"data/removed/{k}": v for k, v in metrics["data"]["removed"].items()},
        **metrics.get("cost", {}),
    }


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
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)  # tight_layout: 3x the cost
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def verdict_summary(verdict: dict | None) -> dict:
    """The test verdict as flat W&B summary keys: the sentence, and per metric both models'
    test scores and the 95% interval on their difference."""
    if not verdict:
        return {}
    flat = {"verdict/line": verdict["line"], "verdict/test_rows": verdict["test_rows"]}
    for metric, result in verdict["metrics"].items():
        flat.update(
            {
                f"verdict/{metric}/fine_tuned": result["fine_tuned"],
                f"verdict/{metric}/base": result["base"],
                f"verdict/{metric}/difference": result["difference"],
                f"verdict/{metric}/ci95_low": result["ci95"][0],
                f"verdict/{metric}/ci95_high": result["ci95"][1],
            }
        )
    return flat


def update_summary(verdicts: dict) -> dict:
    """An `init_from` run's two update verdicts as flat W&B summary keys: the sentence, and per
    metric the updated and earlier models' scores and the 95% interval on their difference."""
    flat = {}
    for rows, update in verdicts.items():
        flat[f"update/{rows}/line"] = update["line"]
        for metric, result in update["metrics"].items():
            flat.update(
                {
                    f"update/{rows}/{metric}/updated": result["fine_tuned"],
                    f"update/{rows}/{metric}/earlier": result["base"],
                    f"update/{rows}/{metric}/ci95_low": result["ci95"][0],
                    f"update/{rows}/{metric}/ci95_high": result["ci95"][1],
                }
            )
    return flat


def selection_line(metrics: dict) -> str | None:
    """What chose the checkpoint: the best validation epoch, beside the base model's validation
    score (a maximum over epochs: optimistic, so it is not the verdict)."""
    best, baseline = metrics["best"], metrics.get("baseline", {})
    if best["value"] is None:
        return None
    line = f"  selected on validation: {best['metric']} {best['value']:.4f} at epoch {best['epoch']}"
    if best["metric"] in baseline:
        line += f" (base model {baseline[best['metric']]:.4f})"
    return line


def removed_line(removed: dict | None) -> str | None:
    """What training took out of its data, and the label conflicts it kept."""
    from domaintune.data.cleaning import describe

    parts, conflicts = describe(removed or {})
    line = f"  data: removed {parts} before training" if parts else ""
    if conflicts:
        line = (line + ";" if line else "  data:") + f" {conflicts} texts appear under two labels (kept)"
    return line or None


def summary_text(metrics: dict) -> str:
    """The few lines a user reads after a run: what selected the checkpoint, the test scores, the
    test verdict against the base model, where things are."""
    test = metrics.get("test", {})
    stopped = " (early stopping: validation stopped improving)" if metrics.get("stopped_early") else ""
    lines = [
        f"domaintune: {metrics['task']} finished in {metrics['time_s']:.0f}s, {metrics['epochs_run']} "
        f"epoch(s){stopped}"
    ]
    lines += [line for line in (removed_line(metrics.get("data", {}).get("removed")), selection_line(metrics)) if line]
    if test:
        lines.append(
            "  test (best checkpoint): " + "  ".join(f"{k.removeprefix('test/')} {v:.4f}" for k, v in test.items())
        )
    if metrics.get("verdict"):
        lines.append(f"  verdict on the test split: {metrics['verdict']['line']}")
    regression = metrics.get("regression", {})
    if "drop" in regression:
        state = (
            f"REGRESSION: it forgot more than the tolerance {regression['tolerance']}"
            if regression["regressed"]
            else f"kept within the tolerance {regression['tolerance']}"
        )
        lines.append(
            f"  earlier run's test set: {regression['metric']} {regression['before']:.4f} -> "
            f"{regression['after']:.4f}; {state}"
        )
        for update in regression.get("verdicts", {}).values():
            lines.append(f"  update: {update['line']}")
        if regression.get("test_rows_in_new_train"):
            lines.append(
                f"  note: {regression['test_rows_in_new_train']} of its {regression['test_rows']} test rows are in "
                "the new "
                "train data, so this check is optimistic; keep earlier test rows out of new training data"
            )
    lines.append(f"  outputs: {metrics['run_dir']}")
    return "\n".join(lines)
