"""What the tests share: where things are, the tiny overrides, made-up words, and the two ways of
running a command (in this process, or as a user's shell would) with their finished runs read back.

Test modules import from here, never from each other. The folder also holds modules that trial
processes import by name (`killer`, `extend_space`): tests put it on their PYTHONPATH."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
BIN = Path(sys.executable).parent
HELPERS = {"PYTHONPATH": str(Path(__file__).parent)}  # killer.KillAtEpoch, extend_space.head_lr_from_lr

# The one tiny-override list: a random 2-layer BERT, one short epoch on a few batches, no logger.
TINY = ["model=tiny", "logger=none", "trainer=debug"]
# The same for the causal kind: a tiny random Llama that generates a few short samples.
TINY_CAUSAL = [
    "model=tiny_causal",
    *TINY[1:],
    "module.generate_rows=2",
    "module.test_generate_rows=3",
    "module.max_new_tokens=4",
]
# A sweep's trials on the tiny model: 1-2 epochs of 3 batches, one validation batch.
TINY_SWEEP = [
    "model=tiny",
    "logger=csv",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "hydra.sweeper.params.trainer.max_epochs=int(interval(1,2))",
]
# One trial at a time in the sweep's own process (the default runs 2 at a time in joblib processes).
IN_PROCESS = ["hydra/launcher=basic", "hydra.sweeper.n_jobs=1"]

# What a console must not show: an advertisement, library deprecation notices, a W&B setting
# Lightning passes that W&B says has no effect, warnings about trials that tie, a model summary note.
CONSOLE_NOISE = (
    "litlogger",
    "LeafSpec",
    "will be removed in v6",
    "anonymous setting has no effect",
    "Target and region quantiles",  # Optuna's PED-ANOVA when trials tie
    "identical low and high ylims",  # matplotlib, the same
    "module(s) in eval mode",  # Lightning's model summary
)

# Made-up words for synthetic rows: templated rows ("message 1", "message 2", ...) are near
# duplicates, which training removes, so test data that must keep its rows draws words from here.
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe"]
WORDS = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in ("n", "r", "s")]


def phrase(seed: int, length: int = 6) -> str:
    """A text of `length` made-up words, different enough from every other seed's not to be a near duplicate."""
    return " ".join(random.Random(seed).sample(WORDS, length))


@dataclass
class Result:
    """What a terminal shows of a command, and its exit code (as subprocess.CompletedProcess names them)."""

    returncode: int
    stdout: str
    stderr: str


def domaintune(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the installed CLI in its own process, as a user would."""
    return subprocess.run(
        [str(BIN / "domaintune"), *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> Result:
    """Run `domaintune ARGS` in this process: the same `main`, its output and exit code, without
    paying the heavy imports again. An exception that escapes is printed as Python would print it,
    so "no traceback" assertions mean what they do for a real process."""
    from hydra.core.global_hydra import GlobalHydra

    from domaintune.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv, saved_path = dict(os.environ), os.getcwd(), sys.argv[:], sys.path[:]
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.update(env or {})
    sys.path[:0] = [p for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep) if p]  # as a process would
    os.chdir(cwd or ROOT)
    terminal = logging.StreamHandler(err)  # what Python's last-resort handler prints to a process's stderr
    terminal.setLevel(logging.WARNING)
    root.addHandler(terminal)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:
                traceback.print_exc(file=err)
                code = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        GlobalHydra.instance().clear()
    return Result(code, out.getvalue(), err.getvalue())


def sweep(outputs: Path, *args: str, env: dict | None = None) -> Result:
    """`domaintune train -m sweep=optuna` of the support task's trials on the tiny model, in this
    process, one trial at a time unless `args` choose a launcher; outputs under `outputs`."""
    launcher = [] if any(a.startswith("hydra/launcher=") for a in args) else IN_PROCESS
    return cli(
        "train",
        "-m",
        "sweep=optuna",
        *launcher,
        *TINY_SWEEP,
        *args,
        env={"DOMAINTUNE_OUTPUT_DIR": str(outputs), **(env or {})},
    )


def error_line(result) -> str:
    """The one `domaintune: error:` line of a failed command (fails if there is not exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("domaintune: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def finished_runs(folder: Path) -> list[Path]:
    """Every finished run folder under `folder`, as domaintune tells them (RunFolder)."""
    from domaintune.runfolder import RunFolder

    return [run.path for run in RunFolder.finished_under(folder)]


def the_run(folder: Path) -> Path:
    """The one finished run under `folder`."""
    (run,) = finished_runs(folder)
    return run


def metrics(run: Path) -> dict:
    from domaintune.runfolder import RunFolder

    return RunFolder(run).metrics()


def trials(sweep_folder: Path) -> list[dict]:
    """A sweep's trials.csv, a dict a row."""
    from domaintune import trials_table

    return trials_table.read(sweep_folder)


def read_wandb(run_dir: Path) -> list[dict] | dict:
    """The run's offline W&B record(s) as W&B's own reader sees them: one dict, or a list when
    the run was resumed into the same W&B run (one record per process, oldest first)."""
    records = []
    for folder in sorted((Path(run_dir) / "wandb").glob("offline-run-*")):
        out = subprocess.run(
            [str(BIN / "wandb"), "leet", "inspect", "--summary", "--json", str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        records.append({"folder": folder.name, **json.loads(out.stdout)})
    assert records, f"no W&B run under {run_dir}"
    return records[0] if len(records) == 1 else records


def check_kind(run: Path, command, kind=None, tries: tuple[str, ...] = ("predict", "generate", "export")) -> str:
    """The contract every registered kind keeps (peft's common tester in spirit): a finished run
    logs only metrics its kind declares, its verdict names the kind's opponent, `evaluate` works,
    and each of predict, generate and export works if the kind declares it and is refused in one
    line if not. `command(*args)` runs the CLI (in-process or in a project folder); `kind`: the
    registration, where the run's module class is not importable here (a project's plugin);
    `tries`: the optional commands to run (each refusal runs the same code, refuse_unless_served).
    Returns the kind's name."""
    import yaml

    from domaintune import kinds, registry

    if kind is None:
        config = yaml.safe_load((run / "config.yaml").read_text())
        kind = kinds.of_module(registry.check_target("module", config["module"]["_target_"], "module"))
    found = metrics(run)
    logged = {key.split("/", 1)[1] for key in [*found["test"], found["best"]["metric"]]}
    assert logged <= set(kind.metrics), f"{kind.name} logs undeclared metrics {logged - set(kind.metrics)}"
    assert found["verdict"]["base"] == kind.opponent
    evaluated = command("evaluate", f"run={run}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    commands = {
        "predict": ("predict", f"run={run}", "text=Where is my parcel?", f"out={run / 'contract_predict'}"),
        "generate": ("generate", f"run={run}", "prompt=Where is my parcel?"),
        "export": ("export", f"run={run}", "onnx=false", f"out={run / 'contract_export'}"),
    }
    for name, args in {name: args for name, args in commands.items() if name in tries}.items():
        result = command(*args)
        if name in kind.commands():
            assert result.returncode == 0, f"{kind.name} declares {name}: {result.stderr[-2000:]}"
        else:
            assert result.returncode == 2 and f"a {kind.name} run does not {name}" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
    if "export" in tries and "export" in kind.commands():  # use=base: the base model's opponent, where declared
        result = command("export", f"run={run}", "onnx=false", "use=base", f"out={run / 'contract_base'}")
        if kind.base:
            assert result.returncode == 0, f"{kind.name} declares a base: {result.stderr[-2000:]}"
        else:
            assert result.returncode == 2 and "has no base-model opponent" in result.stderr, result.stderr
    return kind.name
