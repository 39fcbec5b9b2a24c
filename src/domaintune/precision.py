"""The numeric precision a run computes in, settled by what the machine running it does natively.

`trainer.precision: auto` becomes bf16-mixed (bfloat16 autocast) where the hardware multiplies
in bfloat16 (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX) and 32-true elsewhere: a CPU
without those instructions emulates bfloat16 at a small fraction of its float32 speed (2-core
AVX2 here: a MiniLM epoch 13x slower, `bench/precision.py`). `model.dtype: auto` keeps the
frozen base weights in bfloat16 under an adapter when the run computes in bf16, else float32
(full fine-tuning updates the weights themselves, which float32 keeps from losing small
updates). A finished run is used in its own precision, except bf16 on a machine that lacks it.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies in bfloat16 natively (Linux reports it in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(accelerator: str) -> bool:
    """Whether `trainer.accelerator` (cpu, gpu, cuda or auto) computes in bfloat16 natively here."""
    import torch

    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return accelerator in ("cpu", "auto") and cpu_has_bf16()


def is_bf16(precision) -> bool:
    return str(precision).startswith("bf16")


def settle(cfg) -> None:
    """Replace `auto` in `trainer.precision` and `model.dtype` by what this run computes in, so that
    the run's config.yaml records it."""
    from omegaconf import open_dict

    with open_dict(cfg):
        if str(cfg.trainer.precision) == AUTO:
            cfg.trainer.precision = BF16 if native_bf16(cfg.trainer.accelerator) else FP32
        if cfg.model.get("dtype") == AUTO:
            adapter = bool(cfg.get("peft"))
            cfg.model.dtype = "bfloat16" if adapter and is_bf16(cfg.trainer.precision) else "float32"


def settle_for_inference(cfg) -> None:
    """A finished run computes in its own precision, except bfloat16 where this machine emulates
    it: then float32, weights included (a run trained on a GPU, used on a laptop)."""
    from omegaconf import open_dict

    if is_bf16(cfg.trainer.precision) and not native_bf16(cfg.trainer.accelerator):
        with open_dict(cfg):
            cfg.trainer.precision = FP32
            if cfg.model.get("dtype") == "bfloat16":
                cfg.model.dtype = "float32"


def autocast(precision, device):
    """The context a forward pass outside the Trainer (probe features, predict) runs in: the same
    bfloat16 autocast Lightning applies to its steps under bf16-mixed, else nothing."""
    import torch

    if not is_bf16(precision):
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
