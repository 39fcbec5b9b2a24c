"""`domaintune` command line. Nothing heavy is imported at module level: `--help` stays fast."""

from __future__ import annotations

import argparse
import json
import sys

from domaintune.errors import UserError, exit_with

TRAIN_HELP = """Fine-tune with Hydra overrides, e.g. `domaintune train task=legal peft=none trainer.max_epochs=3`.
Add -m for a multirun (`-m task=legal,support,marketing`); `domaintune train --help` shows Hydra's help
and `domaintune train --cfg job` prints the composed config."""


def run_train(overrides: list[str]) -> None:
    import __main__
    from domaintune import config, hydra_app
    from domaintune.sweep.overrides import own_sweeper, quote_sweep_params
    from domaintune.sweep.secrets import strip_storage_password

    overrides = config.resume_overrides(own_sweeper(quote_sweep_params(strip_storage_password(overrides))))
    config.check_group_choices(overrides)
    config.check_override_keys(overrides)
    # Hydra reads sys.argv; Lightning's DDP launcher re-runs sys.argv[0] as a script for the
    # other ranks, so point it at the Hydra app itself rather than at this CLI.
    sys.argv = [hydra_app.__file__, *overrides]
    __main__.__spec__ = None
    hydra_app.main()


def list_plugins(_: argparse.Namespace) -> None:
    from domaintune import registry

    plugins = sorted(registry.discover().values(), key=lambda p: (p.kind, p.name))
    rows = [("NAME", "KIND", "TARGET", "SOURCE")] + [(p.name, p.kind, p.target, p.source) for p in plugins]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


def new_plugin(args: argparse.Namespace) -> None:
    from domaintune.scaffold import write_plugin

    for path in write_plugin(args.name, args.dir):
        print(f"wrote {path}")
    print(f"train it: domaintune train task={args.name}")


def init(args: argparse.Namespace) -> None:
    from domaintune.scaffold import write_project

    task, written = write_project(args.folder, args.task)
    for path in written:
        print(f"wrote {path}")
    print(f"then: cd {args.folder} && domaintune train task={task}")


def compare(args: argparse.Namespace) -> None:
    from domaintune.compare import collect, table

    print(table(collect(args.paths)))


def dashboard(args: argparse.Namespace) -> None:
    from domaintune.sweep.dashboard import serve

    serve(args.study, args.host, args.port)


def _settings(pairs: list[str], allowed: set[str], required: set[str]) -> dict[str, str]:
    """`run=<folder> prompt="..."` style arguments, as in `domaintune train`."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise UserError(f"'{pair}': expected one of {', '.join(sorted(k + '=...' for k in allowed))}")
        settings[key] = value
    missing = required - settings.keys()
    if missing:
        raise UserError(f"missing {', '.join(sorted(k + '=...' for k in missing))}")
    return settings


def _flag(settings: dict[str, str], key: str) -> bool:
    value = settings[key].lower()
    if value not in ("true", "false"):
        raise UserError(f"{key}={settings[key]}: use {key}=true or {key}=false")
    return value == "true"


def generate(args: argparse.Namespace) -> None:
    from pathlib import Path

    settings = _settings(args.settings, {"run", "prompt", "prompts", "max_new_tokens"}, {"run"})
    if "prompts" in settings:
        source = Path(settings["prompts"])
        if not source.is_file():
            raise UserError(f"prompts={source}: no such file; give a text file with one prompt per line")
        prompts = [line.strip() for line in source.read_text().splitlines() if line.strip()]
    elif "prompt" in settings:
        prompts = [settings["prompt"]]
    else:
        raise UserError('give prompt="..." or prompts=<file with one prompt per line>')
    from domaintune.inference import answer

    try:
        new_tokens = int(settings.get("max_new_tokens", 128))
    except ValueError:
        raise UserError(f"max_new_tokens={settings['max_new_tokens']}: expected a whole number") from None
    for prompt, reply in zip(prompts, answer(settings["run"], prompts, new_tokens)):
        print(json.dumps({"prompt": prompt, "response": reply}, ensure_ascii=False) if len(prompts) > 1 else reply)


def learning_curve(args: argparse.Namespace) -> None:
    """Compose the task as `train` would; one run per fraction of the train rows, in one folder."""
    from datetime import datetime
    from pathlib import Path

    from domaintune import config, registry
    from domaintune.learning_curve import FRACTIONS
    from domaintune.learning_curve import learning_curve as draw

    settings = {
        o.partition("=")[0]: o.partition("=")[2] for o in args.overrides if o.split("=")[0] in ("out", "fractions")
    }
    overrides = [o for o in args.overrides if o.split("=")[0] not in ("out", "fractions")]
    try:
        fractions = tuple(float(f) for f in settings["fractions"].split(",")) if "fractions" in settings else FRACTIONS
    except ValueError:
        raise UserError(f"fractions={settings['fractions']}: give shares such as fractions=0.25,0.5,1") from None
    config.check_group_choices(overrides)
    registry.add_plugin_folders()
    cfg = config.compose_job(overrides, Path("."), None)  # outputs under paths.output_dir
    out = (
        Path(settings["out"])
        if "out" in settings
        else (
            Path(cfg.paths.output_dir)
            / "curves"
            / f"{datetime.now():%Y-%m-%d}"
            / f"{datetime.now():%H-%M-%S}_{cfg.task_name}"
        )
    )
    curve = draw(overrides, out, fractions)
    for point in curve["points"]:
        print(
            f"  {point['train_rows']} train rows: fine-tuned {point['fine_tuned']:.4f} {point['fine_tuned_ci95']}, "
            f"probe {point['probe']:.4f} {point['probe_ci95']} ({curve['metric']} on validation)"
        )
    print(f"{curve['line']}\n  curve: {out / 'data_curve.png'} (and .html, .json)")


def prepare(args: argparse.Namespace) -> None:
    """Compose the task's config as `train` would, then clean, split and report into a new folder."""
    from datetime import datetime
    from pathlib import Path

    from domaintune import config, registry
    from domaintune.prepare import prepare as prepare_data

    overrides = [o for o in args.overrides if not o.startswith("out=")]
    outs = [o.removeprefix("out=") for o in args.overrides if o.startswith("out=")]
    config.check_group_choices(overrides)
    registry.add_plugin_folders()
    cfg = config.compose_job(overrides, Path("."), None)  # outputs under paths.output_dir
    out = (
        Path(outs[0])
        if outs
        else Path(cfg.paths.output_dir)
        / "prepared"
        / f"{datetime.now():%Y-%m-%d}"
        / f"{datetime.now():%H-%M-%S_%f}_{cfg.task_name}"
    )
    if out.exists():
        raise UserError(f"out={out} already exists; nothing was overwritten; pass out=<new folder>")
    summary = prepare_data(cfg, out)
    rows = ", ".join(f"{s} {n}" for s, n in summary["rows"].items())
    print(f"prepared {summary['source']}: {rows} rows, fingerprint {summary['fingerprint']}")
    cleaning = summary["cleaning"]
    print(
        f"  removed: {sum(cleaning['empty'].values())} empty, {sum(cleaning['exact_duplicates'].values())} exact and "
        f"{sum(cleaning['near_duplicates'].values())} near duplicates, {sum(cleaning['leaked'].values())} leaked "
        "between splits"
    )
    if summary.get("imbalance", {}).get("warn"):
        print(
            f"  warning: imbalanced, the largest class is {summary['imbalance']['majority_share']:.0%} of train; "
            "judge by macro-F1 and train with module.class_weights=balanced"
        )
    print(f"  {summary['truncated_share']:.1%} of train rows exceed max_length={summary['max_length']}")
    baseline = summary.get("baseline")
    if baseline and baseline.get("curve"):
        from domaintune.modules.shared import curve_line

        curve = curve_line(baseline["curve"], baseline["metric"])
        print(f"  base model on validation (the probe fine-tuning must beat), as its train rows grow: {curve}")
    # prepared splits are written as `text` and `label`/`labels` (or prompt/response): the settings
    # that said how the source file was written do not apply to them
    source = ("data.path", "data.column_names", "data.label_separator", "data.label_names")
    kept = " ".join(o for o in overrides if not (o.split("=")[0] in source or o.split("=")[0].endswith("_column")))
    print(f"  report: {out / 'report.md'}; train on it: domaintune train {kept} data.path={out}")


def evaluate(args: argparse.Namespace) -> None:
    from domaintune.evaluate import evaluate as evaluate_run

    runs = [a.removeprefix("run=") for a in args.settings if a.startswith("run=")]
    if len(runs) != 1:
        raise UserError("give the run to evaluate: run=<run folder>")
    result, out = evaluate_run(runs[0], [a for a in args.settings if not a.startswith("run=")])
    print(f"evaluated {result['run']} on {result['data']['test_rows']} test rows of {result['data']['path']}")
    verdict = result.get("verdict")
    if verdict:
        print(f"  base model: {verdict['base']}")
        for metric, compared in verdict["metrics"].items():
            low, high = compared["ci95"]
            print(
                f"  {metric}: fine-tuned {compared['fine_tuned']:.4f}, base {compared['base']:.4f}, "
                f"difference {compared['difference']:+.4f} (95% CI {low:+.4f} to {high:+.4f})"
            )
    else:
        print(
            "  test: "
            + "  ".join(f"{k} {v:.4f}" for k, v in result["test"].items())
            + " (this kind has no base-model verdict)"
        )
    gap = result["train_val_gap"]
    if "val_minus_train" in gap:
        signal = (
            "validation loss well above training loss: overfitting"
            if gap["val_minus_train"] > 0.1
            else "no sign of overfitting"
        )
        print(f"  train/val loss gap at the best epoch: {gap['val_minus_train']:+.4f} ({signal})")
    if verdict:
        print(f"  verdict: {verdict['line']}")
    print(f"  report: {out}")


def predict(args: argparse.Namespace) -> None:
    from domaintune.predict import predict as predict_run

    settings = _settings(args.settings, {"run", "data.path", "text", "out", "use"}, {"run"})
    summary, out = predict_run(
        settings["run"],
        settings.get("data.path"),
        settings.get("text"),
        settings.get("out"),
        use=settings.get("use", "fine_tuned"),
    )
    if "prediction" in summary:
        print("  ".join(f"{column}: {value}" for column, value in summary["prediction"].items()))
    print(f"predicted {summary['rows']} rows ({summary['rows_per_second']:.0f} rows/s): {out / 'predictions.csv'}")
    if "metrics" in summary:
        scores = summary["metrics"]
        shown = "  ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
        print(f"  on {scores['labelled_rows']} labelled rows: {shown}")


def export(args: argparse.Namespace) -> None:
    from domaintune.inference import export as export_run

    settings = _settings(args.settings, {"run", "out", "onnx", "use"}, {"run"})
    options = {"onnx": _flag(settings, "onnx")} if "onnx" in settings else {}
    print(f"exported {export_run(settings['run'], settings.get('out'), settings.get('use', 'fine_tuned'), **options)}")


def _run_command(sub, name: str, handler, summary: str, usage: str) -> None:
    """A command on a finished run, taking `key=value` settings (`run=<folder>` among them)."""
    command = sub.add_parser(name, help=summary)
    command.add_argument("settings", nargs="+", metavar="KEY=VALUE", help=usage)
    command.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="domaintune",
        description="Fine-tune pre-trained models on a domain and find their best hyperparameters.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "train", help="fine-tune (Hydra overrides; -m for multirun and sweeps)", description=TRAIN_HELP, add_help=False
    )
    plugins = sub.add_parser("plugins", help="list registered LightningModule and LightningDataModule plugins")
    plugins.set_defaults(handler=list_plugins)
    starting = sub.add_parser("init", help="write a new project: a domain plugin, its task config and sample data")
    starting.add_argument("folder", help="the project folder to create (empty or new)")
    starting.add_argument("--task", help="task and plugin name (default: the folder's name)")
    starting.set_defaults(handler=init)
    scaffold = sub.add_parser("new-plugin", help="write a working domain plugin and its task config")
    scaffold.add_argument("name", help="domain name: lower-case letters, digits and '_' (e.g. insurance)")
    scaffold.add_argument("--dir", default=".", help="project folder that holds plugins/ and conf/ (default: .)")
    scaffold.set_defaults(handler=new_plugin)
    comparing = sub.add_parser("compare", help="table of runs and sweep trials (params, state, metric, epochs, time)")
    comparing.add_argument("paths", nargs="+", help="sweep folders, run folders, or folders holding runs")
    comparing.set_defaults(handler=compare)
    board = sub.add_parser("dashboard", help="open Optuna Dashboard (the study's web UI) on a sweep")
    board.add_argument("study", help="sweep folder (outputs/sweeps/<study>) or a storage URL / journal file")
    board.add_argument("--host", default="127.0.0.1")
    board.add_argument("--port", type=int, default=8080)
    board.set_defaults(handler=dashboard)
    _run_command(
        sub,
        "evaluate",
        evaluate,
        "compare a run with the base model on test data, with confidence intervals: run=<folder> [data.path=...]",
        "run=<run folder> [data.path=<test data>]",
    )
    preparing = sub.add_parser(
        "prepare", help="validate, clean and split data, and write a report: task=<task> data.path=<file or folder>"
    )
    preparing.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides as for train, plus out=<folder>"
    )
    preparing.set_defaults(handler=prepare)
    curve = sub.add_parser(
        "learning-curve",
        help="is my data enough? the task's defaults and the base model's probe on growing shares of the train rows",
    )
    curve.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Hydra overrides as for train, plus fractions=0.1,0.25,0.5,1 and out=<folder>",
    )
    curve.set_defaults(handler=learning_curve)
    _run_command(
        sub,
        "generate",
        generate,
        'answer prompts with a fine-tuned causal-LM run: run=<folder> prompt="..." (or prompts=<file>)',
        "run=<run folder> prompt=... | prompts=<file> [max_new_tokens=128]",
    )
    _run_command(
        sub,
        "predict",
        predict,
        'labels, label sets or entities of new texts from a run: run=<folder> data.path=<file> (or text="...")',
        'run=<run folder> data.path=<file> | text="..." [out=<folder>] [use=base]',
    )
    _run_command(
        sub,
        "export",
        export,
        "write the model for other libraries (Hugging Face, sentence-transformers, ONNX): run=<folder> [out=<folder>]",
        "run=<run folder> [out=<folder>, default <run>/export] [onnx=false] [use=base]",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    from domaintune.console import quiet

    quiet()
    try:
        if argv[:1] == ["train"]:
            run_train(argv[1:])
            return
        args = build_parser().parse_args(argv)
        args.handler(args)
    except UserError as error:
        exit_with(error)
