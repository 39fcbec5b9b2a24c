"""Which way the optimized metric improves. A kind declares its metrics' directions in its
registration (`domaintune.kinds`); `mode` follows the optimized metric's when a run leaves it
null, and a mode that contradicts it is one line. Checkpointing, early stopping, pruning and a
sweep's direction all read the `mode` this settles."""

from __future__ import annotations

import math

from omegaconf import open_dict

from domaintune import kinds, registry
from domaintune.errors import UserError


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` becomes the best so far: strictly better than `best` (the earlier of two
    equal epochs stays best), anything against none yet, and a NaN is the worst (never better,
    replaced by anything), as Lightning's ModelCheckpoint ranks. The epoch whose weights a run
    keeps and the epoch metrics.json and a sweep call best are both chosen by this."""
    if best is None or math.isnan(best):
        return True
    return value > best if mode == "max" else value < best


def declared(module_class: type, metric: str) -> str | None:
    """The direction `module_class`'s kind declares for `metric` (val/acc, test/loss, ...), or None."""
    return kinds.of_module(module_class).metrics.get(metric.split("/", 1)[-1])


def resolve_mode(cfg) -> str:
    """Set cfg.mode to the direction the run follows and return it. lightning-hydra-template's
    `val/<metric>_best` (the best value so far) is read as `val/<metric>`: the best epoch's value
    is what checkpointing keeps and what a sweep is told already."""
    module_class = registry.check_target("module", cfg.module._target_, "module")
    # the module the data may need instead (`multi_label`) declares its own metrics
    classes = [module_class] + [
        registry.check_target("module", cfg.module[name]._target_, f"module.{name}")
        for name in registry.module_variants(cfg.module)
    ]

    def direction_of(metric: str) -> str | None:
        return next((found for c in classes if (found := declared(c, metric)) is not None), None)

    base = str(cfg.optimized_metric).removesuffix("_best")
    if base != cfg.optimized_metric and direction_of(base) is not None:
        cfg.optimized_metric = base
    metric, direction = cfg.optimized_metric, direction_of(cfg.optimized_metric)
    if cfg.get("mode") is None:
        if direction is None:
            known = "; ".join(
                f"{kind.name}: " + ", ".join(f"val/{name}" for name in sorted(kind.metrics))
                for kind in (kinds.of_module(c) for c in classes)
            )
            raise UserError(
                f"optimized_metric={metric}: no kind of this module declares a direction for it ({known}); choose "
                "one of those, or set mode=min or mode=max"
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
