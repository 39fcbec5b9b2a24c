"""Use a finished run: answer prompts with it, or export it as a standard Hugging Face model."""

from __future__ import annotations

import shutil
from pathlib import Path

from domaintune import kinds
from domaintune.errors import UserError
from domaintune.runs import choose_model, load_run, refuse_unless_served


def answer(run: str, prompts: list[str], max_new_tokens: int = 128) -> list:
    """The run's module answers raw prompts, rendered the way its data was."""
    finished = load_run(Path(run))
    refuse_unless_served(finished, "generate")
    return finished.module.predict(prompts, finished.datamodule, max_new_tokens=max_new_tokens)


def export(run: str, out: str | None = None, use: str = "fine_tuned", **options) -> Path:
    """The module's standard model files plus a model card; the folder appears complete or not at
    all. `use=base`: the base model with its probe (in `export-base` unless `out=` says)."""
    folder = Path(run)
    target = Path(out) if out else folder / ("export" if use == "fine_tuned" else f"export-{use}")
    if target.exists() and any(target.iterdir()):
        raise UserError(
            f"out={target} already exists and is not empty; nothing was overwritten; pass out=<new folder>"
        )
    finished = load_run(folder)
    refuse_unless_served(finished, "export")
    choose_model(finished, use)
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        card = finished.module.export(partial, finished.datamodule, **options)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    kind = kinds.of_module(type(finished.module))
    (partial / "README.md").write_text(model_card(finished.cfg, finished.metrics, kind.export, card, use))
    if target.exists():
        target.rmdir()
    partial.rename(target)
    return target


def model_card(cfg, metrics: dict, pipeline_tag: str | None, card: dict, use: str = "fine_tuned") -> str:
    import yaml
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    base = config["model"].get("name_or_path") or "a random model"
    header = ["---", f"library_name: {card['library_name']}"] + (
        [f"pipeline_tag: {pipeline_tag}"] if pipeline_tag else []
    )
    lines = [
        *header,
        "tags: [domaintune, peft]",
        "---",
        "",
        f"# {metrics['task']}: "
        + ("fine-tuned with domaintune" if use == "fine_tuned" else "base model + linear probe"),
        "",
        f"Base model: `{base}`"
        + (f" (`{config['model']['gguf_file']}`, de-quantized)" if config["model"].get("gguf_file") else ""),
        "Method: "
        + (
            "the frozen base encoder with the run's probe as its head (`use=base`: the model the verdict "
            "compares with; the metrics' base-model column is its)."
            if use == "base"
            else f"{config['peft']['_target_']}; the adapter is merged into these weights."
            if config.get("peft")
            else "full fine-tuning."
        ),
        "",
        "## Use",
        "",
        card["usage"],
        "## Metrics",
        "",
        "| metric | fine-tuned | base model |",
        "|---|---|---|",
    ]
    # Both columns from one computation on the same test rows: the verdict's where it has the metric.
    baseline, compared = metrics.get("baseline", {}), (metrics.get("verdict") or {}).get("metrics", {})
    for key, value in metrics.get("test", {}).items():
        pair = compared.get(key.removeprefix("test/"))
        tuned, base_value = (pair["fine_tuned"], pair["base"]) if pair else (value, baseline.get(key))
        lines.append(
            f"| {key} | {tuned:.4f} | {base_value:.4f} |" if base_value is not None else f"| {key} | {tuned:.4f} | |"
        )
    best = metrics.get("best", {})
    if metrics.get("verdict"):
        lines += ["", f"Verdict on the test split ({metrics['verdict']['method']}): {metrics['verdict']['line']}."]
    lines += [
        "",
        f"Checkpoint selected on validation: {best.get('metric')} = {best.get('value')} at epoch {best.get('epoch')}.",
        "",
        "## Data",
        "",
        f"`{metrics['data']['path']}`, fingerprint `{metrics['data']['fingerprint']}`: "
        + ", ".join(f"{k.removesuffix('_rows')} {v}" for k, v in metrics["data"].items() if k.endswith("_rows"))
        + " rows.",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
