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
from domaintune.data.labels import LABELS, LabelReader, label_sets, labels_in, one_hot
from domaintune.data.readers import read_chunks, read_table
from domaintune.data.splits import load_splits, nested_rows, read_labelled, split_files
from domaintune.data.tokenized import texts_fingerprint, tokenize
from domaintune.errors import DataError, UserError


class TextClassificationDataModule(TaskDataModule):
    """`path` is one file (split here, stratified and seeded), a folder of split files, or a
    folder of one text file per label. Rows carry one label, or a set of labels (multi-label:
    see `domaintune.data.labels` for the ways a file writes them), which the module is told
    (`module_variant`). Domain plugins subclass it to set `default_path`."""

    def __init__(
        self,
        tokenizer,
        *,  # the rest from conf/data/text_classification.yaml, where their defaults are
        path: str | None,
        text_column: str | None,
        label_column: str | list[str] | None,
        label_separator: str | None,
        label_names: str | None,
        column_names: list[str] | None,
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
        train_fraction: float,
    ):
        super().__init__(
            tokenizer, path, batch_size, eval_batch_size, val_fraction, test_fraction, seed, num_workers, dedupe
        )
        settings = {
            "text_column": text_column,
            "label_column": label_column,
            "label_separator": label_separator,
            "label_names": label_names,
            "column_names": column_names,
        }
        self.reader = LabelReader.from_data(settings, self.path)
        if not 0 < train_fraction <= 1:
            raise UserError(f"data.train_fraction={train_fraction}: use a share of the train rows in (0, 1]")
        self.train_fraction = train_fraction
        self.max_length, self.length_window = max_length, length_window
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.labels: list[str] = []
        self.multi_label = False

    def cache_key(self) -> tuple:
        return self.reader, self.max_length, self.train_fraction

    def load(self) -> dict:
        splits, report = load_splits(
            self.path, self.reader, self.val_fraction, self.test_fraction, self.seed, self.dedupe
        )
        if self.train_fraction < 1:  # start small: a nested, stratified share of the clean train rows
            (kept,) = nested_rows(label_sets(splits["train"]).tolist(), (self.train_fraction,), self.seed)
            splits["train"] = splits["train"].iloc[kept].reset_index(drop=True)
        multi_label = LABELS in splits["train"]
        labels = sorted(labels_in(label_sets(splits["train"])))
        digest, datasets = hashlib.sha256(), {}
        for name, frame in splits.items():
            texts, targets = frame.text.tolist(), label_sets(frame).tolist()
            written = [str(t) for t in targets] if multi_label else frame.label.tolist()
            digest.update(f"{name}:{texts_fingerprint(texts)}:{texts_fingerprint(written)}".encode())
            ids = tokenize(texts, self.tokenizer, self.max_length, self.cache_dir)
            datasets[name] = TokenizedDataset(ids, self._targets(targets, labels, multi_label))
        return {
            "labels": labels,
            "multi_label": multi_label,
            "datasets": datasets,
            "fingerprint": digest.hexdigest()[:16],
            "cleaning": report.counts(),
        }

    @staticmethod
    def _targets(sets: list[tuple[str, ...]], labels: list[str], multi_label: bool) -> list:
        """What a batch's `labels` holds: class ids, or (multi-label) one 0/1 float per label."""
        if not multi_label:
            index = {label: i for i, label in enumerate(labels)}
            return [index[labels_of_row[0]] for labels_of_row in sets]
        return one_hot(sets, labels).astype(float).tolist()

    def read_raw(self, report) -> dict[str, pd.DataFrame]:
        splits, empty = read_labelled(self.path, self.reader)
        report.empty.update(empty)
        return splits

    def use_as_test(self, path: Path, data: Mapping) -> None:
        """Every row of `path` (a file, or a folder's test file) becomes the test split, read with
        `data`'s column and label settings; train and validation stay (`evaluate data.path=...`)."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        reader = LabelReader.from_data(data, path)
        frame, _ = reader.read(read_table(file, reader.column_names), file)
        sets = label_sets(frame).tolist()
        unknown = sorted(labels_in(sets) - set(self.labels))
        if unknown:
            raise DataError(
                f"{file}: labels the run never trained on: {unknown[:5]}; evaluate on data with the run's "
                f"{len(self.labels)} labels"
            )
        if not self.multi_label and any(len(labels) != 1 for labels in sets):
            raise DataError(f"{file}: rows with several labels; the run was trained on one label per row")
        ids = tokenize(frame.text.tolist(), self.tokenizer, self.max_length, self.cache_dir)
        self.datasets = {
            **self.datasets,
            "test": TokenizedDataset(ids, self._targets(sets, self.labels, self.multi_label)),
        }

    def read_inputs(self, path: Path, data: Mapping, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """`text` (normalized as training text is) and, when the file has labels, the target
        (`label`, or `labels` as tuples), read as training reads them; no row is dropped."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        reader = LabelReader.from_data(data, path)
        for frame in read_chunks(file, chunk_rows, reader.column_names):
            yield reader.read(frame, file, labelled=False)[0]

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

    def module_variant(self) -> str | None:
        return "multi_label" if self.multi_label else None

    def module_inputs(self) -> dict:
        """What the module needs to know about the data to build its head: the labels and how
        many train rows have each (the weights of `class_weights=balanced`)."""
        counts = [0] * self.num_labels
        for target in self.datasets["train"].labels:
            for i in [i for i, flag in enumerate(target) if flag] if self.multi_label else [target]:
                counts[i] += 1
        return {"num_labels": self.num_labels, "labels": self.labels, "class_counts": counts}

    def inputs_from_run(self, folder: Path) -> dict:
        labels = list(json.loads((folder / "label_map.json").read_text()))
        return {"num_labels": len(labels), "labels": labels}

    def report(self) -> dict:
        """metrics.json's `data` says when the rows held label sets."""
        return {"multi_label": True} if self.multi_label else {}

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
        collate = pad_collate(self.tokenizer.pad_token_id or 0)
        return self.grouped_loader(dataset, [len(ids) for ids in dataset.ids], shuffle, collate, self.length_window)
