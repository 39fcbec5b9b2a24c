"""Text classification data: read, split, label-map, tokenize (cached) and batch by length."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader

from domaintune.api import TaskDataModule
from domaintune.data.batching import LengthGroupedBatchSampler, TokenizedDataset, pad_collate
from domaintune.data.readers import read_chunks, read_table
from domaintune.data.splits import (
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    canonical,
    clean_labels,
    clean_texts,
    find_column,
    load_splits,
    read_labelled,
    split_files,
)
from domaintune.data.tokenized import texts_fingerprint, tokenize
from domaintune.errors import DataError, UserError


class TextClassificationDataModule(TaskDataModule):
    """`path` is one file (split here, stratified and seeded), a folder of split files, or a
    folder of one text file per label. Domain plugins subclass it to set `default_path`."""

    def __init__(
        self,
        tokenizer,
        *,  # the rest from conf/data/text_classification.yaml, where their defaults are
        path: str | None,
        text_column: str | None,
        label_column: str | None,
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        length_window: int,
        num_workers: int,
        cache_dir: str | None,
        dedupe: bool,
    ):
        super().__init__(
            tokenizer, path, batch_size, eval_batch_size, val_fraction, test_fraction, seed, num_workers, dedupe
        )
        self.text_column, self.label_column = text_column, label_column
        self.max_length, self.length_window = max_length, length_window
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.labels: list[str] = []

    def cache_key(self) -> tuple:
        return self.text_column, self.label_column, self.max_length

    def load(self) -> dict:
        splits, report = load_splits(
            self.path,
            self.text_column,
            self.label_column,
            self.val_fraction,
            self.test_fraction,
            self.seed,
            self.dedupe,
        )
        labels = sorted(set(splits["train"].label))
        index = {label: i for i, label in enumerate(labels)}
        digest, datasets = hashlib.sha256(), {}
        for name, frame in splits.items():
            texts = frame.text.tolist()
            digest.update(f"{name}:{texts_fingerprint(texts)}:{texts_fingerprint(frame.label.tolist())}".encode())
            ids = tokenize(texts, self.tokenizer, self.max_length, self.cache_dir)
            datasets[name] = TokenizedDataset(ids, [index[label] for label in frame.label])
        return {
            "labels": labels,
            "datasets": datasets,
            "fingerprint": digest.hexdigest()[:16],
            "cleaning": report.counts(),
        }

    @classmethod
    def read_raw(cls, path: Path, data: Mapping, report) -> dict[str, pd.DataFrame]:
        splits, empty = read_labelled(path, data.get("text_column"), data.get("label_column"))
        report.empty.update(empty)
        return splits

    def use_as_test(self, path: Path, data: Mapping) -> None:
        """Every row of `path` (a file, or a folder's test file) becomes the test split, read with
        `data`'s column settings; train and validation stay (`evaluate data.path=...`)."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        frame = canonical(read_table(file), file, data.get("text_column"), data.get("label_column"))
        unknown = sorted(set(frame.label) - set(self.labels))
        if unknown:
            raise DataError(
                f"{file}: labels the run never trained on: {unknown[:5]}; evaluate on data with the run's "
                f"{len(self.labels)} labels"
            )
        index = {label: i for i, label in enumerate(self.labels)}
        ids = tokenize(frame.text.tolist(), self.tokenizer, self.max_length, self.cache_dir)
        self.datasets = {**self.datasets, "test": TokenizedDataset(ids, [index[label] for label in frame.label])}

    def read_inputs(self, path: Path, data: Mapping, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """`text` (normalized as training text is) and, when the file has a label column, `label`."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        text = label = None
        for frame in read_chunks(file, chunk_rows):
            if text is None:  # the first chunk names the columns for all
                text = find_column(frame, data.get("text_column"), TEXT_COLUMNS, "text", file)
                try:
                    label = find_column(frame, data.get("label_column"), LABEL_COLUMNS, "label", file)
                except DataError:
                    pass
            rows = pd.DataFrame({"text": clean_texts(frame[text])})
            yield rows.assign(label=clean_labels(frame[label])) if label else rows

    def predict_batches(self, texts: list[str]):
        """(row numbers, batch) over `texts`, batches grouped by length as evaluation's are."""
        ids = tokenize(texts, self.tokenizer, self.max_length, None)
        sampler = LengthGroupedBatchSampler([len(row) for row in ids], self.eval_batch_size, shuffle=False)
        collate = pad_collate(self.tokenizer.pad_token_id or 0)
        for rows in sampler:
            yield rows, collate([(ids[i], 0) for i in rows])

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def module_inputs(self) -> dict:
        """What the module needs to know about the data to build its head."""
        counts = [0] * self.num_labels
        for label in self.datasets["train"].labels:
            counts[label] += 1
        return {"num_labels": self.num_labels, "labels": self.labels, "class_counts": counts}

    def inputs_from_run(self, folder: Path) -> dict:
        labels = list(json.loads((folder / "label_map.json").read_text()))
        return {"num_labels": len(labels), "labels": labels}

    def save_artifacts(self, folder: Path) -> None:
        (Path(folder) / "label_map.json").write_text(
            json.dumps({label: i for i, label in enumerate(self.labels)}, indent=2)
        )

    def check_continues(self, folder: Path) -> None:
        if self.inputs_from_run(folder)["labels"] != self.labels:
            raise UserError(
                f"init_from={folder}: the new data's labels differ from that run's; "
                "continue only on data with the same labels"
            )

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        sampler = LengthGroupedBatchSampler(
            [len(ids) for ids in dataset.ids],
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            window=self.length_window,
            epoch=self.trained_epoch,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=pad_collate(self.tokenizer.pad_token_id or 0),
            generator=self.loader_generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
