"""Framework overhead: one training epoch with domaintune vs a plain PyTorch loop, side by side.

Same model (all-MiniLM-L6-v2 + mean pooling + linear head), same peft setting, same data
(BANKING77 train), same batch size and the very same length-grouped batches, fused AdamW and
glibc keeping freed memory on both sides (our training's `reuse_freed_memory` callback), so the
only difference is Lightning + domaintune around the loop. Also prints padded/real tokens.

    python bench/overhead.py [--rows N] [--peft lora|none] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = ROOT.parent / "shared" / "datasets" / "support" / "banking77"


class EpochTimer(pl.Callback):
    """Seconds from the first training batch's start to the last one's end (no validation)."""

    seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        EpochTimer.seconds.append(time.perf_counter() - self.started)


def compose(overrides: list[str]):
    """The run's config with its precision settled, as train() settles it (both sides read it)."""
    from domaintune import precision, registry
    from domaintune.config import compose_job

    registry.add_plugin_folders()
    run_dir = Path(tempfile.mkdtemp(prefix="overhead-"))
    cfg = compose_job(overrides, run_dir, run_dir / "outputs")
    precision.settle(cfg)
    return cfg


def data_overrides(data_path: Path, peft: str) -> list[str]:
    return [
        "task=support",
        f"data.path={data_path}",
        f"peft={peft}",
        "logger=none",
        "test=false",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "callbacks.best_weights=null",
        "callbacks.early_stopping=null",
        "trainer.enable_progress_bar=false",
        "+callbacks.timer._target_=__main__.EpochTimer",
    ]


def domaintune_epoch(cfg) -> float:
    from domaintune.train import train

    train(cfg)
    return EpochTimer.seconds[-1]


def plain_epoch(cfg) -> float:
    """The same epoch written by hand: encoder, mean pooling, head, AdamW, warm-up schedule."""
    from hydra.utils import instantiate
    from transformers import get_scheduler

    from domaintune import allocator
    from domaintune.modules.sequence_classification import pool

    pl.seed_everything(cfg.seed)
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup("fit")
    encoder = backbone.load_model()
    encoder.pooler = None
    if cfg.peft:
        from peft import get_peft_model

        encoder = get_peft_model(encoder, instantiate(cfg.peft))
    head = torch.nn.Sequential(
        torch.nn.Dropout(0.1), torch.nn.Linear(encoder.config.hidden_size, datamodule.num_labels)
    )
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for p in encoder.parameters() if p.requires_grad],
                "lr": cfg.module.lr,
                "weight_decay": 0.01,
            },
            {"params": head.parameters(), "lr": cfg.module.head_lr, "weight_decay": 0.0},
        ],
        fused=True,  # as domaintune's training on this CPU
    )
    loader = datamodule.train_dataloader()
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=int(0.1 * len(loader)), num_training_steps=len(loader)
    )
    encoder.train()
    head.train()
    allocator.keep_freed_memory()  # as the reuse_freed_memory callback does while our side fits
    started = time.perf_counter()
    for batch in loader:
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = head(pool(out.last_hidden_state, batch["attention_mask"], "mean"))
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - started
    allocator.give_back_freed_memory()
    return seconds


def padding_ratio(lengths: list[int], batches: list[list[int]]) -> float:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="train rows to use (0: all of BANKING77 train)")
    parser.add_argument("--peft", default="lora", choices=["lora", "none"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    data_path = BANKING77
    if args.rows:
        import pandas as pd

        subset = Path(tempfile.mkdtemp(prefix="b77-")) / "train.csv"
        pd.read_csv(BANKING77 / "train.csv").sample(args.rows, random_state=0).to_csv(subset, index=False)
        data_path = subset
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch threads: {torch.get_num_threads()}, data: {data_path}, peft: {args.peft}", flush=True)

    ours, plain = [], []
    for _ in range(args.repeats):  # alternate, so drift on the machine hits both sides alike
        plain.append(plain_epoch(compose(data_overrides(data_path, args.peft))))
        ours.append(domaintune_epoch(compose(data_overrides(data_path, args.peft))))
        print(f"  epoch seconds: plain PyTorch {plain[-1]:.1f}  domaintune {ours[-1]:.1f}", flush=True)

    cfg = compose(data_overrides(BANKING77, args.peft))
    from hydra.utils import instantiate

    from domaintune.data.batching import LengthGroupedBatchSampler

    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=instantiate(cfg.model).load_tokenizer())
    datamodule.setup("fit")
    lengths = [len(ids) for ids in datamodule.datasets["train"].ids]
    grouped = list(
        LengthGroupedBatchSampler(lengths, cfg.data.batch_size, shuffle=True, seed=0, window=cfg.data.length_window)
    )
    order = np.random.default_rng(0).permutation(len(lengths)).tolist()
    random_batches = [order[i : i + cfg.data.batch_size] for i in range(0, len(order), cfg.data.batch_size)]

    ratio = min(ours) / min(plain)
    print(f"domaintune / plain PyTorch epoch time: {min(ours):.1f}s / {min(plain):.1f}s = {ratio:.3f}  (bar <= 1.05)")
    print(
        f"padded / real tokens, BANKING77 train, batch {cfg.data.batch_size}: length-grouped "
        f"{padding_ratio(lengths, grouped):.3f}  (bar <= 1.15), random batches "
        f"{padding_ratio(lengths, random_batches):.3f}"
    )
    sys.exit(0 if ratio <= 1.05 else 1)


if __name__ == "__main__":
    main()
