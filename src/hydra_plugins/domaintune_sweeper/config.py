"""The sweeper's settings as a typed record. Every default is in conf/hydra/sweeper/domaintune_optuna.yaml
(and the sampler and pruner in conf/hydra/sweeper/{sampler,pruner}/), stated there only: a field
here has none, so a key the YAML lacks is an error, not a second default. The keys of
hydra-optuna-sweeper (direction, study_name, storage, n_trials, n_jobs, sampler._target_, params,
custom_search_space) mean what they mean there, so its configs run unchanged."""

from dataclasses import dataclass
from typing import Any


@dataclass
class DomaintuneSweeperConf:
    study_name: str | None
    storage: str | None
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    heartbeat_interval: int
    grace_period: int | None
    max_retry: int
    wait_timeout: int
    storage_patience: int
    direction: Any
    objectives: list[str] | None
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    params: dict[str, Any] | None
    custom_search_space: str | None
    include_defaults: bool
