"""Hydra Sweeper on current Optuna: ask trials, launch them through any Hydra launcher, tell the outcome."""

from __future__ import annotations

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

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
    def __init__(self, **settings):
        def plain(node):
            return OmegaConf.to_container(node) if isinstance(node, DictConfig | ListConfig) else node

        # the typed config travels whole to the sweep loop; only the search space is normalized
        settings = {key: plain(value) for key, value in settings.items()}
        settings["params"] = flatten(settings.get("params") or {})
        self.settings = DomaintuneSweeperConf(**settings)

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
