"""Which way the optimized metric improves. A kind declares its metrics' directions
(`TaskModule.metric_directions`); `mode` follows the optimized metric's when a run leaves it
null, and a mode that contradicts it is one line. Checkpointing, early stopping, pruning and a
sweep's direction all read the `mode` this settles."""

from __future__ import annotations

from omegaconf import open_dict

from domaintune import registry
from domaintune.errors import UserError


def declared(module_class: type, metric: str) -> str | None:
    """The direction `module_class` declares for `metric` (val/acc, test/loss, ...), or None."""
    return module_class.metric_directions.get(metric.split("/", 1)[-1])


def resolve_mode(cfg) -> str:
    """Set cfg.mode to the direction the run follows and return it. lightning-hydra-template's
    `val/<metric>_best` (the best value so far) is read as `val/<metric>`: the best epoch's value
    is what checkpointing keeps and what a sweep is told already."""
    module_class = registry.check_target("module", cfg.module._target_, "module")
    base = str(cfg.optimized_metric).removesuffix("_best")
    if base != cfg.optimized_metric and declared(module_class, base) is not None:
        cfg.optimized_metric = base
    metric, direction = cfg.optimized_metric, declared(module_class, cfg.optimized_metric)
    if cfg.get("mode") is None:
        if direction is None:
            known = ", ".join(f"val/{name}" for name in sorted(module_class.metric_directions))
            raise UserError(
                f"optimized_metric={metric}: {module_class.__name__} declares no direction for it (declared: "
                f"{known}); choose one of those, or set mode=min or mode=max"
            )
        with open_dict(cfg):
            cfg.mode = direction
    elif cfg.mode not in _words:  # before a sweep opens its study with it
        raise UserError(f"mode={cfg.mode!r}: input should be 'min' or 'max'; set mode=min, mode=max, or leave it out")
    elif direction is not None and cfg.mode != direction:
        raise UserError(
            f"mode={cfg.mode} contradicts optimized_metric={metric}, which is better when {_words[direction]}; "
            f"leave mode out (it follows the metric) or set mode={direction}"
        )
    return cfg.mode


_words = {"min": "lower", "max": "higher"}
