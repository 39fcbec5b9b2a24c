"""Training throughput of a LoRA fine-tune of SmolLM2-135M-Instruct: domaintune vs Hugging Face
Trainer + peft, side by side, each in its own process, with its peak memory.

Same model (the de-quantized SmolLM2 folder), same LoRA (r 16, alpha 32, dropout 0.1, all linear
layers), same rows with the very same token ids and labels (Bitext replies, prompt masked,
max_length 256), same batch size, one epoch each. Tokens/s counts real (not padding) tokens.
`--precision bf16`: both sides keep the frozen base weights in bfloat16 (the adapter in float32)
and train under bf16 autocast. Activation checkpointing is on for both sides or off for both:
by default the bench runs both pairs, checkpointing on first (domaintune's default on CPU).

    python bench/causal.py [--rows 256] [--batch 8] [--device cpu|cuda] [--precision 32|bf16]
                           [--checkpointing both|on|off]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path

import child
from overhead import EpochTimer  # noqa: F401 - `+callbacks.timer._target_=__main__.EpochTimer`

ROOT = Path(__file__).resolve().parents[1]
BITEXT = (
    ROOT.parent
    / "shared"
    / "datasets"
    / "support"
    / "bitext_customer_support"
    / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
)


def overrides(args) -> list[str]:
    return [
        "experiment=bitext_replies",
        f"data.path={BITEXT}",
        f"data.train_rows={args.rows}",
        f"data.batch_size={args.batch}",
        "logger=none",
        "test=false",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "callbacks.best_weights=null",
        "callbacks.early_stopping=null",
        "module.generate_rows=0",
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={args.device}",
        f"trainer.precision={args.precision_lightning}",
        "data.val_fraction=0.01",
        "data.test_fraction=0.1",
        f"model.dtype={'bfloat16' if args.precision == 'bf16' else 'float32'}",
        f"module.gradient_checkpointing={str(args.checkpointing == 'on').lower()}",
    ]


def compose(args, extra: list[str] = ()):
    from domaintune import precision, registry
    from domaintune.config import compose_job

    registry.add_plugin_folders()
    run_dir = Path(tempfile.mkdtemp(prefix="causal-bench-"))
    cfg = compose_job(overrides(args) + list(extra), run_dir, run_dir / "outputs")
    precision.settle(cfg)  # as train() settles it
    return cfg


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def side_ours(args) -> dict:
    from domaintune.train import train

    cfg = compose(args, ["+callbacks.timer._target_=__main__.EpochTimer"])
    train(cfg)
    return {"tokens": _train_tokens(cfg), "seconds": EpochTimer.seconds[-1], "peak_mb": peak_mb(), **_gpu_peak()}


def _train_tokens(cfg) -> int:
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=instantiate(cfg.model).load_tokenizer())
    datamodule.setup("fit")
    return sum(len(ids) for ids in datamodule.datasets["train"].ids)


def side_hf(args) -> dict:
    """Hugging Face Trainer + peft, the usual way: random batches padded by DataCollatorForSeq2Seq."""
    from hydra.utils import instantiate
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    cfg = compose(args)
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")
    rows = []
    for ids, prompt_len in datamodule.datasets["train"]:
        labels = ids.tolist()
        labels[:prompt_len] = [-100] * prompt_len
        rows.append({"input_ids": ids.tolist(), "labels": labels})
    model = get_peft_model(
        backbone.load_model(), LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear")
    )
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-causal-"),
        per_device_train_batch_size=args.batch,
        num_train_epochs=1,
        learning_rate=1e-3,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        bf16=args.precision == "bf16",
        use_cpu=args.device == "cpu",
        dataloader_pin_memory=False,
        gradient_checkpointing=args.checkpointing == "on",
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(datamodule.tokenizer, padding=True, label_pad_token_id=-100),
    )
    result = trainer.train()
    return {
        "tokens": sum(len(r["input_ids"]) for r in rows),
        "seconds": result.metrics["train_runtime"],
        "peak_mb": peak_mb(),
        **_gpu_peak(),
    }


def _gpu_peak() -> dict:
    import torch

    return {"gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--checkpointing", default="both", choices=["both", "on", "off"])
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.precision_lightning = "bf16-mixed" if args.precision == "bf16" else "32-true"
    if args.side:
        result = (side_ours if args.side == "ours" else side_hf)(args)
        child.report(result)
        return

    passed = True
    for checkpointing in ["on", "off"] if args.checkpointing == "both" else [args.checkpointing]:
        passed &= compare(args, checkpointing)
    sys.exit(0 if passed else 1)


def compare(args, checkpointing: str) -> bool:
    """Both sides with activation checkpointing `checkpointing`, each in its own process."""
    results = {}
    arguments = [
        "--rows",
        str(args.rows),
        "--batch",
        str(args.batch),
        "--device",
        args.device,
        "--precision",
        args.precision,
        "--checkpointing",
        checkpointing,
    ]
    print(f"activation checkpointing {checkpointing} on both sides:", flush=True)
    for side in ("hf", "ours"):  # one process each: separate peak memory, no shared caches
        results[side] = child.run(__file__, ["--side", side, *arguments], side)
        r = results[side]
        print(
            f"  {side:5s}: {r['tokens']} tokens in {r['seconds']:.1f} s = {r['tokens'] / r['seconds']:.0f} tokens/s, "
            f"peak RSS {r['peak_mb']:.0f} MB"
            + (f", peak GPU {r['gpu_peak_mb']:.0f} MB" if "gpu_peak_mb" in r else ""),
            flush=True,
        )
    ours, hf = (results[s]["tokens"] / results[s]["seconds"] for s in ("ours", "hf"))
    print(
        f"  tokens/s ratio domaintune / Hugging Face: {ours / hf:.2f}  (bar >= 1.0); peak memory domaintune "
        f"{results['ours']['peak_mb'] / 1024:.2f} GB (bar <= 2.5 GB), Hugging Face "
        f"{results['hf']['peak_mb'] / 1024:.2f} GB"
    )
    if args.device == "cuda":
        flops = 6 * 134.5e6 * results["ours"]["tokens"] / results["ours"]["seconds"]
        print(f"  model FLOPs (6 x 134.5M params x tokens/s): {flops / 1e12:.2f} TFLOP/s")
    return ours / hf >= 1.0 and results["ours"]["peak_mb"] <= 2.5 * 1024


if __name__ == "__main__":
    main()
