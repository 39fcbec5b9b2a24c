"""The Hydra application behind `domaintune train`. It is also a script of its own because
Lightning's DDP launcher starts the other ranks by re-running `sys.argv[0]` with the same
overrides."""

import hydra
from omegaconf import DictConfig

from domaintune.config import CONFIG_PACKAGE, register_resolvers
from domaintune.errors import UserError, exit_with

register_resolvers()


@hydra.main(config_path=CONFIG_PACKAGE, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from domaintune.runfolder import RunFolder
    from domaintune.train import train

    try:
        with RunFolder(cfg.paths.run_dir).recording_outcome():
            return train(cfg)
    except UserError as error:
        if _sweeper_records_failures():
            raise  # a sweeper gets the job's exception in its JobReturn, records it and stops the sweep
        exit_with(error)


def _sweeper_records_failures() -> bool:
    """Hydra's basic sweeper re-raises a job's exception with a traceback, so a bad input ends a
    plain run or grid here, in one line; any other sweeper decides itself."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN and "BasicSweeper" not in str(hydra.sweeper.get("_target_", ""))


if __name__ == "__main__":
    main()
