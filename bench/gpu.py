"""GPU readiness: what a machine with a CUDA GPU measures in a few minutes, each side in its own
process on the same GPU, both sides in bf16-mixed (bfloat16 autocast, the frozen base weights in
bfloat16 under LoRA):

1. classification: one LoRA epoch of MiniLM on BANKING77 train, domaintune (`task=support
   trainer=gpu`) against Hugging Face Trainer + peft on the very same token ids and labels, the
   same LoRA (r 16, alpha 32, dropout 0.1, all linear layers), mean pooling and a linear head,
   batch 32: real tokens/s and peak GPU memory;
2. causal LM: `bench/causal.py --device cuda --precision bf16` (SmolLM2-135M + LoRA on Bitext,
   against Hugging Face Trainer + peft), activation checkpointing off on both sides;
3. a 4-trial sweep of the support task on a 2,000-row BANKING77 subset, two trials at a time on
   the one GPU: wall time and the best validation accuracy.

On a machine without a CUDA GPU it says so in one line and exits 0.

    python bench/gpu.py [--causal-rows 512]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import child

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BANKING77 = ROOT.parent / "shared" / "datasets" / "support" / "banking77"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": "all-linear"}


def compose(extra: list[str]):
    from domaintune import precision, registry
    from domaintune.config import compose_job

    registry.add_plugin_folders()
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    overrides = [
        "task=support",
        f"data.path={BANKING77}",
        "peft=lora",
        "trainer=gpu",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "module.head_init=random",  # the probe's feature pass is not part of an epoch
        "test=false",
        "logger=none",
        "callbacks.best_weights=null",
        "callbacks.early_stopping=null",
        *extra,
    ]
    cfg = compose_job(overrides, work / "run", work / "outputs")
    precision.settle(cfg)
    return cfg


def side_ours() -> dict:
    from domaintune.train import train
    from precision import EpochCost

    train(compose(["+callbacks.cost._target_=precision.EpochCost"]))
    return {"tokens": EpochCost.real, "seconds": EpochCost.seconds, "gpu_peak_mb": _peak()}


def side_hf() -> dict:
    """Trainer + peft on our datamodule's own train rows, padded per batch by DataCollatorWithPadding."""
    from hydra.utils import instantiate
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from sweep import MeanPoolClassifier

    cfg = compose([])
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")
    train = datamodule.datasets["train"]
    rows = [{"input_ids": list(ids), "labels": int(y)} for ids, y in zip(train.ids, train.labels)]
    encoder = get_peft_model(backbone.load_model(), LoraConfig(**LORA))
    hidden = encoder.config.hidden_size
    model = MeanPoolClassifier(encoder, torch.zeros(datamodule.num_labels, hidden), torch.zeros(datamodule.num_labels))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-gpu-"),
        per_device_train_batch_size=cfg.data.batch_size,
        num_train_epochs=1,
        learning_rate=cfg.module.lr,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        bf16=True,
        dataloader_pin_memory=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(datamodule.tokenizer)
    )
    result = trainer.train()
    return {
        "tokens": sum(len(r["input_ids"]) for r in rows),
        "seconds": result.metrics["train_runtime"],
        "gpu_peak_mb": _peak(),
    }


def _peak() -> float:
    return torch.cuda.max_memory_allocated() / 2**20


def _side(name: str) -> dict:
    return child.run(__file__, ["--side", name], name, cwd=BENCH)


def classification() -> None:
    results = {side: _side(side) for side in ("hf", "ours")}
    for side, r in results.items():
        print(
            f"  {side:4s}: {r['tokens']} tokens in {r['seconds']:.1f} s = {r['tokens'] / r['seconds']:.0f} tokens/s, "
            f"peak GPU {r['gpu_peak_mb']:.0f} MB",
            flush=True,
        )
    ours, hf = (results[s]["tokens"] / results[s]["seconds"] for s in ("ours", "hf"))
    print(f"  tokens/s ratio domaintune / Hugging Face: {ours / hf:.2f}", flush=True)


def causal(rows: int) -> None:
    command = [sys.executable, str(BENCH / "causal.py"), "--device", "cuda", "--precision", "bf16"]
    subprocess.run([*command, "--rows", str(rows), "--checkpointing", "off"], check=False, cwd=ROOT)


def sweep_two_at_a_time() -> None:
    from sweep import make_subset

    work = Path(tempfile.mkdtemp(prefix="gpu-sweep-"))
    data = make_subset(work / "data")
    command = [
        str(Path(sys.executable).with_name("domaintune")), "train", "-m", "sweep=optuna", "task=support",
        f"data.path={data}", "trainer=gpu", "logger=none", "test=false", f"paths.output_dir={work / 'out'}",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.study_name=gpu",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"the sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
    import optuna

    study = optuna.load_study(study_name="gpu", storage=f"sqlite:///{work / 'out' / 'sweeps' / 'gpu' / 'study.db'}")
    print(f"  4 trials, 2 at a time: {seconds:.0f} s wall time, best val acc {study.best_value:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--causal-rows", type=int, default=512)
    parser.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured")
        return
    if args.side:
        result = side_ours() if args.side == "ours" else side_hf()
        child.report(result)
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    print("classification, MiniLM + LoRA, one epoch of BANKING77 train, bf16-mixed:", flush=True)
    classification()
    print("causal LM, SmolLM2-135M + LoRA on Bitext, bf16:", flush=True)
    causal(args.causal_rows)
    print("sweep, MiniLM on 2,000 BANKING77 rows:", flush=True)
    sweep_two_at_a_time()


if __name__ == "__main__":
    main()
