"""Kinds of task, each declared once, in the manner of peft's `register_peft_method`: one
registration names a kind's module and datamodule classes, the commands a finished run of it
serves, the metrics it logs with their directions, its base-model opponent and its export
format. Commands ask the registration of a run's module class; none compares class names or
`pipeline_tag` strings.

A module file registers its kind where its class is defined (`register_kind(Kind(...))` after
the class); a plugin does the same in its own file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from domaintune.errors import PluginError

# What any finished run answers; a kind declares what it serves beyond these.
COMMANDS = frozenset({"train", "evaluate", "init_from"})
OPTIONAL = frozenset({"predict", "generate", "export"})
USES = {
    "predict": 'label texts with `domaintune predict run={run} text="..."`',
    "generate": 'answer prompts with `domaintune generate run={run} prompt="..."`',
}


@dataclass(frozen=True)
class Kind:
    name: str
    module: type  # a domaintune.api.TaskModule subclass
    datamodule: type  # the domaintune.api.TaskDataModule subclass its data comes through (or a base of it)
    metrics: Mapping[str, str]  # metric (without the split) -> "min" or "max": what `mode` follows
    opponent: str  # the base model the verdict compares with, in words
    serves: frozenset[str] = field(default_factory=frozenset)  # of OPTIONAL
    export: str | None = None  # the Hugging Face task (`pipeline_tag`) of an exported model
    base: bool = False  # `use=base`: predict and export with the base model's opponent (the probe it keeps)

    def __post_init__(self):
        unknown = set(self.serves) - OPTIONAL
        if unknown:
            raise PluginError(f"kind '{self.name}' serves {sorted(unknown)}; a kind serves some of {sorted(OPTIONAL)}")
        bad = {m: d for m, d in self.metrics.items() if d not in ("min", "max")}
        if bad:
            raise PluginError(f"kind '{self.name}': metric directions must be 'min' or 'max', not {bad}")

    def commands(self) -> frozenset[str]:
        return COMMANDS | self.serves | ({"export"} if self.export else frozenset())


_KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Declare a kind; registering the same module class twice under one name is harmless (a
    module imported again), two different kinds under one name or one class is an error."""
    earlier = _KINDS.get(kind.name)
    if earlier is not None and earlier.module.__qualname__ != kind.module.__qualname__:
        raise PluginError(f"kind '{kind.name}' is registered twice: by {earlier.module} and by {kind.module}")
    _KINDS[kind.name] = kind
    return kind


def registered() -> dict[str, Kind]:
    """Every kind declared so far, by name (importing a module class declares its kind)."""
    return dict(_KINDS)


def of_module(module_class: type) -> Kind:
    """The kind a module class declares (the nearest registered class in its MRO)."""
    for cls in module_class.__mro__:
        for kind in _KINDS.values():
            if kind.module is cls:
                return kind
    raise PluginError(
        f"{module_class.__module__}.{module_class.__qualname__} declares no kind; register one with "
        "domaintune.kinds.register_kind(Kind(...)) next to the class (see docs/plugins.md)"
    )
