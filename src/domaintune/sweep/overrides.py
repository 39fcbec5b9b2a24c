"""Sweep values as Hydra override text, both ways: a sampled value written as an override, and
hydra-optuna-sweeper's `hydra.sweeper.params.<key>=<expression>` passed through Hydra intact."""

from __future__ import annotations


def override_value(value) -> str:
    """A sampled value as Hydra override text (quoted strings, lower-case booleans, null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def quote_sweep_params(overrides: list[str]) -> list[str]:
    """`hydra.sweeper.params.peft.r=choice(4,8,16)` as hydra-optuna-sweeper users write it: Hydra
    refuses sweep syntax on its own keys, so pass the expression to the sweeper as a string."""
    quoted = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if key.lstrip("+").startswith("hydra.sweeper.params.") and sep:
            if value[:1] not in ("'", '"'):
                value = f"'{value}'" if "'" not in value else f'"{value}"'
            override = f"++{key.lstrip('+')}={value}"  # add or replace: dotted keys are new nodes
        quoted.append(override)
    return quoted


SWEEPER = "hydra_plugins.domaintune_sweeper.sweeper.DomaintuneOptunaSweeper"


def own_sweeper(overrides: list[str]) -> list[str]:
    """Ours is the sweeper wherever an Optuna sweeper is chosen: `hydra/sweeper=domaintune_optuna`,
    `hydra/sweeper=optuna`, or an `hparams_search=<file>` of lightning-hydra-template, whose files
    select `optuna` and name hydra-optuna-sweeper's class in `hydra.sweeper._target_` (a file's
    own keys beat its group choices, so only the command line can point that key at ours)."""
    chosen = any(
        o.lstrip("+") in ("hydra/sweeper=domaintune_optuna", "hydra/sweeper=optuna")
        or (o.lstrip("+").startswith("hparams_search=") and o.partition("=")[2] not in ("", "null"))
        for o in overrides
    )
    return [*overrides, f"hydra.sweeper._target_={SWEEPER}"] if chosen else overrides
