"""Plugin registry: LightningModules and LightningDataModules by name.

Two sources produce the same `Plugin` records: the entry-point groups
`domaintune.modules` / `domaintune.datamodules` of installed packages, and plugin folders
(`<folder>/<name>/__init__.py` exposing `MODULES` / `DATAMODULES` dicts of name -> class):
the built-in domains, packaged as `domaintune_plugins`, and the user's `./plugins`. A plugin
class implements its kind's contract (`domaintune.api`). Configs still build objects by
`_target_`; the registry is for names, listing, checks and scaffolding.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from domaintune.errors import PluginError

KINDS = {"module": "domaintune.modules", "datamodule": "domaintune.datamodules"}
LOCAL_ATTRIBUTE = {"module": "MODULES", "datamodule": "DATAMODULES"}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# The repository's plugins/ folder, packaged under a name no user project has (a checkout links
# src/domaintune_plugins to it), so a project's own `plugins` package never shadows ours.
BUILTIN_PACKAGE = "domaintune_plugins"


@dataclass(frozen=True)
class Plugin:
    name: str
    kind: str
    obj: type
    source: str

    @property
    def target(self) -> str:
        """The dotted path a config's `_target_` uses for this plugin."""
        return f"{self.obj.__module__}.{self.obj.__qualname__}"


def builtin_dir() -> Path:
    """The folder of the built-in domain plugins (legal, support, marketing)."""
    return Path(importlib.import_module(BUILTIN_PACKAGE).__file__).resolve().parent


def plugin_dirs() -> list[Path]:
    """The user's plugin folders: $DOMAINTUNE_PLUGINS (path list), then ./plugins (in our own
    checkout that is the built-in folder, which is imported as its package instead)."""
    candidates = [Path(p) for p in os.environ.get("DOMAINTUNE_PLUGINS", "").split(os.pathsep) if p]
    candidates += [Path.cwd() / "plugins"]
    seen, dirs = {builtin_dir()}, []
    for path in candidates:
        resolved = path.resolve()
        if resolved.is_dir() and resolved not in seen:
            seen.add(resolved)
            dirs.append(resolved)
    return dirs


def add_plugin_folders() -> list[Path]:
    """Make `plugins.<name>...` targets importable: each plugin folder's parent goes on sys.path."""
    dirs = plugin_dirs()
    for root in dirs:
        if str(root.parent) not in sys.path:
            sys.path.insert(0, str(root.parent))
    return dirs


def _base_class(kind: str) -> type:
    from domaintune.api import TaskDataModule, TaskModule

    return TaskModule if kind == "module" else TaskDataModule


def _check(kind: str, name: str, obj: object, source: str) -> Plugin:
    if not NAME_PATTERN.match(name):
        raise PluginError(f"{kind} plugin '{name}' from {source}: names are lower-case letters, digits and '_'")
    if not (isinstance(obj, type) and issubclass(obj, _base_class(kind))):
        raise PluginError(
            f"{kind} plugin '{name}' from {source} is {obj!r}, not a {_base_class(kind).__name__} subclass "
            "(domaintune.api)"
        )
    return Plugin(name=name, kind=kind, obj=obj, source=source)


def _from_entry_points() -> list[Plugin]:
    plugins = []
    for kind, group in KINDS.items():
        for ep in entry_points(group=group):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown package"
            source = f"entry point {ep.value} ({dist})"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others' names
                raise PluginError(
                    f"{kind} plugin '{ep.name}' from {source} failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            plugins.append(_check(kind, ep.name, obj, source))
    return plugins


def _from_folder(root: Path, package_name: str) -> list[Plugin]:
    """Import every `root/<name>/__init__.py` as `<package_name>.<name>` and read its name -> class dicts."""
    plugins = []
    for folder in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        source = f"plugin folder {folder}"
        module_name = f"{package_name}.{folder.name}"
        try:
            package = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"plugin folder {folder} failed to import: {type(exc).__name__}: {exc} (fix it or move it out of "
                f"{root})"
            ) from exc
        if Path(package.__file__).resolve().parent != folder:
            raise PluginError(
                f"plugin folder {folder} is shadowed by {Path(package.__file__).parent} of the same name; rename one"
            )
        for kind, attribute in LOCAL_ATTRIBUTE.items():
            for name, obj in getattr(package, attribute, {}).items():
                plugins.append(_check(kind, name, obj, source))
    return plugins


@cache
def discover() -> dict[tuple[str, str], Plugin]:
    """All plugins keyed by (kind, name); two different classes under one name is an error."""
    found: dict[tuple[str, str], Plugin] = {}
    candidates = _from_entry_points() + _from_folder(builtin_dir(), BUILTIN_PACKAGE)
    for root in add_plugin_folders():
        candidates += _from_folder(root, root.name)
    for plugin in candidates:
        key = (plugin.kind, plugin.name)
        if key in found and found[key].obj is not plugin.obj:
            raise PluginError(
                f"{plugin.kind} plugin name '{plugin.name}' is registered twice: by {found[key].source} "
                f"and by {plugin.source}; rename one of them"
            )
        found.setdefault(key, plugin)
    return found


def names(kind: str) -> list[str]:
    return sorted(name for k, name in discover() if k == kind)


def get(kind: str, name: str) -> Plugin:
    """The plugin of that kind and name, or an error listing the names that exist."""
    try:
        return discover()[(kind, name)]
    except KeyError:
        raise PluginError(f"unknown {kind} plugin '{name}'; available: {', '.join(names(kind)) or 'none'}") from None


def check_target(kind: str, target: str, key: str) -> type:
    """The class a config's `_target_` names; one line, early, when it cannot be imported."""
    add_plugin_folders()
    module_name, _, attribute = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        registered = ", ".join(f"{p.name} ({p.target})" for (k, _), p in sorted(discover().items()) if k == kind)
        raise PluginError(
            f"{key}._target_ '{target}' cannot be imported ({type(exc).__name__}: {exc}); registered {kind}s: "
            f"{registered}"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, _base_class(kind))):
        raise PluginError(f"{key}._target_ '{target}' is not a {_base_class(kind).__name__} subclass (domaintune.api)")
    return obj


def module_variants(module) -> list[str]:
    """The names of a module config's nodes that describe another module for other data (a node
    with its own `_target_`, such as `multi_label`): not arguments of the configured module."""
    return [name for name, node in module.items() if hasattr(node, "get") and node.get("_target_")]
