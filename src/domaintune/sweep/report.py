"""What a sweep folder holds besides the study: trials.csv, best.yaml, plots, and the closing summary."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from domaintune.outputs import write_csv, write_json
from domaintune.sweep.overrides import override_value

log = logging.getLogger(__name__)


def _run_metrics(trial: optuna.trial.FrozenTrial) -> dict:
    path = Path(trial.user_attrs.get("run_dir", "")) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def rows(study: optuna.Study) -> list[dict]:
    """One row per trial: params, state, best metric, epochs run, time, why it failed or was pruned."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        metrics = _run_metrics(trial)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        out.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                **{f"params.{k}": v for k, v in trial.params.items()},
                "epochs_run": metrics.get("epochs_run", len(trial.intermediate_values) or None),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "note": trial.user_attrs.get("fail_reason")
                or trial.user_attrs.get("pruned_reason")
                or _retry_note(trial),
                "worker": trial.user_attrs.get("worker", ""),
                "run_dir": trial.user_attrs.get("run_dir", ""),
            }
        )
    return out


def _retry_note(trial: optuna.trial.FrozenTrial) -> str:
    if "retry_of" not in trial.user_attrs:
        return ""
    resumed = trial.user_attrs.get("resumed_from")
    return f"retry of trial {trial.user_attrs['retry_of']}" + (f", resumed from {resumed}" if resumed else "")


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def reproduce_overrides(trial: optuna.trial.FrozenTrial, fixed: list[str]) -> list[str]:
    kept = [o for o in fixed if not o.lstrip("+~").startswith(("sweep=", "hydra."))]  # the sweep's own settings
    return kept + [f"{k}={override_value(v)}" for k, v in trial.params.items()]


def test_best(study: optuna.Study, folder: Path) -> dict | None:
    """The best trial, and only it, tested once on the test split against the base model (the
    trials themselves run with test=false): `domaintune evaluate` on its run folder, kept in
    `<sweep>/best_test.json` so a resumed sweep tests again only when the best trial changed."""
    best = _best(study)
    run_dir = Path(best.user_attrs.get("run_dir", "")) if best is not None else None
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        return None
    path = folder / "best_test.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("trial") == best.number:
        return earlier
    from domaintune.evaluate import evaluate

    result, out = evaluate(str(run_dir), [])
    tested = {
        "trial": best.number,
        "validation": best.value,
        "test": result["test"],
        "verdict": result["verdict"],
        "evaluation": str(out),
    }
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # workers may finish at the same time
    write_json(partial, tested).replace(path)
    return tested


def optimism_line(tested: dict, metric: str) -> str:
    """The best trial's validation value (a maximum over trials: optimistic) beside its test value."""
    key = "test/" + metric.removeprefix("val/")
    test = tested["test"].get(key)
    return f"  selected on validation: {metric} {tested['validation']:.4f} (the best of the trials); " + (
        f"tested once: {key} {test:.4f}" if test is not None else "tested once"
    )


def write(
    study: optuna.Study,
    folder: Path,
    cfg: DictConfig,
    fixed: list[str],
    plots: bool = False,
    tested: dict | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "trials.csv", rows(study))  # workers write at the same time
    best = _best(study)
    if best is not None:
        _write_best_experiment(folder, study, best, cfg, fixed, tested)
    if plots:
        _write_plots(study, folder / "plots")


def _write_best_experiment(
    folder: Path, study: optuna.Study, best, cfg: DictConfig, fixed: list[str], tested: dict | None
) -> None:
    """`<sweep>/experiment/best.yaml` (linked as `<sweep>/best.yaml`): the best trial as an experiment config."""
    lines = [
        "# @package _global_",
        f"# Best trial {best.number} of study '{study.study_name}': {cfg.optimized_metric} = {best.value:.6g} on "
        "validation.",
    ]
    if tested is not None and tested["trial"] == best.number:
        lines += [
            "#" + optimism_line(tested, cfg.optimized_metric).removeprefix(" "),
            f"# Test verdict: {tested['verdict']['line']}",
        ]
    lines.append(f"# Reproduce: domaintune train --config-dir {folder} experiment=best")
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from domaintune.config import group_options

    overrides = reproduce_overrides(best, fixed)
    groups = [o for o in overrides if group_options(o.split("=")[0].lstrip("+~")) is not None]
    if groups:
        lines += ["defaults:"] + [f"  - override /{o.split('=')[0]}: {o.split('=', 1)[1]}" for o in groups]
    import yaml

    values: dict = {}
    for override in OverridesParser.create().parse_overrides([o for o in overrides if o not in groups]):
        node = values
        *parents, leaf = override.key_or_group.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = override.value()
    path = folder / "experiment" / "best.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + (yaml.safe_dump(values, sort_keys=True) if values else ""))
    try:
        (folder / "best.yaml").symlink_to(Path("experiment") / "best.yaml")
    except FileExistsError:
        pass


def _write_plots(study: optuna.Study, folder: Path) -> None:
    """Optimization history, parameter importances, intermediate values, parallel coordinates: PNG and HTML."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna import visualization as html
    from optuna.visualization import matplotlib as png

    folder.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate"):
        try:
            axes = getattr(png, f"plot_{name}")(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            partial = folder / f"{name}.{os.getpid()}"  # workers may draw at the same time: write, then rename
            figure.savefig(partial.with_suffix(".png"), dpi=100)
            plt.close(figure)
            getattr(html, f"plot_{name}")(study).write_html(partial.with_suffix(".html"), include_plotlyjs="cdn")
            for suffix in (".png", ".html"):
                partial.with_suffix(suffix).replace(folder / f"{name}{suffix}")
        except (
            ValueError,
            RuntimeError,
            ImportError,
            ZeroDivisionError,
        ) as exc:  # e.g. importances need 2+ complete trials
            log.info("plot %s skipped: %s", name, exc)


def summary(study: optuna.Study, folder: Path, fixed: list[str], metric: str, tested: dict | None = None) -> str:
    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in TrialState}
    lines = [f"sweep '{study.study_name}': " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)]
    best = _best(study)
    if best is None:
        lines.append("  no trial completed")
    else:
        lines.append(
            f"  best trial {best.number}: value {best.value:.4f}  "
            + "  ".join(f"{k}={v}" for k, v in best.params.items())
        )
        if tested is not None:
            lines += [optimism_line(tested, metric), f"  verdict on the test split: {tested['verdict']['line']}"]
        lines.append(f"  reproduce: domaintune train {' '.join(reproduce_overrides(best, fixed))}")
        lines.append(f"        or: domaintune train --config-dir {folder} experiment=best")
    lines.append(f"  sweep folder: {folder} (trials.csv, best.yaml, plots/, trial-*/)")
    return "\n".join(lines)
