"""Turn `data.path` (one file, a folder of split files, or a folder of one file per label)
into train/val/test frames with `text` and `label` columns."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd

from domaintune.data.cleaning import CleaningReport, deduplicate, normalize
from domaintune.data.readers import data_format, read_table
from domaintune.errors import DataError

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation", "dev"), "test": ("test",)}
TEXT_COLUMNS = (
    "text",
    "sentence",
    "content",
    "utterance",
    "query",
    "question",
    "review",
    "headline",
    "title",
    "body",
    "document",
    "clause",
    "message",
    "input",
    "prompt",
)
LABEL_COLUMNS = ("label", "labels", "category", "intent", "class", "target", "topic", "sentiment", "answer", "y")


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


def find_column(
    frame: pd.DataFrame, wanted: str | None, candidates: tuple[str, ...], role: str, source: Path, hint: str = ""
) -> str:
    """The column named by `data.<role>_column`, else the first of `candidates` (any case)."""
    if wanted is not None:
        if wanted not in frame.columns:
            raise DataError(f"{source}: no column '{wanted}' (data.{role}_column); columns are {list(frame.columns)}")
        return wanted
    by_lower = {str(c).lower(): c for c in frame.columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise DataError(
        f"{source}: cannot tell which column holds the {role}; columns are {list(frame.columns)}; "
        f"set data.{role}_column=<name>{hint}"
    )


def clean_texts(values: pd.Series) -> pd.Series:
    """Texts normalized as training sees them; a missing one becomes empty."""
    return values.map(lambda v: normalize(v) if pd.notna(v) else "")


def clean_labels(values: pd.Series) -> pd.Series:
    """Labels as stripped strings; a missing one becomes empty."""
    return values.map(lambda v: str(v).strip() if pd.notna(v) else "")


def canonical(frame: pd.DataFrame, source: Path, text_column: str | None, label_column: str | None) -> pd.DataFrame:
    """Keep `text` and `label` as clean strings; drop rows with no text or no label, saying how many."""
    text = find_column(frame, text_column, TEXT_COLUMNS, "text", source)
    label = find_column(frame, label_column, LABEL_COLUMNS, "label", source)
    listed = frame[label].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray)))
    if listed.any():
        row = int(listed.to_numpy().argmax()) + 1
        raise DataError(
            f"{source}: row {row}: the '{label}' value is a {type(frame[label].iloc[row - 1]).__name__} "
            "(multi-label data); multi-label classification is not supported yet: give one label per row"
        )
    out = pd.DataFrame(
        {
            "text": clean_texts(frame[text]),
            "label": clean_labels(frame[label]),
        }
    )
    keep = (out.text != "") & (out.label != "")
    if not keep.all():
        log.warning("%s: dropped %d of %d rows with an empty text or label", source, (~keep).sum(), len(out))
    out = out[keep].reset_index(drop=True)
    if out.empty:
        raise DataError(f"{source}: no row has both a text ('{text}') and a label ('{label}')")
    return out


def stratified_split(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of every label (at least one row of labels that have two or more)."""
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
    split = stratified_split if "label" in splits["train"] else random_split
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
    duplicates and leakage between them out (compared on `key`; a `label` column must agree for a
    duplicate), then the missing splits carved out of the clean train rows."""
    report = report or CleaningReport()
    if dedupe:
        splits = deduplicate(splits, key, report, agree="label" if "label" in splits["train"] else None)
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


def read_labelled(
    path: Path, text_column: str | None, label_column: str | None
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The splits the data brings (or one `train` frame) with `text` and `label` columns, and per
    split the count of rows dropped for an empty text or label."""
    if path.is_dir() and not find_split_files(path):
        merged = _label_files(path)
        if merged is not None:
            train = canonical(merged, path, "text", "label")
            return {"train": train}, {"train": len(merged) - len(train)}
    splits, empty = {}, {}
    for split, file in split_files(path, "train/val/test files, or one .txt file per label").items():
        raw = read_table(file)
        splits[split] = canonical(raw, file, text_column, label_column)
        empty[split] = len(raw) - len(splits[split])
    return splits, empty


def load_splits(
    path: Path,
    text_column: str | None,
    label_column: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    dedupe: bool = True,
) -> tuple[dict[str, pd.DataFrame], CleaningReport]:
    """Train/val/test frames, cleaned (`dedupe`) and with the missing splits carved out of train;
    the report says what was removed."""
    splits, empty = read_labelled(path, text_column, label_column)
    splits, report = clean_and_carve(
        splits, "text", val_fraction, test_fraction, seed, dedupe, CleaningReport(empty=empty)
    )
    check_labels(path, splits)
    return splits, report


def check_labels(path: Path, splits: dict[str, pd.DataFrame]) -> None:
    train_labels = set(splits["train"].label)
    if len(train_labels) == 1:
        raise DataError(
            f"{path}: the label column has one class ({next(iter(train_labels))!r}) in train; "
            "a classifier needs at least two"
        )
    for split, frame in splits.items():
        if frame.empty:
            raise DataError(
                f"{path}: the {split} split is empty (after removing duplicates and leaked rows); add rows "
                "or change data.val_fraction / data.test_fraction"
            )
    for split in ("val", "test"):
        unseen = sorted(set(splits[split].label) - train_labels)
        if unseen:
            raise DataError(
                f"{path}: {split} has labels that never occur in train: {unseen[:5]}; add train rows for them or "
                "drop those rows"
            )
