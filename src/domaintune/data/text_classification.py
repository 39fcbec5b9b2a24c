"""Text classification data: read, split, label-map, tokenize (cached) and batch by length."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from domaintune.data.batching import LengthGroupedBatchSampler, TokenizedDataset, pad_collate
from domaintune.data.cleaning import log_cleaning
from domaintune.data.readers import files_stamp, read_table
from domaintune.data.splits import canonical, load_splits, split_files
from domaintune.data.tokenized import texts_fingerprint, tokenize, tokenizer_fingerprint
from domaintune.errors import DataError

log = logging.getLogger(__name__)
_LOADED: dict[tuple, tuple] = {}  # (files, settings, tokenizer) -> (labels, tokenized splits, fingerprint)



class TextClassificationDataModule(pl.LightningDataModule):
    """`path` is one file (split here, stratified and seeded), a folder of split files, or a
    folder of one text file per label. Domain plugins subclass it to set `default_path`."""

    default_path: Path | None = None

    def __init__(
        self,
        tokenizer,
        path: str | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        length_window: int = 50,
        num_workers: int = 0,
        cache_dir: str | None = None,
        dedupe: bool = True,
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
        self.text_column, self.label_column = text_column, label_column
        self.max_length, self.batch_size, self.eval_batch_size = max_length, batch_size, eval_batch_size
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.length_window, self.num_workers = length_window, num_workers
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.dedupe = dedupe
        self.labels: list[str] = []
        self.cleaning: dict[str, int] = {}
        self.datasets: dict[str, TokenizedDataset] = {}
        self.fingerprint = ""

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # fit and test reuse the tokenized splits
            return
        key = (files_stamp(self.path) if self.path.exists() else str(self.path), self.text_column, self.label_column,
               self.val_fraction, self.test_fraction, self.seed, self.dedupe, self.max_length,
               tokenizer_fingerprint(self.tokenizer))
        if key not in _LOADED:  # the trials of a sweep read and tokenize the data once per process
            _LOADED[key] = self._load()
        self.labels, self.datasets, self.fingerprint, self.cleaning = _LOADED[key]
        log.info(
            "data %s: %s rows, %d labels, fingerprint %s", self.path,
            " / ".join(f"{k} {len(v)}" for k, v in self.datasets.items()), len(self.labels), self.fingerprint,
        )
        log_cleaning(self.path, self.cleaning)

    def _load(self) -> tuple[list[str], dict[str, TokenizedDataset], str, dict[str, int]]:
        splits, report = load_splits(self.path, self.text_column, self.label_column, self.val_fraction,
                                     self.test_fraction, self.seed, self.dedupe)
        labels = sorted(set(splits["train"].label))
        index = {label: i for i, label in enumerate(labels)}
        digest, datasets = hashlib.sha256(), {}
        for name, frame in splits.items():
            texts = frame.text.tolist()
            digest.update(f"{name}:{texts_fingerprint(texts)}:{texts_fingerprint(frame.label.tolist())}".encode())
            ids = tokenize(texts, self.tokenizer, self.max_length, self.cache_dir)
            datasets[name] = TokenizedDataset(ids, [index[label] for label in frame.label])
        return labels, datasets, digest.hexdigest()[:16], report.counts()

    def use_as_test(self, path: Path, data) -> None:
        """Every row of `path` (a file, or a folder's test file) becomes the test split, read with
        `data`'s column settings; train and validation stay (`evaluate data.path=...`)."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        frame = canonical(read_table(file), file, data.get("text_column"), data.get("label_column"))
        unknown = sorted(set(frame.label) - set(self.labels))
        if unknown:
            raise DataError(f"{file}: labels the run never trained on: {unknown[:5]}; evaluate on data with the run's "
                            f"{len(self.labels)} labels")
        index = {label: i for i, label in enumerate(self.labels)}
        ids = tokenize(frame.text.tolist(), self.tokenizer, self.max_length, self.cache_dir)
        self.datasets = {**self.datasets, "test": TokenizedDataset(ids, [index[label] for label in frame.label])}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def module_inputs(self) -> dict:
        """What the module needs to know about the data to build its head."""
        counts = [0] * self.num_labels
        for label in self.datasets["train"].labels:
            counts[label] += 1
        return {"num_labels": self.num_labels, "labels": self.labels, "class_counts": counts}

    def save_artifacts(self, folder: Path) -> None:
        (Path(folder) / "label_map.json").write_text(json.dumps({label: i for i, label in enumerate(self.labels)}, indent=2))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        sampler = LengthGroupedBatchSampler(
            [len(ids) for ids in dataset.ids],
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle, seed=self.seed, window=self.length_window,
        )
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=pad_collate(self.tokenizer.pad_token_id or 0),
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        overfitting = bool(self.trainer and self.trainer.overfit_batches)  # debug=overfit: the same batches every epoch
        return self._loader("train", shuffle=not overfitting)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
