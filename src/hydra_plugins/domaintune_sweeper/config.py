"""Structured config of the sweeper; every default is also spelled out in conf/sweep/optuna.yaml."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class DomaintuneSweeperConf:
    _target_: str = "hydra_plugins.domaintune_sweeper.sweeper.DomaintuneOptunaSweeper"
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 16
    n_jobs: int = 1
    max_failure_rate: float = 0.5
    heartbeat_interval: int = 60
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="domaintune_optuna", node=DomaintuneSweeperConf, provider="domaintune"
)
