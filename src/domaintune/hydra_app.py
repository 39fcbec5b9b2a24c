"""The Hydra application behind `domaintune train`. It is also a script of its own because
Lightning's DDP launcher starts the other ranks by re-running `sys.argv[0]` with the same
overrides."""

import hydra
from omegaconf import DictConfig

from domaintune.config import config_dir, register_resolvers
from domaintune.errors import UserError, exit_with

register_resolvers()


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from domaintune.train import train

    try:
        return train(cfg)
    except UserError as error:
        if cfg.trial.id is not None:
            raise  # an Optuna trial: the sweeper records it on the trial and stops the sweep
        exit_with(error)


if __name__ == "__main__":
    main()
