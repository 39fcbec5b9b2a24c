"""float32 vs bfloat16 training of MiniLM on BANKING77 train, side by side on the same batches:
epoch seconds, validation accuracy, and the FLOP/s each side achieves against a matrix-multiply
peak measured in the same run (same threads), for LoRA (the support task's defaults) and full
fine-tuning.

Each cell is one epoch of `domaintune train task=support` in its own process (test=false, seed s:
the same batches in both precisions), the bf16 side with `trainer.precision=bf16-mixed
model.dtype=auto` (frozen base weights in bfloat16 under LoRA, float32 under full fine-tuning),
the fp32 side with `32-true`. `--seeds N` repeats each cell with seeds 0..N-1: the spread of
validation accuracy between seeds is the run-to-run spread bf16 must stay within.

Where this machine does not multiply in bfloat16 natively (domaintune.precision.native_bf16: no
AVX512-BF16/AMX, no CUDA GPU), a bf16 epoch takes over half an hour: the bf16 side then trains the first
`--emulated-batches` batches of the same epoch (head_init=random: the probe's feature pass
would add minutes more) and its epoch time is extrapolated from them, labelled, with no
validation accuracy; `--emulated-batches 0` trains the whole emulated epoch instead (the probe's
feature pass included, in bf16), which measures its validation accuracy at the cost of that time.
The table ends with the default `trainer.precision=auto` picks here.
Model FLOPs: 2 x (non-embedding weights) x padded tokens forward, twice that backward for the
activations, once more for weight gradients under full fine-tuning (4x LoRA, 6x full).

    python bench/precision.py [--seeds 2] [--recipes lora,full] [--emulated-batches 8 (0: whole)]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

import child

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared" / "datasets" / "support" / "banking77"
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
PEFT = {"lora": "peft=lora", "full": "peft=none"}


class EpochCost(pl.Callback):
    """Seconds of the first training epoch (its batches only) and the tokens it processed."""

    seconds, batches, epoch_batches, padded, real = 0.0, 0, 0, 0, 0

    def on_train_start(self, trainer, pl_module):
        EpochCost.epoch_batches = len(trainer.train_dataloader)

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        EpochCost.batches += 1
        EpochCost.padded += batch["input_ids"].numel()
        EpochCost.real += int(batch["attention_mask"].sum())

    def on_train_epoch_end(self, trainer, pl_module):
        EpochCost.seconds = time.perf_counter() - self.started


def matmul_peak(dtype: torch.dtype, size: int = 1024, seconds: float = 2.0) -> float:
    """GFLOP/s of a size x size matrix multiply in `dtype` on this process's threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or runs < 2:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def cell(recipe: str, side: str, seed: int, limit: int | None) -> dict:
    """One epoch in this process; what the parent prints."""
    from hydra.utils import instantiate

    from domaintune import registry
    from domaintune.config import compose_job
    from domaintune.train import train

    registry.add_plugin_folders()
    work = Path(tempfile.mkdtemp(prefix="precision-bench-"))
    overrides = [
        "task=support",
        f"data.path={BANKING77}",
        PEFT[recipe],
        f"trainer.precision={PRECISIONS[side]}",
        "trainer.max_epochs=1",
        f"seed={seed}",
        "test=false",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "callbacks.best_weights=null",
        "callbacks.early_stopping=null",
        "+callbacks.cost._target_=__main__.EpochCost",
    ]
    if limit:
        overrides += [f"trainer.limit_train_batches={limit}", "trainer.limit_val_batches=0", "module.head_init=random"]
    cfg = compose_job(overrides, work / "run", work / "outputs")
    train(cfg)  # settles cfg's precision and dtype
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    encoder = instantiate(cfg.model).load_model()
    weights = sum(p.numel() for n, p in encoder.named_parameters() if p.dim() == 2 and "embeddings" not in n)
    return {
        "seconds": EpochCost.seconds,
        "batches": EpochCost.batches,
        "epoch_batches": EpochCost.epoch_batches,
        "padded": EpochCost.padded,
        "real": EpochCost.real,
        "val_acc": None if limit else metrics["history"][-1].get("val/acc"),
        "weights": weights,
        "threads": torch.get_num_threads(),
    }


def run_cell(recipe: str, side: str, seed: int, limit: int | None) -> dict:
    return child.run(__file__, ["--cell", f"{recipe},{side},{seed},{limit or 0}"], f"{recipe} {side} seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--recipes", default="lora,full")
    parser.add_argument("--emulated-batches", type=int, default=8, help="0: the whole epoch where bf16 is emulated")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        recipe, side, seed, limit = args.cell.split(",")
        child.report(cell(recipe, side, int(seed), int(limit) or None))
        return

    from domaintune import precision

    native = precision.native_bf16("auto")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"threads {torch.get_num_threads()}; 1024x1024 matmul peak: fp32 {peak['fp32']:.1f} GFLOP/s, "
        f"bf16 {peak['bf16']:.1f} GFLOP/s; native bf16: {'yes' if native else 'no'}",
        flush=True,
    )
    rows, chosen = [], {}
    for recipe in args.recipes.split(","):
        for side in ("fp32", "bf16"):
            emulated = side == "bf16" and not native
            limit = args.emulated_batches if emulated and args.emulated_batches else None
            for seed in range(1 if emulated else args.seeds):  # an emulated epoch once: it is slow
                r = run_cell(recipe, side, seed, limit)
                epoch = r["seconds"] * r["epoch_batches"] / r["batches"]
                flops = (4 if recipe == "lora" else 6) * r["weights"] * r["padded"] / r["seconds"] / 1e9
                rows.append({"recipe": recipe, "side": side, "seed": seed, "epoch": epoch, "limit": limit, **r})
                print(
                    f"  {recipe:4s} {side}  seed {seed}: epoch {epoch:7.1f} s"
                    + (f" (extrapolated from {r['batches']} of {r['epoch_batches']} batches)" if limit else "")
                    + f", val acc {r['val_acc'] if r['val_acc'] is not None else 'not measured'}"
                    + f", {flops:.1f} GFLOP/s = {flops / peak[side]:.0%} of the {side} matmul peak"
                    + f", padded/real tokens {r['padded'] / r['real']:.3f}",
                    flush=True,
                )
        chosen[recipe] = verdict(recipe, rows)
    print("\n| recipe | precision | epoch s | val acc | note |\n|---|---|---|---|---|")
    for recipe in args.recipes.split(","):
        for side in ("fp32", "bf16"):
            mine = [r for r in rows if r["recipe"] == recipe and r["side"] == side]
            accs = [r["val_acc"] for r in mine if r["val_acc"] is not None]
            note = f"first {mine[0]['batches']} batches, extrapolated" if mine[0]["limit"] else f"{len(mine)} seeds"
            acc = " / ".join(f"{a:.4f}" for a in accs) or "not measured"
            print(f"| {recipe} | {side} | {min(r['epoch'] for r in mine):.1f} | {acc} | {note} |")
    settled = precision.BF16 if native else precision.FP32
    print(
        f"\ntrainer.precision=auto picks {settled} on this machine; the measurements say: "
        + "; ".join(f"{recipe}: {text}" for recipe, text in chosen.items())
    )


def verdict(recipe: str, rows: list[dict]) -> str:
    """bf16 is the better default where its epoch is faster and its val acc lies within fp32's seed spread."""
    fp32 = [r for r in rows if r["recipe"] == recipe and r["side"] == "fp32"]
    bf16 = [r for r in rows if r["recipe"] == recipe and r["side"] == "bf16"]
    faster = min(r["epoch"] for r in bf16) < min(r["epoch"] for r in fp32)
    speed = min(r["epoch"] for r in fp32) / min(r["epoch"] for r in bf16)
    if not faster:
        return f"bf16 is {1 / speed:.1f}x slower: fp32"
    accs, theirs = [r["val_acc"] for r in fp32], [r["val_acc"] for r in bf16 if r["val_acc"] is not None]
    if not theirs:
        return f"bf16 is {speed:.2f}x faster, its accuracy not measured: fp32"
    spread = max(accs) - min(accs)
    within = all(min(accs) - spread <= a <= max(accs) + spread for a in theirs)
    return f"bf16 is {speed:.2f}x faster and its val acc {'is' if within else 'is NOT'} within fp32's spread: " + (
        "bf16" if within else "fp32"
    )


if __name__ == "__main__":
    main()
