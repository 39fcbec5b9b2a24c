"""Pieces every built-in module kind uses."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
# (module class, backbone, data fingerprint, the module's probe settings) -> (the probe, the one that
# starts a head): the base model's opponent depends on nothing a sweep searches, so trials fit it once
_PROBES: dict[tuple, tuple] = {}


def gather_rows(module, values: list[torch.Tensor]) -> np.ndarray:
    """Per-row values a process collected over its shard of an evaluation split, from every
    process (DDP), as one array: the test verdict needs all the rows. Shards differ in length by
    at most a row, so each is padded to the longest for `all_gather`, and the padding dropped.
    A row may be a vector (a multi-label row's probabilities)."""
    local = torch.cat(values).detach().float().cpu() if values else torch.zeros(0)
    if module._trainer is None or module.trainer.world_size == 1:  # outside a fit (prepare) or one process
        return local.numpy()
    sizes = module.all_gather(torch.tensor(len(local), device=module.device)).view(-1).tolist()
    padded = torch.full((max(sizes), *local.shape[1:]), float("nan"), device=module.device)
    padded[: len(local)] = local.to(module.device)
    gathered = module.all_gather(padded).cpu()
    return torch.cat([gathered[rank, :size] for rank, size in enumerate(sizes)]).numpy()


def curve_line(curve: list[dict], metric: str) -> str:
    """A probe's data curve in words: '25% (402 rows) acc 0.81 [0.78, 0.84]; 50% ...', on `metric`
    where the curve has it, else on its first."""
    if metric not in curve[0]:
        metric = next(k for k in curve[0] if k.startswith("val/") and not k.endswith("_ci95"))
    return "; ".join(
        f"{p['fraction']:.0%} ({p['train_rows']} rows) {metric.removeprefix('val/')} {p[metric]:.3f} "
        f"[{p[metric + '_ci95'][0]:.3f}, {p[metric + '_ci95'][1]:.3f}]"
        for p in curve
    )


class EncoderWithHead:
    """What a module made of a pre-trained encoder (under a peft adapter, or fully trained) and a
    head of its own shares, whatever the head reads (a sentence vector, each token): the base
    encoder to compare with, the base model's probe (fitted once, starting the head under
    `head_init=probe`), weights saved and loaded, adapter merging and the learning rates of the
    two parts. The module calls `__init__(backbone, peft_config)` first, sets `encoder` and
    `head`, and implements `base_encoder()`, `fit_probe(datamodule)` and
    `probe_settings(datamodule)`."""

    def __init__(self, backbone, peft_config):
        super().__init__(peft_config)
        self.backbone = backbone
        self.probe = None  # the base model's opponent, once fitted (or loaded for use=base)
        self.head_start = None  # head_init=probe: the standardized probe the head started from
        self._base_copy = None  # full fine-tuning: the untouched base encoder, loaded when needed
        self.loaded_from: Path | None = None  # the finished run whose weights were loaded

    def _fit_probe(self) -> None:
        """The base model's opponent, fitted on frozen base features of train and chosen on
        validation; with `head_init=probe` its best standardized variant starts the head. It
        depends only on the base model, the data and `probe_settings`, so trials of a sweep fit
        it once."""
        datamodule = self.trainer.datamodule
        key = (type(self).__qualname__, self.backbone.key, datamodule.fingerprint, *self.probe_settings(datamodule))
        if key not in _PROBES:
            # under DDP every process sees its shard: all take rank 0's probe, so the copies agree
            _PROBES[key] = self.trainer.strategy.broadcast(self.fit_probe(datamodule), src=0)
        self.probe, start = _PROBES[key]
        log.info(
            "linear probe on the frozen base model (%s features, C=%g): %s",
            self.probe.features,
            self.probe.C,
            self.probe.scores,
        )
        if self.probe.curve:
            log.info(
                "base model on validation as its train rows grow: %s",
                curve_line(self.probe.curve, self.hparams.probe_metric),
            )
        if self.hparams.head_init == "probe" and self.loaded_from is None:  # loaded weights keep their own head
            self.head_start = start
            if not self.trainer.ckpt_path:  # a resumed run's head came back with its checkpoint
                weight, bias = start.folded()
                self.head[-1].weight.data.copy_(weight)
                self.head[-1].bias.data.copy_(bias)

    def baseline_report(self) -> dict:
        """metrics.json's `baseline`: the probe (how it was chosen, its validation scores) and the
        probe the head started from."""
        baseline = self.probe.report() if self.probe else {}
        if self.head_start is not None:
            baseline["head_init"] = {
                "features": self.head_start.features,
                "C": self.head_start.C,
                **{f"val/{k}": v for k, v in self.head_start.scores.items()},
            }
        return {"baseline": baseline} if baseline else {}

    def load_weights(self, folder: Path) -> None:
        """Start from a finished run's weights (`init_from`): its adapter (or encoder) and head."""
        from safetensors.torch import load_file

        from domaintune.errors import UserError

        if (folder / "adapter").is_dir():
            if not self.has_adapter:
                raise UserError(
                    f"init_from={folder}: that run trained an adapter; use the same peft setting (not peft=none)"
                )
            from peft import set_peft_model_state_dict

            loaded = set_peft_model_state_dict(
                self.encoder, load_file(folder / "adapter" / "adapter_model.safetensors")
            )
            unexpected = loaded.unexpected_keys
        else:
            if self.has_adapter:
                raise UserError(
                    f"init_from={folder}: that run fine-tuned the whole encoder; continue it with peft=none"
                )
            unexpected = self.encoder.load_state_dict(
                load_file(folder / "encoder" / "model.safetensors"), strict=False
            ).unexpected_keys
        self.check_fits(folder, unexpected)
        self.head.load_state_dict(load_file(folder / "head.safetensors"))
        self.loaded_from = folder

    @contextmanager
    def _base_encoder(self):
        """The encoder before fine-tuning: the adapter switched off, the encoder itself while it
        is untouched, or (full fine-tuning, once trained or loaded) a fresh copy of the base."""
        if self.has_adapter:
            with self.encoder.disable_adapter():
                yield self.encoder
        elif self.loaded_from is None and (self._trainer is None or self.trainer.global_step == 0):
            yield self.encoder
        else:
            if self._base_copy is None:
                self._base_copy = self.base_encoder().to(self.device).eval()
            yield self._base_copy

    def param_groups(self) -> list[dict]:
        """The head learns at its own rate, without weight decay (it starts from the probe or from scratch)."""
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        return [
            {"params": encoder_params, "lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
            {"params": list(self.head.parameters()), "lr": self.hparams.head_lr, "weight_decay": 0.0},
        ]

    def save_artifacts(self, folder: Path) -> None:
        """Best weights in safetensors: the peft adapter (or the whole encoder) and the head."""
        from safetensors.torch import save_file

        self.encoder.save_pretrained(folder / ("adapter" if self.has_adapter else "encoder"))
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, folder / "head.safetensors")
        if self.probe is not None:  # the cheaper model the verdict may recommend: `use=base`
            self.probe.save(folder)

    def use_base(self, folder: Path) -> None:
        """From now on predict and export with the base model's opponent, not the fine-tuned
        weights: the untouched base encoder and the run's probe (`probe.safetensors`) as the head."""
        from domaintune.modules.probe import Probe

        self.probe = Probe.load(folder)
        self.encoder, self.has_adapter = self.base_encoder().to(self.device).eval(), False
        self.head = self.probe.as_head().to(self.device)
        self.adopt_probe(self.probe)

    def adopt_probe(self, probe) -> None:
        """What else a kind takes from its probe when it becomes the model (a multi-label probe's
        thresholds)."""

    def merge(self) -> None:
        """Fold the adapter into the encoder's weights: the same outputs, a faster forward; for a
        finished run's module (predict, export), which no longer trains through the adapter."""
        if self.has_adapter:
            self.encoder, self.has_adapter = self.encoder.merge_and_unload(), False
