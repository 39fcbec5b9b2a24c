"""domaintune's Optuna sweeper for Hydra (`hydra/sweeper=domaintune_optuna`, via `sweep=optuna`)."""
