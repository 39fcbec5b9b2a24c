"""A classification row's text and target as a file gives them: one label per row, or a set of
labels (multi-label) as a JSON list, a string split on `data.label_separator`, or one 0/1 column
per label; label ids mapped to names through `data.label_names`. The one reader of labelled rows
for train, prepare, evaluate and predict: each hands it a file's frame."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from domaintune.data.cleaning import normalize
from domaintune.data.readers import find_column
from domaintune.errors import DataError

log = logging.getLogger(__name__)

LABEL, LABELS = "label", "labels"  # the target column of a single-label and of a multi-label frame
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
BINARY = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}


def target_of(frame: pd.DataFrame) -> str | None:
    """The frame's target column: `label` (one per row), `labels` (a set per row) or none."""
    return next((c for c in (LABEL, LABELS) if c in frame), None)


def label_sets(frame: pd.DataFrame) -> pd.Series:
    """Every row's labels as a tuple, whichever target the frame has (one label is a set of one)."""
    return frame[LABELS] if LABELS in frame else frame[LABEL].map(lambda label: (label,))


def labels_in(sets) -> set[str]:
    """Every label that occurs in an iterable of label sets."""
    return {label for labels in sets for label in labels}


def one_hot(sets, labels: list[str]) -> np.ndarray:
    """Label sets as a 0/1 matrix (rows, `labels`); a label outside `labels` is an error of the caller."""
    index = {label: i for i, label in enumerate(labels)}
    found = np.zeros((len(sets), len(labels)), dtype=bool)
    for row, labels_of_row in enumerate(sets):
        found[row, [index[label] for label in labels_of_row]] = True
    return found


def clean_texts(values: pd.Series) -> pd.Series:
    """Texts normalized as training sees them; a missing one becomes empty."""
    return values.map(lambda v: normalize(v) if pd.notna(v) else "")


def _binary(values: pd.Series) -> pd.Series | None:
    """A 0/1 column as booleans, or None when some value is not 0/1 (or true/false)."""
    found = values.map(lambda v: BINARY.get(str(v).strip().lower()) if not isinstance(v, bool) else v)
    return None if found.isna().any() else found.astype(bool)


@dataclass(frozen=True)
class LabelReader:
    """The `data.*` settings that say where a file's text and labels are and how labels are written."""

    text_column: str | None
    label_column: str | tuple[str, ...] | None  # several names: one 0/1 column per label
    separator: str | None
    names: tuple[str, ...] | None  # `data.label_names`: labels are 0-based ids into these
    column_names: tuple[str, ...] | None = None  # `data.column_names`: the columns of a file without a header

    @classmethod
    def from_data(cls, data: Mapping, path: Path | None = None) -> LabelReader:
        column, names = data.get("label_column"), data.get("column_names")
        if column is not None and not isinstance(column, str):
            column = tuple(str(c) for c in column)
        return cls(
            data.get("text_column"),
            column,
            data.get("label_separator"),
            _names(data, path),
            tuple(str(c) for c in names) if names is not None else None,
        )

    def read(self, frame: pd.DataFrame, source: Path, labelled: bool = True) -> tuple[pd.DataFrame, int]:
        """`text` and the target (`label`, or `labels` for sets), and the count of rows dropped for
        an empty text or a missing label. `labelled=False` (rows to predict on): the label is
        optional and no row is dropped."""
        text_column = find_column(frame, self.text_column, TEXT_COLUMNS, "text", source)
        out = pd.DataFrame({"text": clean_texts(frame[text_column])})
        target = self._target(frame, text_column, source, required=labelled)
        if target is not None:
            out[target.name] = target
        if not labelled:
            return out, 0
        missing = out[target.name].map(lambda v: v is None or v == "")
        keep = (out.text != "") & ~missing
        if not keep.all():
            log.warning("%s: dropped %d of %d rows with an empty text or label", source, (~keep).sum(), len(out))
        out = out[keep].reset_index(drop=True)
        if out.empty:
            raise DataError(f"{source}: no row has both a text ('{text_column}') and a label")
        return out, int((~keep).sum())

    def _target(self, frame: pd.DataFrame, text_column: str, source: Path, required: bool) -> pd.Series | None:
        """`label` (strings) or `labels` (tuples of strings; None where the value is missing)."""
        if isinstance(self.label_column, tuple):
            return self._from_columns(frame, list(self.label_column), source)
        try:
            column = find_column(frame, self.label_column, LABEL_COLUMNS, "label", source)
        except DataError:
            flags = {c: found for c in frame.columns if c != text_column and (found := _binary(frame[c])) is not None}
            if self.label_column is None and len(flags) >= 2:
                return _sets_of(flags)
            if required:
                raise
            return None
        values = frame[column]
        listed = values.map(lambda v: isinstance(v, (list, tuple, np.ndarray)))
        if not listed.any() and self.separator is None:
            parsed = values.map(_json_list)
            given = values.map(lambda v: pd.notna(v) and str(v).strip() != "")
            if given.any() and parsed[given].map(lambda v: v is not None).all():  # JSON arrays in text cells
                values, listed = parsed.where(given, None), given
        if listed.any() or self.separator is not None:
            return pd.Series(
                [self._set(v, source, row) for row, v in enumerate(values, start=1)], index=frame.index, name=LABELS
            )
        return pd.Series(
            [self._name(str(v).strip(), source, row) if pd.notna(v) else "" for row, v in enumerate(values, start=1)],
            index=frame.index,
            name=LABEL,
        )

    def _set(self, value, source: Path, row: int) -> tuple[str, ...] | None:
        if isinstance(value, (list, tuple, np.ndarray)):
            parts = [str(v).strip() for v in value]
        elif value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
            return None
        elif self.separator is not None:
            parts = str(value).split(self.separator)
        else:
            parts = [str(value)]
        return tuple(sorted({self._name(p.strip(), source, row) for p in parts if p.strip()}))

    def _name(self, label: str, source: Path, row: int) -> str:
        if self.names is None or not label:
            return label
        try:
            return self.names[int(label)]
        except (ValueError, IndexError):
            raise DataError(
                f"{source}: row {row}: label '{label}' is not an id into data.label_names (0 to "
                f"{len(self.names) - 1}); fix the row or the names file"
            ) from None

    @staticmethod
    def _from_columns(frame: pd.DataFrame, columns: list[str], source: Path) -> pd.Series:
        flags = {}
        for column in columns:
            if column not in frame.columns:
                raise DataError(
                    f"{source}: no column '{column}' (data.label_column); columns are {list(frame.columns)}"
                )
            flags[column] = _binary(frame[column])
            if flags[column] is None:
                bad = frame[column].map(lambda v: str(v).strip().lower() not in BINARY).to_numpy().argmax() + 1
                raise DataError(
                    f"{source}: row {bad}: column '{column}' holds {frame[column].iloc[bad - 1]!r}; one 0/1 column "
                    "per label holds only 0 or 1"
                )
        return _sets_of(flags)


def _sets_of(flags: dict[str, pd.Series]) -> pd.Series:
    """Label sets from 0/1 columns (label -> its flags, as booleans)."""
    frame = pd.DataFrame(flags)
    names = list(flags)
    sets = [tuple(n for n, on in zip(names, row) if on) for row in frame.to_numpy(dtype=bool)]
    return pd.Series(sets, index=frame.index, name=LABELS)


def _json_list(value) -> list | None:
    """A JSON array written into a text cell (`["refund", "complaint"]`), else None."""
    if not isinstance(value, str) or not value.lstrip().startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


def _names(data: Mapping, path: Path | None) -> tuple[str, ...] | None:
    """`data.label_names`: label ids index it."""
    return names_file(data.get("label_names"), "data.label_names", path)


def names_file(given: str | None, key: str, path: Path | None) -> tuple[str, ...] | None:
    """A file with one name per line (0-based ids in the data index it), found as given or next to
    the data at `path`; `key` names the setting in errors."""
    if given is None:
        return None
    file = Path(given)
    if not file.is_file() and path is not None:
        file = (path if path.is_dir() else path.parent) / given
    if not file.is_file():
        raise DataError(f"{key}={given}: no such file (as given, or next to the data); point it at the file")
    names = tuple(line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines() if line.strip())
    if len(set(names)) != len(names):
        raise DataError(f"{file}: a name occurs twice ({key}); give each name once")
    return names


def as_sets(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """When any split holds label sets, every split does (a file of single labels joins as sets of one)."""
    if not any(LABELS in frame for frame in splits.values()):
        return splits
    return {
        name: frame if LABELS in frame else frame.drop(columns=LABEL).assign(**{LABELS: label_sets(frame)})
        for name, frame in splits.items()
    }


def describe_sets(source: Path, sets: pd.Series) -> None:
    """The log line that says a file was read as multi-label, and how many labels its rows carry."""
    sizes = sets.map(len)
    log.info(
        "%s: multi-label data: %d labels, %.1f%% of %d rows have two or more, %.1f%% none",
        source,
        len(labels_in(sets)),
        100 * (sizes >= 2).mean(),
        len(sets),
        100 * (sizes == 0).mean(),
    )
