"""Turn `data.path` (one file, a folder of split files, or a folder of one file per label)
into train/val/test frames with `text` and a target column (`label`, or `labels` for label sets)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pandas as pd

from domaintune.data.cleaning import CleaningReport, deduplicate
from domaintune.data.labels import (
    LABEL,
    LABELS,
    LabelReader,
    as_sets,
    describe_sets,
    label_sets,
    labels_in,
    one_hot,
    target_of,
)
from domaintune.data.readers import data_format, read_table
from domaintune.errors import DataError

SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation", "dev", "devel"), "test": ("test",)}
DOCUMENTATION = {"readme", "license", "licence", "citation", "changelog"}


def _stem(path: Path) -> str:
    return path.name.split(".")[0].lower()


def data_files(folder: Path) -> list[Path]:
    """Files in a data folder that can hold rows (README, LICENSE and the like are skipped)."""
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and data_format(p) is not None and not DOCUMENTATION & set(re.split(r"[_\-. ]", _stem(p)))
    ]


def find_split_files(folder: Path) -> dict[str, Path]:
    """Files named as people name splits (train.csv, dev.jsonl, validation.parquet, test.tsv.gz, ...)."""
    found: dict[str, Path] = {}
    for path in data_files(folder):
        for split, stems in SPLIT_NAMES.items():
            if _stem(path) in stems:
                if split in found:
                    raise DataError(
                        f"{folder}: both {found[split].name} and {path.name} look like the {split} split; keep one"
                    )
                found[split] = path
    return found


def stratified_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of every label (at least one row of labels that have two or more);
    label sets by iterative stratification (Sechidis et al. 2011), which keeps rare labels in
    the held-out part too."""
    if LABELS in frame:
        return _multilabel_split(frame, fraction, seed)
    rng = random.Random(seed)
    rest, held = [], []
    for _, rows in frame.groupby("label", sort=True):
        index = list(rows.index)
        rng.shuffle(index)
        take = round(len(index) * fraction) if len(index) > 1 else 0
        take = max(take, 1) if len(index) > 1 and fraction > 0 else take
        held += index[:take]
        rest += index[take:]
    return frame.loc[sorted(rest)].reset_index(drop=True), frame.loc[sorted(held)].reset_index(drop=True)


def _multilabel_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    count = max(1, round(len(frame) * fraction)) if fraction > 0 and len(frame) > 1 else 0
    if count == 0:
        return frame.reset_index(drop=True), frame.iloc[:0].reset_index(drop=True)
    # rows without any label still need a (zero) column for the splitter
    onehot = one_hot(frame[LABELS].tolist(), sorted(labels_in(frame[LABELS])) or [""]).astype(int)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=count, random_state=seed)
    rest, held = next(splitter.split(np.zeros(len(frame)), onehot))
    return frame.iloc[sorted(rest)].reset_index(drop=True), frame.iloc[sorted(held)].reset_index(drop=True)


def nested_rows(labels: list, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """Row numbers of nested, stratified samples of the rows: each label's rows (a label set
    counts as one label) in one seeded order, of which each sample takes the first `fraction`
    (at least one row of each label), so a smaller sample is always inside a larger one."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for row, label in enumerate(labels):
        groups.setdefault(label, []).append(row)
    order = [rng.permutation(rows) for _, rows in sorted(groups.items(), key=lambda item: str(item[0]))]
    return [np.sort(np.concatenate([rows[: max(1, round(len(rows) * f))] for rows in order])) for f in fractions]


def random_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random split of unlabeled rows (instruction data): (rest, held out), order kept."""
    count = max(1, round(len(frame) * fraction)) if fraction > 0 and len(frame) > 1 else 0
    held = set(random.Random(seed).sample(range(len(frame)), count))
    mask = [i in held for i in range(len(frame))]
    return frame[[not m for m in mask]].reset_index(drop=True), frame[mask].reset_index(drop=True)


def carve(
    splits: dict[str, pd.DataFrame], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """The splits the data lacks, carved out of train: test, then validation; stratified by label
    when the rows have one (every class with two or more rows keeps a held-out row), seeded."""
    split = stratified_split if target_of(splits["train"]) else random_split
    splits, carved_test = dict(splits), "test" not in splits
    if carved_test:
        splits["train"], splits["test"] = split(splits["train"], test_fraction, seed)
    if "val" not in splits:
        # fractions are of all the rows we split, so rescale once test has been taken out
        fraction = val_fraction / (1 - test_fraction) if carved_test else val_fraction
        splits["train"], splits["val"] = split(splits["train"], fraction, seed + 1)
    return splits


def clean_and_carve(
    splits: dict[str, pd.DataFrame],
    key: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    dedupe: bool = True,
    report: CleaningReport | None = None,
) -> tuple[dict[str, pd.DataFrame], CleaningReport]:
    """What training, instruction data and `prepare` all do to the splits a data set brings:
    duplicates and leakage between them out (compared on `key`; the target, a label or a label
    set, must agree for a duplicate), then the missing splits carved out of the clean train rows."""
    report = report or CleaningReport()
    if dedupe:
        splits = deduplicate(splits, key, report, agree=target_of(splits["train"]))
    return carve(splits, val_fraction, test_fraction, seed), report


def _label_files(folder: Path) -> pd.DataFrame | None:
    """A folder of text-line files, one per label (the file name is the label), as one frame."""
    files = data_files(folder)
    if len(files) < 2 or any(data_format(p) != "txt" for p in files):
        return None
    return pd.concat([read_table(p).assign(label=_stem(p)) for p in files], ignore_index=True)


def split_files(path: Path, layout: str = "train/val/test files, or one data file") -> dict[str, Path]:
    """`data.path` as split files: one file is `train`; a folder gives its files named as people
    name splits. `layout` says, in the error for a folder without them, what else would do."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; set data.path to your data")
    if not path.is_dir():
        return {"train": path}
    files = find_split_files(path)
    if not files:
        raise DataError(f"{path}: no data files found ({layout}); it holds {[p.name for p in path.iterdir()][:8]}")
    if "train" not in files:
        raise DataError(
            f"{path}: has {', '.join(p.name for p in files.values())} but no train file (train.csv, train.jsonl, "
            "...); "
            "add one, or pass a single file as data.path to have it split"
        )
    return files


def read_labelled(path: Path, reader: LabelReader) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The splits the data brings (or one `train` frame) with `text` and a target (`label`, or
    `labels` when rows hold label sets), and per split the count of rows dropped for an empty
    text or label."""
    if path.is_dir() and not find_split_files(path):
        merged = _label_files(path)
        if merged is not None:
            train, dropped = LabelReader("text", "label", None, None).read(merged, path)
            return {"train": train}, {"train": dropped}
    splits, empty = {}, {}
    for split, file in split_files(path, "train/val/test files, or one .txt file per label").items():
        splits[split], empty[split] = reader.read(read_table(file, reader.column_names), file)
    splits = as_sets(splits)
    if LABELS in splits["train"]:
        describe_sets(path, pd.concat([frame[LABELS] for frame in splits.values()]))
    return splits, empty


def load_splits(
    path: Path,
    reader: LabelReader,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    dedupe: bool = True,
) -> tuple[dict[str, pd.DataFrame], CleaningReport]:
    """Train/val/test frames, cleaned (`dedupe`) and with the missing splits carved out of train;
    the report says what was removed."""
    splits, empty = read_labelled(path, reader)
    splits, report = clean_and_carve(
        splits, "text", val_fraction, test_fraction, seed, dedupe, CleaningReport(empty=empty)
    )
    check_labels(path, splits)
    return splits, report


def check_labels(path: Path, splits: dict[str, pd.DataFrame]) -> None:
    train_labels = labels_in(label_sets(splits["train"]))
    if len(train_labels) == 1 and LABEL in splits["train"]:
        raise DataError(
            f"{path}: the label column has one class ({next(iter(train_labels))!r}) in train; "
            "a classifier needs at least two"
        )
    if not train_labels:
        raise DataError(f"{path}: no train row has a label; a classifier needs labelled rows")
    for split, frame in splits.items():
        if frame.empty:
            raise DataError(
                f"{path}: the {split} split is empty (after removing duplicates and leaked rows); add rows "
                "or change data.val_fraction / data.test_fraction"
            )
    for split in ("val", "test"):
        unseen = sorted(labels_in(label_sets(splits[split])) - train_labels)
        if unseen:
            raise DataError(
                f"{path}: {split} has labels that never occur in train: {unseen[:5]}; add train rows for them or "
                "drop those rows"
            )
