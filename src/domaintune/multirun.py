"""Every multirun's jobs are named one way: one W&B group per multirun (a sweeper's study, or the
multirun folder) with one `trial-<job number>` run per job. Plain Hydra multiruns (the basic
sweeper, a grid such as `-m module.lr=1e-4,3e-4`) also get a `trials.csv` in the multirun
folder, as a sweep does, that `domaintune compare` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from domaintune import trials_table
from domaintune.runfolder import RunFolder


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wandb_setting(key: str, default: Any = None) -> Any:
    """Resolver `${dt.multirun:<key>,<default>}` for the W&B logger: in a multirun, the group is the
    sweeper's study (a sweeper with a `study_name`) or the multirun folder, the job type `trial` and
    the name `trial-<job number>` (a sweep numbers its jobs by trial); otherwise `default`."""
    if not _in_multirun():
        return default
    hydra = HydraConfig.get()
    if key == "group":
        study = hydra.sweeper.get("study_name")
        folder = Path(hydra.sweep.dir)  # multiruns/<date>/<time>: the group is "<date>_<time>"
        return study or f"{folder.parent.name}_{folder.name}"
    if key == "job_type":
        return "trial"
    if key == "name":  # a sweep's trial folder is trial-<trial number>; a batch of trials may skip numbers
        return Path(hydra.runtime.output_dir).name if hydra.sweeper.get("study_name") else f"trial-{hydra.job.num}"
    raise KeyError(f"dt.multirun: unknown key '{key}'")


class MultirunTable(Callback):
    """After every job of a basic-sweeper multirun, rewrite `<multirun folder>/trials.csv`."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN or "BasicSweeper" not in str(hydra.sweeper.get("_target_", "")):
            return  # single runs have metrics.json; Optuna sweeps write their own trials.csv
        folder = Path(hydra.sweep.dir)
        run_dir = Path(hydra.runtime.output_dir)
        metrics = RunFolder(run_dir).metrics()
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
        trials_table.write(folder, [r for r in trials_table.read(folder) if r["number"] != str(row["number"])] + [row])
