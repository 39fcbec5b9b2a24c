"""Structured config of the sweeper; every default is also spelled out in conf/sweep/optuna.yaml,
and the sampler and pruner in conf/hydra/sweeper/{sampler,pruner}/. The keys of
hydra-optuna-sweeper (direction, study_name, storage, n_trials, n_jobs, sampler._target_, params,
custom_search_space) mean what they mean there, so its configs run unchanged."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class DomaintuneSweeperConf:
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    _target_: str = "hydra_plugins.domaintune_sweeper.sweeper.DomaintuneOptunaSweeper"
    _recursive_: bool = False  # the sampler and pruner stay configs: each trial builds its own seeded sampler
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 16
    n_jobs: int = 1
    max_failure_rate: float = 0.5
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int = 2
    wait_timeout: int = 3600
    direction: Any = None
    objectives: list[str] | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    custom_search_space: str | None = None
    include_defaults: bool = True


ConfigStore.instance().store(
    group="hydra/sweeper", name="domaintune_optuna", node=DomaintuneSweeperConf, provider="domaintune"
)
