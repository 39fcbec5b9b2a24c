"""hydra-optuna-sweeper's search-space syntax on current Optuna:
`interval(a, b)`, `int(interval(a, b))`, `tag(log, interval(a, b))`, `range(a, b[, step])`
(stop excluded, as in Hydra and Python), `choice(x, y, ...)`; a plain value stays fixed."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from domaintune.errors import UserError


def distribution(override: Override) -> BaseDistribution | str:
    """The Optuna distribution an override describes, or its fixed value as an override string."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):
        step = value.step if value.step is not None else 1
        if any(isinstance(v, float) for v in (value.start, value.stop, step)):
            values = list(override.sweep_iterator())
            return FloatDistribution(values[0], values[-1], step=step)
        values = list(range(int(value.start), int(value.stop), int(step)))
        return IntDistribution(values[0], values[-1], step=int(step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise UserError(f"sweep parameter '{override.input_line}' is not supported; use interval, range or choice")


def parse(params: dict[str, Any], arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Search space from `hydra.sweeper.params` and command-line sweeps (the command line wins);
    returns the distributions and the fixed overrides every trial gets."""
    parser = OverridesParser.create()
    lines = {key: f"{key}={value}" for key, value in (params or {}).items()}
    try:
        for override in parser.parse_overrides(arguments):
            lines[override.get_key_element()] = override.input_line
        parsed = parser.parse_overrides(list(lines.values()))
    except Exception as exc:
        raise UserError(f"sweep parameters: {exc}".splitlines()[0]) from None
    space, fixed = {}, []
    for override in parsed:
        found = distribution(override)
        if isinstance(found, BaseDistribution):
            space[override.get_key_element()] = found
        else:
            fixed.append(f"{override.get_key_element()}={found}")
    return space, fixed
