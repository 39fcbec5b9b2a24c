"""`trainer.precision: auto` and `model.dtype: auto`: settled by what the machine computes in
natively, recorded in the run's config, and used by forward passes outside the Trainer."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from domaintune import precision
from domaintune.runs import load_run
from helpers import TINY


@pytest.mark.parametrize(
    "native, peft, expected",
    [
        (True, "peft=lora", ("bf16-mixed", "bfloat16")),  # frozen base weights in bf16 under an adapter
        (True, "peft=none", ("bf16-mixed", "float32")),  # full fine-tuning keeps float32 weights
        (False, "peft=lora", ("32-true", "float32")),  # emulated bf16 is ~20x slower: float32
    ],
)
def test_auto_follows_the_hardware(make_cfg, monkeypatch, native, peft, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: native)
    cfg = make_cfg("task=legal", *TINY, peft)
    assert (cfg.trainer.precision, cfg.model.dtype) == ("auto", "auto")  # the YAML default
    precision.settle(cfg)
    assert (cfg.trainer.precision, cfg.model.dtype) == expected


def test_a_setting_is_kept(make_cfg, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: True)
    cfg = make_cfg("task=legal", *TINY, "trainer.precision=32-true", "model.dtype=bfloat16")
    precision.settle(cfg)
    assert (cfg.trainer.precision, cfg.model.dtype) == ("32-true", "bfloat16")


def test_a_bf16_run_is_used_in_float32_where_bf16_is_emulated(monkeypatch):
    cfg = OmegaConf.create(
        {"trainer": {"precision": "bf16-mixed", "accelerator": "cpu"}, "model": {"dtype": "bfloat16"}}
    )
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: True)
    precision.settle_for_inference(cfg)
    assert (cfg.trainer.precision, cfg.model.dtype) == ("bf16-mixed", "bfloat16")
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: False)
    precision.settle_for_inference(cfg)
    assert (cfg.trainer.precision, cfg.model.dtype) == ("32-true", "float32")


def test_the_shared_run_recorded_its_precision_and_predicts_in_it(tiny_run, monkeypatch):
    """The run's config.yaml holds what it trained in (this CPU: float32, or bf16 where native);
    predict's forward runs under the module's precision: bf16 autocast changes its logits."""
    run, _ = tiny_run
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.trainer.precision == ("bf16-mixed" if precision.native_bf16("cpu") else "32-true")
    monkeypatch.setattr(precision, "native_bf16", lambda accelerator: False)
    module = load_run(run).module
    assert module.compute_precision == "32-true"
    ids = torch.randint(1000, 5000, (4, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad(), precision.autocast("32-true", "cpu"):
        full = module(ids, mask)
    with torch.no_grad(), precision.autocast("bf16-mixed", "cpu"):
        half = module(ids, mask)
    assert full.dtype == torch.float32 and not torch.equal(full, half.float())
    assert torch.allclose(full, half.float(), atol=0.1)


def test_adamw_is_fused_where_torch_has_the_kernel_and_lightning_can_clip(tiny_run):
    """One fused kernel per step (docs/results.md, "AdamW: one step"); a device without the kernel,
    and mixed precision, where Lightning refuses to clip gradients for an optimizer that unscales
    them itself, keep torch's default implementation (foreach on CUDA). A plugin's param_groups may
    hand over generators."""
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    module = load_run(tiny_run[0]).module
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, precision_plugin=Precision())
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] and optimizer.param_groups[0]["fused"]
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    module.param_groups = lambda: [{"params": (p for p in module.parameters() if p.requires_grad), "lr": 1e-3}]
    optimizer = module.configure_optimizers()["optimizer"]
    assert sum(p.numel() for p in optimizer.param_groups[0]["params"]) == trainable
    module.trainer.precision_plugin = MixedPrecision("bf16-mixed", "cpu")
    assert module.configure_optimizers()["optimizer"].defaults["fused"] is None
    module.trainer.precision_plugin = Precision()
    module.to("meta")
    assert module.configure_optimizers()["optimizer"].defaults["fused"] is None
