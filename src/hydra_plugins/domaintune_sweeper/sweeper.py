"""Hydra Sweeper on current Optuna: ask a trial, launch it through any Hydra launcher, tell the outcome."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from domaintune.errors import UserError, exit_with
from hydra_plugins.domaintune_sweeper.config import DomaintuneSweeperConf


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """`{"trainer.max_epochs": x}` from YAML and `{"trainer": {"max_epochs": y}}` from the command
    line are the same key; the later (command line) wins."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


class DomaintuneOptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        heartbeat_interval: int,
        sampler: dict[str, Any],
        pruner: dict[str, Any],
        params: dict | None,
    ):
        def plain(node) -> dict:
            return OmegaConf.to_container(node) if isinstance(node, DictConfig) else dict(node or {})

        # the typed config travels whole to the sweep loop; only the search space is normalized
        self.settings = DomaintuneSweeperConf(
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            heartbeat_interval=heartbeat_interval,
            sampler=plain(sampler),
            pruner=plain(pruner),
            params=flatten(plain(params)),
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from domaintune.sweep.runner import run_sweep

        try:
            run_sweep(self.config, self.launcher, self.settings, arguments)
        except UserError as error:
            exit_with(error)
