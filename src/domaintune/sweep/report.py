"""What a sweep folder holds besides the study: trials.csv, best.yaml, plots, and the closing summary."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from domaintune import trials_table
from domaintune.outputs import write_json
from domaintune.runfolder import RunFolder
from domaintune.sweep.overrides import override_value
from domaintune.sweep.study import DEFAULTS

log = logging.getLogger(__name__)


def _run_metrics(trial: optuna.trial.FrozenTrial) -> dict:
    return RunFolder(trial.user_attrs.get("run_dir", "") or "/nonexistent").metrics()


def rows(study: optuna.Study, objectives: list[str] | None = None) -> list[dict]:
    """One row per trial: params, state, value (one column per objective), epochs run, time, and
    why it failed, was pruned or was retried."""
    retries = {t.user_attrs["retry_of"]: t for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}
    out = []
    for trial in study.get_trials(deepcopy=False):
        metrics = _run_metrics(trial)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        if objectives:
            values = {f"value.{name}": v for name, v in zip(objectives, trial.values or [None] * len(objectives))}
        else:
            values = {"value": trial.value}
        died = retries.get(trial.number)
        out.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                **values,
                **{f"params.{k}": v for k, v in trial.params.items()},
                "epochs_run": metrics.get("epochs_run", len(trial.intermediate_values) or None),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "note": trial.user_attrs.get("fail_reason")
                or (died.user_attrs.get("retry_reason", "") if died is not None else "")
                or trial.user_attrs.get("pruned_reason")
                or _retry_note(trial)
                or (f"repeat of trial {trial.user_attrs['repeat_of']}" if "repeat_of" in trial.user_attrs else "")
                or ("the task's defaults" if trial.user_attrs.get(DEFAULTS) else ""),
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
    except (ValueError, RuntimeError):  # none complete yet, or several objectives (a Pareto front)
        return None


def reproduce_overrides(trial: optuna.trial.FrozenTrial, fixed: list[str]) -> list[str]:
    kept = [o for o in fixed if not o.lstrip("+~").startswith(("sweep=", "hydra."))]  # the sweep's own settings
    return kept + [f"{k}={override_value(v)}" for k, v in trial.params.items()]


def test_best(study: optuna.Study, folder: Path, metric: str) -> dict | None:
    """The best trial, and only it, tested once on the test split against the base model (the
    trials themselves run with test=false): `domaintune evaluate` on its run folder, kept in
    `<sweep>/best_test.json` so a resumed sweep tests again only when the best trial changed.
    The trial of the task's defaults is tested once too, on the same rows, and the two are
    compared: did the search pay?"""
    best = _best(study)
    run_dir = best.user_attrs.get("run_dir") if best is not None else None
    if not run_dir or not RunFolder(run_dir).finished:
        return None
    path = folder / "best_test.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("trial") == best.number:
        tested = {k: v for k, v in earlier.items() if k not in ("defaults", "search")}
    else:
        from domaintune.evaluate import evaluate

        result, out = evaluate(run_dir, [])
        tested = {
            "trial": best.number,
            "validation": best.value,
            "test": result["test"],
            "verdict": result["verdict"],
            "evaluation": str(out),
        }
    # again on a resumed sweep: the defaults trial may have finished since (its test is reused)
    tested.update(_against_defaults(study, best, Path(tested["evaluation"]), metric, earlier.get("defaults")))
    write_json(path, tested)  # whole or not at all: workers may finish at the same time
    return tested


def tracker_summary(tested: dict | None) -> dict:
    """best_test.json as flat W&B summary keys of the sweep's own run."""
    if tested is None:
        return {}
    search = tested.get("search", {})
    return {
        "best/trial": tested["trial"],
        "best/validation": tested["validation"],
        **tested["test"],
        "verdict": tested["verdict"]["line"],
        "search": search.get("line"),
        **({"defaults/trial": tested["defaults"]["trial"]} if "defaults" in tested else {}),
        **(
            {
                "search/gain": search["gain"],
                "search/ci95_low": search["gain_ci95"][0],
                "search/ci95_high": search["gain_ci95"][1],
            }
            if "gain" in search
            else {}
        ),
    }


def _defaults_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The finished trial of the task's defaults (or of its retry), if the sweep has one."""
    from domaintune.sweep.study import FINISHED

    return next((t for t in study.trials if t.user_attrs.get(DEFAULTS) and t.state in FINISHED), None)


def _against_defaults(study, best, best_evaluation: Path, metric: str, earlier: dict | None) -> dict:
    """`defaults` (that trial, tested once: a resumed sweep reuses its evaluation) and `search`
    (the paired comparison and its sentence), for best_test.json."""
    from domaintune import verdict
    from domaintune.errors import UserError
    from domaintune.evaluate import evaluate

    defaults = _defaults_trial(study)
    if defaults is None:
        return {"search": {"line": "no finished trial of the task's defaults to compare with"}}
    if defaults.number == best.number:
        return {"search": {"line": f"the task's defaults (trial {defaults.number}) were the best trial"}}
    if defaults.state != TrialState.COMPLETE:
        line = f"the task's defaults (trial {defaults.number}) were pruned on validation; not tested"
        return {"search": {"line": line}}
    if earlier and earlier.get("trial") == defaults.number:
        tested = earlier
    else:
        try:  # the best trial's test stands whatever happens to this one
            result, out = evaluate(defaults.user_attrs.get("run_dir", "/nonexistent"), [])
        except UserError as error:
            return {"search": {"line": f"not compared: the defaults trial could not be tested ({error})"}}
        tested = {"trial": defaults.number, "validation": defaults.value, "test": result["test"]}
        tested["evaluation"] = str(out)
    best_rows, defaults_rows = (verdict.load_scored(Path(p)) for p in (best_evaluation, tested["evaluation"]))
    name = metric.removeprefix("val/")
    name = name if name in best_rows else next(iter(best_rows), None)
    if name is None or name not in defaults_rows:
        return {"defaults": tested, "search": {"line": "the trials' test stages keep no per-row scores to compare"}}
    if verdict.scored_rows(Path(tested["evaluation"])) != verdict.scored_rows(best_evaluation):
        return {"defaults": tested, "search": {"line": "not compared: the two trials were tested on different rows"}}
    compared = verdict.compare_scored(name, best_rows[name], defaults_rows[name])
    compared["best"], compared["defaults"] = compared.pop("fine_tuned"), compared.pop("base")
    return {"defaults": tested, "search": {"line": verdict.search_line(compared), **compared}}


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
    objectives: list[str] | None = None,
    plots: bool = False,
    tested: dict | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    trials_table.write(folder, rows(study, objectives))  # workers write at the same time
    if objectives:
        _write_pareto_experiments(folder, study, cfg, fixed, objectives)
    elif (best := _best(study)) is not None:
        _write_best_experiment(folder, study, best, cfg, fixed, tested)
    if plots:
        _write_plots(study, folder / "plots", objectives)


def _write_pareto_experiments(
    folder: Path, study: optuna.Study, cfg: DictConfig, fixed: list[str], objectives
) -> None:
    """One experiment per trial on the Pareto front, `experiment/pareto-<n>.yaml`; files of trials
    that left the front are removed."""
    front = {t.number: t for t in study.best_trials}
    for old in (folder / "experiment").glob("pareto-*.yaml"):
        if int(old.stem.removeprefix("pareto-")) not in front:
            old.unlink()
    for number, trial in front.items():
        values = ", ".join(f"{name} = {value:.6g}" for name, value in zip(objectives, trial.values))
        header = [
            f"# Trial {number} of study '{study.study_name}', on the Pareto front of {', '.join(objectives)} "
            f"(validation): {values}.",
            "# Test the one you choose, once: domaintune evaluate run="
            + trial.user_attrs.get("run_dir", "<its folder>"),
            f"# Reproduce: domaintune train --config-dir {folder} experiment=pareto-{number}",
        ]
        _write_experiment(folder / "experiment" / f"pareto-{number}.yaml", header, reproduce_overrides(trial, fixed))


def _write_best_experiment(
    folder: Path, study: optuna.Study, best, cfg: DictConfig, fixed: list[str], tested: dict | None
) -> None:
    """`<sweep>/experiment/best.yaml` (linked as `<sweep>/best.yaml`): the best trial as an experiment config."""
    lines = [
        f"# Best trial {best.number} of study '{study.study_name}': {cfg.optimized_metric} = {best.value:.6g} on "
        "validation.",
    ]
    if tested is not None and tested["trial"] == best.number:
        lines += [
            "#" + optimism_line(tested, cfg.optimized_metric).removeprefix(" "),
            f"# Test verdict: {tested['verdict']['line']}",
            f"# Search vs defaults: {tested['search']['line']}",
        ]
    lines.append(f"# Reproduce: domaintune train --config-dir {folder} experiment=best")
    _write_experiment(folder / "experiment" / "best.yaml", lines, reproduce_overrides(best, fixed))
    try:
        (folder / "best.yaml").symlink_to(Path("experiment") / "best.yaml")
    except FileExistsError:
        pass


def _write_experiment(path: Path, header: list[str], overrides: list[str]) -> None:
    """Overrides as an experiment config: group choices in its defaults list, values as YAML."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from domaintune.config import group_options

    lines = ["# @package _global_", *header]
    groups = [o for o in overrides if group_options(o.split("=")[0].lstrip("+~")) is not None]
    if groups:
        lines += ["defaults:"] + [f"  - override /{o.split('=')[0]}: {o.split('=', 1)[1]}" for o in groups]
    values: dict = {}
    for override in OverridesParser.create().parse_overrides([o for o in overrides if o not in groups]):
        node = values
        *parents, leaf = override.key_or_group.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = override.value()
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + (yaml.safe_dump(values, sort_keys=True) if values else ""))


def _write_plots(study: optuna.Study, folder: Path, objectives: list[str] | None = None) -> None:
    """Optimization history, parameter importances, intermediate values, parallel coordinates: PNG
    and HTML; with several objectives, the Pareto front."""
    import warnings

    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # trials that tie (small sweeps): PED-ANOVA's equal importances, matplotlib's flat axis
        warnings.filterwarnings("ignore", message="Target and region quantiles select the same set of trials")
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high ylims")
        _draw(study, folder, objectives)


def _draw(study: optuna.Study, folder: Path, objectives: list[str] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna import visualization as html
    from optuna.visualization import matplotlib as png

    if objectives:
        plots = {"pareto_front": {"target_names": objectives}}
    else:
        plots = {
            name: {}
            for name in ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate")
        }
    for name, options in plots.items():
        try:
            axes = getattr(png, f"plot_{name}")(study, **options)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            partial = folder / f"{name}.{os.getpid()}"  # workers may draw at the same time: write, then rename
            # bbox_inches: fits legends that tight_layout could not (it warned with a thousand trials)
            figure.savefig(partial.with_suffix(".png"), dpi=100, bbox_inches="tight")
            plt.close(figure)
            getattr(html, f"plot_{name}")(study, **options).write_html(
                partial.with_suffix(".html"), include_plotlyjs="cdn"
            )
            for suffix in (".png", ".html"):
                partial.with_suffix(suffix).replace(folder / f"{name}{suffix}")
        except (
            ValueError,
            RuntimeError,
            ImportError,
            ZeroDivisionError,
        ) as exc:  # e.g. importances need 2+ complete trials
            log.info("plot %s skipped: %s", name, exc)


def searched(space: dict) -> str:
    """The search space in a line: `module.lr 0.0001..0.01 (log), trainer.max_epochs 1..6`."""
    from optuna.distributions import CategoricalDistribution

    parts = []
    for key, d in space.items():
        if isinstance(d, CategoricalDistribution):
            parts.append(f"{key} one of {', '.join(map(str, d.choices))}")
        else:
            step = f" step {d.step}" if getattr(d, "step", None) not in (None, 1) else ""
            parts.append(f"{key} {d.low:g}..{d.high:g}{' (log)' if d.log else ''}{step}")
    return ", ".join(parts)


def summary(
    study: optuna.Study,
    folder: Path,
    fixed: list[str],
    metric: str,
    tested: dict | None = None,
    objectives: list[str] | None = None,
    space: dict | None = None,
) -> str:
    counts = {state.name.lower(): sum(t.state == state for t in study.trials) for state in TrialState}
    lines = [f"sweep '{study.study_name}': " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)]
    if space:
        lines.append(f"  searched: {searched(space)}")
    if objectives:
        front = study.best_trials
        lines.append(f"  Pareto front of {', '.join(objectives)} on validation: {len(front)} trial(s)")
        for trial in sorted(front, key=lambda t: t.number):
            values = "  ".join(f"{name}={value:.4g}" for name, value in zip(objectives, trial.values))
            lines.append(f"    trial {trial.number}: {values}  ->  experiment=pareto-{trial.number}")
        lines.append(
            f"  choose one, reproduce it with domaintune train --config-dir {folder} experiment=pareto-<n>, "
            "and test it once with domaintune evaluate run=<its folder>"
        )
    elif (best := _best(study)) is None:
        lines.append("  no trial completed")
    else:
        lines.append(
            f"  best trial {best.number}: value {best.value:.4f}  "
            + "  ".join(f"{k}={v}" for k, v in best.params.items())
        )
        if tested is not None:
            lines += [
                optimism_line(tested, metric),
                f"  verdict on the test split: {tested['verdict']['line']}",
                f"  search vs defaults on the test split: {tested['search']['line']}",
            ]
        lines.append(f"  reproduce: domaintune train {' '.join(reproduce_overrides(best, fixed))}")
        lines.append(f"        or: domaintune train --config-dir {folder} experiment=best")
    lines.append(
        f"  sweep folder: {folder} (trials.csv, {'experiment/' if objectives else 'best.yaml'}, plots/, trial-*/)"
    )
    return "\n".join(lines)
