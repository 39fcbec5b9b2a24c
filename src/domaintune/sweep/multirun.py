"""Plain Hydra multiruns (the basic sweeper, a grid such as `-m module.lr=1e-4,3e-4`) get what an
Optuna sweep gets: one W&B group per multirun with one `trial-<n>` run per job, and a
`trials.csv` in the multirun folder that `domaintune compare` reads."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wandb_setting(key: str, default: Any = None) -> Any:
    """Resolver `${dt.multirun:<key>,<default>}` for the W&B logger: in a multirun, the group is the
    multirun folder, the job type `trial` and the name `trial-<job number>`; otherwise `default`.
    An Optuna sweep overrides all three with its study and trial number."""
    if not _in_multirun():
        return default
    hydra = HydraConfig.get()
    if key == "group":
        folder = Path(hydra.sweep.dir)  # multiruns/<date>/<time>: the group is "<date>_<time>"
        return f"{folder.parent.name}_{folder.name}"
    if key == "job_type":
        return "trial"
    if key == "name":
        return f"trial-{hydra.job.num}"
    raise KeyError(f"dt.multirun: unknown key '{key}'")


class MultirunTable(Callback):
    """After every job of a basic-sweeper multirun, rewrite `<multirun folder>/trials.csv`."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN or "BasicSweeper" not in str(hydra.sweeper.get("_target_", "")):
            return  # single runs have metrics.json; Optuna sweeps write their own trials.csv
        folder = Path(hydra.sweep.dir)
        run_dir = Path(hydra.runtime.output_dir)
        metrics_file = run_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        failed = job_return.status != JobStatus.COMPLETED
        row = {
            "number": hydra.job.num,
            "state": "fail" if failed else "complete",
            "value": None if failed else job_return._return_value,
            **{f"params.{o.split('=', 1)[0]}": o.split("=", 1)[1] for o in hydra.overrides.task if "=" in o},
            "epochs_run": metrics.get("epochs_run"),
            "seconds": metrics.get("time_s"),
            "note": f"{type(job_return._return_value).__name__}: {job_return._return_value}"[:1000] if failed else "",
            "worker": "",
            "run_dir": str(run_dir),
        }
        table = folder / "trials.csv"
        rows = [r for r in _read(table) if r["number"] != str(row["number"])] + [row]
        columns = list(dict.fromkeys(key for r in rows for key in r))
        partial = folder / f"trials.csv.{os.getpid()}.tmp"
        with open(partial, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda r: int(r["number"])))
        partial.replace(table)


def _read(table: Path) -> list[dict]:
    if not table.is_file():
        return []
    with open(table, newline="") as handle:
        return list(csv.DictReader(handle))
