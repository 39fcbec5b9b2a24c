"""A hydra-optuna-sweeper `custom_search_space` function: a parameter whose range depends on
another one (the head learns at 5 to 20 times the encoder's rate)."""


def head_lr_from_lr(cfg, trial) -> None:
    lr = trial.params["module.lr"]
    trial.suggest_float("module.head_lr", 5 * lr, 20 * lr, log=True)
