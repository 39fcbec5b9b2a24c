"""The contract between the commands and a plugin kind, written as code.

A datamodule kind subclasses `TaskDataModule`, a module kind `TaskModule` (as a peft tuner
subclasses `BaseTuner`): `train`, `evaluate`, `prepare`, `init_from`, `generate` and `export`
call only what these classes declare, never a file test or a private method. Adding a kind is
its own file or folder, its registration (`domaintune.kinds.register_kind`, which declares
its metrics, commands, opponent and export format), a plugin name (an entry point or a plugin
folder's dict) and a task config; the base classes carry what every kind shares (split fractions, the per-process
data cache, dataloaders, checkpoint hooks, optimizer and schedule, weights in safetensors).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import pandas as pd
import torch

from domaintune.errors import DataError, UserError

log = logging.getLogger(__name__)
_LOADED: dict[tuple, dict[str, Any]] = {}  # (kind, files, settings) -> what `load` returned, once per process


class TaskDataModule(pl.LightningDataModule, abc.ABC):
    """Reads `path` (or the kind's `default_path`), cleans and splits it, tokenizes and batches.

    A kind implements `load` (read -> clean -> carve -> tokenize), `loader`, `module_inputs`,
    `inputs_from_run`, `use_as_test` and `read_raw` (all through one reader of its files), and
    says which columns its rows have."""

    default_path: ClassVar[Path | None] = None  # a domain plugin's example data
    text_columns: ClassVar[tuple[str, ...]] = ("text",)  # the first one judges duplicates and leakage
    labelled: ClassVar[bool] = True  # rows carry a class: stratified splits, label checks, balance report

    def __init__(
        self,
        tokenizer,
        path: str | None,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        num_workers: int,
        dedupe: bool,
    ):
        super().__init__()
        if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise DataError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction}: each must be in (0, 1) "
                "(test may be 0 when the data has a test file) and together below 1"
            )
        if path is None and self.default_path is None:
            raise DataError("data.path is not set; point it at a data file or folder")
        self.tokenizer = tokenizer
        self.path = Path(path) if path is not None else self.default_path
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_fraction, self.test_fraction, self.seed, self.dedupe = val_fraction, test_fraction, seed, dedupe
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self.fingerprint = ""
        self.cleaning: dict[str, int] = {}

    # -- what a kind implements ------------------------------------------------------------------
    @abc.abstractmethod
    def cache_key(self) -> tuple:
        """The settings, besides the files and split fractions, that decide what `load` returns."""

    @abc.abstractmethod
    def load(self) -> dict[str, Any]:
        """Read, clean, split and tokenize: the attributes `setup` sets, at least `datasets`
        (split -> dataset), `fingerprint` (of the rows trained on) and `cleaning` (counts removed)."""

    @abc.abstractmethod
    def loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        """Batches of one split; `shuffle` for training."""

    @abc.abstractmethod
    def module_inputs(self) -> dict:
        """What the module needs to know about the data (labels, tokenizer), after `setup`."""

    @abc.abstractmethod
    def inputs_from_run(self, folder: Path) -> dict:
        """The same, for a finished run, from what `save_artifacts` left in its folder."""

    @abc.abstractmethod
    def use_as_test(self, path: Path, data: Mapping) -> None:
        """Every row of `path` becomes the test split, read with `data`'s column settings; train
        and validation stay (`evaluate data.path=...`)."""

    @abc.abstractmethod
    def read_raw(self, report) -> dict[str, pd.DataFrame]:
        """The splits `path` brings (or one `train` frame) with `text_columns` and the target, read
        as `load` reads them, for `prepare`; rows dropped for an empty field are counted in
        `report.empty`."""

    def loader_generator(self) -> torch.Generator:
        """The DataLoader's own generator (its workers' seeds come from it): loaders never draw
        from the global one, which then holds the training steps' draws (dropout) alone, so a
        resumed run that restores it continues exactly as the uninterrupted run did."""
        return torch.Generator().manual_seed(self.seed)

    def grouped_loader(
        self, dataset, lengths: list[int], shuffle: bool, collate, window: int
    ) -> torch.utils.data.DataLoader:
        """Batches of rows of similar length (`lengths`, one per row; padding is most of a
        transformer's CPU time otherwise), shuffled by epoch for training, sorted within `window`
        batches at a time."""
        from domaintune.data.batching import LengthGroupedBatchSampler

        sampler = LengthGroupedBatchSampler(
            lengths,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            window=window,
            epoch=self.trained_epoch,
        )
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            generator=self.loader_generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def trained_epoch(self) -> int | None:
        """The epoch the trainer is on, None outside a fit: training samplers shuffle by it, so a
        resumed run sees the batches the uninterrupted one saw."""
        return self.trainer.current_epoch if self.trainer is not None else None

    # -- optional hooks -------------------------------------------------------------------------
    def read_inputs(self, path: Path, data: Mapping, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Rows to predict on (`domaintune predict`), `chunk_rows` at a time and in file order, so a
        file larger than memory streams: an input column, and the true answer when the file has one."""
        raise UserError(f"{type(self).__name__} data cannot be predicted on yet")

    def report(self) -> dict:
        """What metrics.json's `data` adds for this kind (e.g. rows cut for max_length)."""
        return {}

    def prepare_report(self, splits: dict[str, pd.DataFrame]) -> tuple[dict, list[str]]:
        """What `prepare` adds for this kind's cleaned splits: keys of summary.json and lines of
        report.md (e.g. entity counts per type)."""
        return {}, []

    def module_variant(self) -> str | None:
        """After `setup`: the node of the module config this data needs built instead of the
        configured module (`multi_label` when rows hold label sets), or None."""
        return None

    def save_artifacts(self, folder: Path) -> None:
        """Files a finished run needs to be loaded again (e.g. its label map)."""

    def check_continues(self, folder: Path) -> None:
        """`init_from=<folder>`: a one-line error when this data cannot continue that run."""

    # -- shared ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # fit and test reuse the tokenized splits
            return
        from domaintune.data.readers import files_stamp
        from domaintune.data.tokenized import tokenizer_fingerprint

        key = (
            type(self).__qualname__,
            files_stamp(self.path) if self.path.exists() else str(self.path),
            self.val_fraction,
            self.test_fraction,
            self.seed,
            self.dedupe,
            tokenizer_fingerprint(self.tokenizer),
            *self.cache_key(),
        )
        if key not in _LOADED:  # the trials of a sweep read and tokenize the data once per process
            _LOADED[key] = self.load()
        for name, value in _LOADED[key].items():
            setattr(self, name, value)
        from domaintune.data.cleaning import log_cleaning

        log.info(
            "data %s: %s rows, fingerprint %s",
            self.path,
            " / ".join(f"{k} {len(v)}" for k, v in self.datasets.items()),
            self.fingerprint,
        )
        log_cleaning(self.path, self.cleaning)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        # debug=overfit: the same batches every epoch
        overfitting = bool(self.trainer and self.trainer.overfit_batches)
        return self.loader("train", shuffle=not overfitting)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self.loader("test", shuffle=False)


class TaskModule(pl.LightningModule, abc.ABC):
    """A model for one kind of task. The constructor takes `backbone`, `peft_config` and what its
    datamodule's `module_inputs` gives; the steps log `val/*` and `test/*` metrics, one of which is
    the run's `optimized_metric`. The rest of the contract has working defaults: trainable weights
    saved and loaded as safetensors, AdamW with a warm-up schedule, no baseline. A kind overrides
    what it does better (Hugging Face folders, a verdict against its base model, predict, export).
    What the commands need to know of a kind (its metrics' directions, what it serves, its
    opponent, its export format) is declared once, in its registration (`domaintune.kinds`)."""

    def __init__(self, peft_config=None):
        super().__init__()
        self.has_adapter = peft_config is not None
        # The last test stage's per-row scores of this model by metric (verdict.Scored): what
        # `evaluate` keeps so that two runs can be compared on the same rows (a sweep's best trial
        # against its defaults trial). A kind with a verdict fills it.
        self.scored: dict = {}
        self.base_scored: dict = {}  # the same for the base model's opponent, where the kind has one
        # Checkpoints keep only what trains (adapter/head or the whole model): frozen base weights
        # are loaded from the model anyway, so leave them out and load the rest non-strictly.
        self.strict_loading = not self.has_adapter
        # The precision forward passes outside the Trainer's steps run in (probe features, predict):
        # the run's settled `trainer.precision` (domaintune.precision), given by runs.build_module.
        self.compute_precision = "32-true"

    @staticmethod
    def adapt(model, peft_config):
        """The model behind a peft adapter, or as it is when there is none."""
        if peft_config is None:
            return model
        from peft import get_peft_model

        return get_peft_model(model, peft_config)

    # -- results and weights ---------------------------------------------------------------------
    def report(self) -> dict:
        """What metrics.json adds after testing: `verdict` (from `domaintune.verdict`), `baseline`, ..."""
        return {}

    def save_artifacts(self, folder: Path) -> None:
        """The trained weights: by default every trainable tensor, in `weights.safetensors`."""
        from safetensors.torch import save_file

        save_file(
            {k: v.detach().contiguous() for k, v in self.trainable_state().items()}, folder / "weights.safetensors"
        )

    def load_weights(self, folder: Path) -> None:
        """A finished run's weights (`evaluate`, `init_from`, `generate`, `export`)."""
        from safetensors.torch import load_file

        self.check_fits(
            folder, self.load_state_dict(load_file(folder / "weights.safetensors"), strict=False).unexpected_keys
        )

    @staticmethod
    def check_fits(folder: Path, unexpected: list[str]) -> None:
        if unexpected:
            raise UserError(
                f"{folder}: its weights do not fit this model ({len(unexpected)} unknown, e.g. {unexpected[0]}); "
                "use the run's own model and peft settings"
            )

    def test_every_row(self, rows: int) -> None:
        """`evaluate data.path=<file>`: the test stage is about to score `rows` new rows; a kind
        that scores only a subset by default (generations) widens it here."""

    def save_test_outputs(self, folder: Path) -> None:
        """Files of the last test stage beside its scores (a confusion matrix, generations)."""

    def predict(self, texts: list[str], datamodule: TaskDataModule, **options) -> list:
        """Answers for raw texts, in input order (`domaintune predict`, `domaintune generate`)."""
        raise UserError(f"{type(self).__name__} cannot predict yet")

    def score_predictions(self, truth: list[str], predicted: list[str]) -> dict:
        """`domaintune predict` on a file with answers: scores of the predicted answers against
        them (by default none)."""
        return {}

    def export(self, folder: Path, datamodule: TaskDataModule, **options) -> dict:
        """Standard model files others load without domaintune (`domaintune export`); returns what
        the model card needs: `library_name` and a `usage` snippet (markdown)."""
        raise UserError(f"{type(self).__name__} cannot export yet")

    # -- optimisation and checkpoints ------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """AdamW parameter groups: by default every trainable tensor at `lr` and `weight_decay`."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.hparams.lr, "weight_decay": self.hparams.get("weight_decay", 0.0)}]

    def configure_optimizers(self):
        from transformers import get_scheduler

        groups = [{**group, "params": list(group["params"])} for group in self.param_groups()]  # generators too
        fused = _fused_kernel_for([p for g in groups for p in g["params"]], self.trainer.precision_plugin)
        optimizer = torch.optim.AdamW(groups, fused=fused or None)  # None: torch's default (foreach on CUDA)
        total = self.trainer.estimated_stepping_batches
        scheduler = get_scheduler(
            self.hparams.get("schedule", "linear"),
            optimizer,
            num_warmup_steps=int(self.hparams.get("warmup_ratio", 0.0) * total),
            num_training_steps=total,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _trainable(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        frozen = {name for name, p in self.named_parameters(remove_duplicate=False) if not p.requires_grad}  # tied too
        return {k: v for k, v in state.items() if k not in frozen}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What training changes: the trainable parameters and the buffers (a multi-label module's
        thresholds), not the frozen base weights. Saved, checkpointed and kept as the best epoch's."""
        return self._trainable(self.state_dict())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self._trainable(checkpoint["state_dict"])


def _fused_kernel_for(params: list[torch.Tensor], precision_plugin) -> bool:
    """Whether AdamW can be torch's fused kernel: torch has one for every parameter's device and
    dtype (CPU, CUDA and more), and no gradient scaling or mixed precision is in the way. Lightning
    refuses to clip gradients under `bf16-mixed`/`16-mixed` for an optimizer that unscales them
    inside its step, as a fused one does, and a plugin's gradient scaler would be skipped. The
    update is AdamW's, in one kernel instead of a loop over tensors (docs/results.md, "AdamW: one
    step"); its rounding differs slightly."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    try:
        from torch.optim.optimizer import _device_dtype_check_for_fused  # torch's own test; private
    except ImportError:
        return False
    if isinstance(precision_plugin, MixedPrecision) or getattr(precision_plugin, "scaler", None) is not None:
        return False
    try:
        for p in params:
            _device_dtype_check_for_fused(p)
    except RuntimeError:
        return False
    return True
