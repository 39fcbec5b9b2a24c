"""`domaintune learning-curve`: is my data enough? The task's defaults trained, and the base
model's probe fitted, on nested, stratified fractions of the training rows; both scored on the
same validation rows with 95% intervals; where fine-tuning overtakes the probe, and what the
last doubling of data gained. Each fraction is an ordinary run folder (`test=false`: no test
row is touched); a finished one is reused when the command runs again on the same folder."""

from __future__ import annotations

from pathlib import Path

from domaintune import verdict
from domaintune.errors import UserError
from domaintune.outputs import write_json
from domaintune.runfolder import RunFolder

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def learning_curve(overrides: list[str], out: Path, fractions: tuple[float, ...] = FRACTIONS) -> dict:
    """Train and score every fraction in `out`, then write data_curve.{json,png,html}."""
    from domaintune import config
    from domaintune.train import train

    if sorted(set(fractions)) != list(fractions) or not all(0 < f <= 1 for f in fractions) or len(fractions) < 2:
        raise UserError(f"fractions={list(fractions)}: give two or more increasing shares in (0, 1], e.g. 0.25,0.5,1")
    from domaintune import tracking

    group = [f"logger.wandb.group={out.name}"] if _logs_to_wandb(overrides) else []  # one W&B group
    points = []
    for fraction in fractions:
        run = out / f"fraction-{fraction:g}"
        if not RunFolder(run).finished:
            run.mkdir(parents=True, exist_ok=True)
            cfg = config.compose_job([*overrides, f"data.train_fraction={fraction}", "test=false", *group], run, out)
            train(cfg)
        points.append(_scored_on_validation(run, fraction))
    curve = _curve(points)
    write_json(out / "data_curve.json", curve)
    _plot(curve, out)
    tracking.record_outcome(
        config.compose_job([*overrides, *group], out, out), out.name, "learning_curve", out, _flat(curve)
    )
    return curve


def _flat(curve: dict) -> dict:
    """The curve as flat W&B summary keys: curve/<train rows>/fine_tuned, .../probe, their intervals."""
    flat = {"curve/line": curve["line"], "curve/last_step/gain": curve["last_step"]["gain"]}
    for point in curve["points"]:
        for model in ("fine_tuned", "probe"):
            low, high = point[f"{model}_ci95"]
            flat |= {f"curve/{point['train_rows']}/{model}": point[model]}
            flat |= {
                f"curve/{point['train_rows']}/{model}_ci95_low": low,
                f"curve/{point['train_rows']}/{model}_ci95_high": high,
            }
    return flat


def _logs_to_wandb(overrides: list[str]) -> bool:
    return not any(o in ("logger=none", "logger=csv") for o in overrides)


def _scored_on_validation(run: Path, fraction: float) -> dict:
    """The run's best weights and its probe (fitted on the same fraction of rows) scored on the
    validation rows, as the verdict scores test rows: per-row columns for both, and the values."""
    from domaintune.runs import load_run, test_trainer

    finished = load_run(run)
    finished.datamodule.setup("fit")
    datamodule, module = finished.datamodule, finished.module
    datamodule.datasets = {**datamodule.datasets, "test": datamodule.datasets["val"]}
    test_trainer(finished.cfg, enable_progress_bar=False).test(module, datamodule=datamodule, verbose=False)
    metric = finished.cfg.optimized_metric.removeprefix("val/")
    if metric not in module.scored:
        raise UserError(f"learning-curve: a {type(module).__name__} run has no per-row {metric} to compare")
    tuned, base = module.scored[metric], module.base_scored[metric]
    return {
        "fraction": fraction,
        "train_rows": len(datamodule.datasets["train"]),
        "run": str(run),
        "metric": metric,
        "fine_tuned": round(float(verdict.STATISTICS[tuned.statistic](*tuned.columns)), 6),
        "fine_tuned_ci95": verdict.interval(tuned.statistic, tuned.columns),
        "probe": round(float(verdict.STATISTICS[base.statistic](*base.columns)), 6),
        "probe_ci95": verdict.interval(base.statistic, base.columns),
        "difference": verdict.compare_scored(metric, tuned, base),
        "scored": tuned,
    }


def _curve(points: list[dict]) -> dict:
    """The points, where fine-tuning overtakes the probe, and what the last doubling gained: the
    last fraction's fine-tuned model against the one before it, on the same validation rows."""
    metric = points[0]["metric"]
    ahead = next((p for p in points if p["difference"]["gain_ci95"][0] > 0), None)
    overtakes = (
        f"fine-tuning overtakes the probe from {ahead['train_rows']} train rows ({ahead['fraction']:.0%})"
        if ahead
        else "fine-tuning does not overtake the probe at any size tried"
    )
    last, before = points[-1], points[-2]
    gained = verdict.compare_scored(metric, last.pop("scored"), before["scored"])
    low, high = gained["gain_ci95"]
    flat = "more data is likely to pay" if low > 0 else "the curve has flattened"
    words = (
        f"{overtakes}; the last step, {before['train_rows']} -> {last['train_rows']} rows, gained "
        f"{gained['gain']:+.3f} {metric} (95% CI {low:.3f} to {high:.3f}): {flat}"
    )
    for point in points:
        point.pop("scored", None)
    return {"metric": f"val/{metric}", "points": points, "last_step": gained, "line": words}


def _plot(curve: dict, out: Path) -> None:
    """data_curve.png (matplotlib) and data_curve.html (plotly): both models' validation metric
    against the train rows, with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    rows = [p["train_rows"] for p in curve["points"]]
    figure, axis = plt.subplots(figsize=(6, 4))
    html = go.Figure()
    for key, label in (("fine_tuned", "fine-tuned"), ("probe", "base model (probe)")):
        values = [p[key] for p in curve["points"]]
        low = [p[key] - p[f"{key}_ci95"][0] for p in curve["points"]]
        high = [p[f"{key}_ci95"][1] - p[key] for p in curve["points"]]
        axis.errorbar(rows, values, yerr=[low, high], marker="o", capsize=3, label=label)
        html.add_trace(
            go.Scatter(
                x=rows,
                y=values,
                name=label,
                error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
            )
        )
    axis.set(xscale="log", xlabel="train rows", ylabel=curve["metric"], title="validation score by training rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "data_curve.png", dpi=100)
    plt.close(figure)
    html.update_layout(xaxis_type="log", xaxis_title="train rows", yaxis_title=curve["metric"], title=curve["line"])
    html.write_html(out / "data_curve.html", include_plotlyjs="cdn")
