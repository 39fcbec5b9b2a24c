"""`domaintune compare`: runs and sweep trials in one table, with a warning when they used different data."""

from __future__ import annotations

from pathlib import Path

import yaml

from domaintune import trials_table
from domaintune.errors import UserError
from domaintune.runfolder import RunFolder


def _run_row(folder: Path, source: str, name: str, state: str = "complete") -> dict:
    metrics = RunFolder(folder).metrics()
    overrides_file = folder / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
    shown = [o for o in overrides or [] if not o.startswith(("trial.", "logger.wandb.", "hydra."))]
    best = metrics.get("best", {})
    return {
        "source": source,
        "run": name,
        "state": state,
        "metric": best.get("metric", ""),
        "value": best.get("value"),
        "epochs": metrics.get("epochs_run"),
        "seconds": metrics.get("time_s"),
        "data": metrics.get("data", {}).get("fingerprint", ""),
        "settings": " ".join(shown),
    }


def collect(paths: list[str]) -> list[dict]:
    """Rows from sweep folders (trials.csv), run folders (metrics.json) and folders holding runs."""
    rows = []
    for raw in paths:
        path = Path(raw)
        if trials_table.holds_table(path):
            for trial in trials_table.read(path):
                row = _run_row(Path(trial["run_dir"]), path.name, f"trial-{trial['number']}", trial["state"])
                if trial.get("value"):  # several objectives have value.<objective> columns instead
                    row["value"] = float(trial["value"])
                row["settings"] = " ".join(
                    f"{k.removeprefix('params.')}={v}" for k, v in trial.items() if k.startswith("params.")
                )
                row["seconds"] = trial["seconds"] or row["seconds"]
                rows.append(row)
        elif RunFolder(path).finished:
            rows.append(_run_row(path, path.parent.name, path.name))
        elif runs := RunFolder.finished_under(path):
            rows += [_run_row(r.path, str(r.path.parent.relative_to(path.parent)), r.path.name) for r in runs]
        else:
            raise UserError(
                f"{path}: not a sweep folder (trials.csv), a run folder (metrics.json) or a folder of runs"
            )
    return rows


def _cell(value, column: str = "") -> str:
    if column == "seconds" and value not in (None, ""):
        return f"{float(value):.1f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def table(rows: list[dict]) -> str:
    columns = ["source", "run", "state", "metric", "value", "epochs", "seconds", "data", "settings"]
    cells = [columns] + [[_cell(row[c], c) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    fingerprints = sorted({row["data"] for row in rows if row["data"]})
    if len(fingerprints) > 1:
        lines.append(
            f"note: these runs used {len(fingerprints)} different data sets (fingerprints {', '.join(fingerprints)}); "
            "their scores are not directly comparable"
        )
    return "\n".join(lines)
