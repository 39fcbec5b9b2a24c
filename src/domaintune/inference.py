"""Use a finished causal-LM run: answer prompts with it, or export it as a merged Hugging Face model."""

from __future__ import annotations

import shutil
from pathlib import Path

from domaintune.errors import UserError
from domaintune.outputs import read_run


def _run_parts(run: str) -> tuple[Path, dict, dict]:
    folder = Path(run)
    config, metrics = read_run(folder)
    if not ((folder / "adapter").is_dir() or (folder / "model").is_dir()) or not (folder / "tokenizer").is_dir():
        raise UserError(f"run={folder}: not a causal-LM run (no adapter/ or model/ and tokenizer/); generate and export need one")
    return folder, config, metrics


def load_run(run: str):
    """(model with the fine-tuned weights, tokenizer, run config, metrics) of a run folder."""
    from hydra.utils import instantiate
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, config, metrics = _run_parts(run)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    if (folder / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(instantiate(config["model"]).load_model(), folder / "adapter")
    else:
        model = AutoModelForCausalLM.from_pretrained(folder / "model")
    return model.eval(), tokenizer, config, metrics


def answer(run: str, prompts: list[str], max_new_tokens: int = 128) -> list[str]:
    """Prompts rendered the way the run's data was (system prompt, template, chat template)."""
    from domaintune.data.instruction import prompt_messages, render_prompt
    from domaintune.modules.causal_lm import generate

    model, tokenizer, config, _ = load_run(run)
    data = config["data"]
    texts = [render_prompt(tokenizer, prompt_messages(p, data.get("system_prompt"), data.get("prompt_template", "{prompt}")))
             for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return generate(model, tokenizer, ids, max_new_tokens)


def export(run: str, out: str | None = None) -> Path:
    """A merged model folder (safetensors + tokenizer + model card) that AutoModelForCausalLM loads."""
    folder = Path(run)
    target = Path(out) if out else folder / "export"
    if target.exists() and any(target.iterdir()):
        raise UserError(f"out={target} already exists and is not empty; nothing was overwritten; pass out=<new folder>")
    model, tokenizer, config, metrics = load_run(run)
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "README.md").write_text(model_card(config, metrics))
    if target.exists():
        target.rmdir()
    partial.rename(target)
    return target


def model_card(config: dict, metrics: dict) -> str:
    import yaml

    base = config["model"].get("name_or_path") or "a random model"
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [domaintune, peft]", "---", "",
        f"# {metrics['task']}: fine-tuned with domaintune", "",
        f"Base model: `{base}`" + (f" (`{config['model']['gguf_file']}`, de-quantized)" if config["model"].get("gguf_file") else ""),
        f"Method: {config.get('peft', {}).get('_target_', 'full fine-tuning') if config.get('peft') else 'full fine-tuning'}; "
        "the adapter is merged into these weights.", "",
        "## Metrics", "", "| metric | fine-tuned | base model |", "|---|---|---|",
    ]
    baseline = metrics.get("baseline", {})
    for key, value in metrics.get("test", {}).items():
        base_value = baseline.get(key)
        lines.append(f"| {key} | {value:.4f} | {base_value:.4f} |" if base_value is not None else f"| {key} | {value:.4f} | |")
    best = metrics.get("best", {})
    if metrics.get("verdict"):
        lines += ["", f"Verdict on the test split ({metrics['verdict']['method']}): {metrics['verdict']['line']}."]
    lines += ["", f"Checkpoint selected on validation: {best.get('metric')} = {best.get('value')} at epoch {best.get('epoch')}.", "",
              "## Data", "", f"`{metrics['data']['path']}`, fingerprint `{metrics['data']['fingerprint']}`: "
              + ", ".join(f"{k.removesuffix('_rows')} {v}" for k, v in metrics["data"].items() if k.endswith("_rows")) + " rows.",
              "", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)
