"""Clean rows before training: normalized text, no empty rows, no duplicates, no leakage between
splits. Every step counts what it removed and keeps a few examples for the report."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
SPLIT_ORDER = ("train", "val", "test")


def normalize(text: str) -> str:
    """NFC, control and zero-width characters to spaces, runs of whitespace to one space."""
    return " ".join(CONTROL.sub(" ", unicodedata.normalize("NFC", str(text))).split())


def near_key(text: str) -> str:
    """What near-duplicates share: the same words, ignoring case, punctuation, digits' grouping and spacing."""
    return " ".join(re.findall(r"\w+", text.casefold()))


@dataclass
class CleaningReport:
    empty: dict[str, int] = field(default_factory=dict)
    exact_duplicates: dict[str, int] = field(default_factory=dict)
    near_duplicates: dict[str, int] = field(default_factory=dict)
    leaked: dict[str, int] = field(default_factory=dict)
    conflicting_labels: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, texts) -> None:
        self.examples.setdefault(kind, [])
        self.examples[kind] += [t for t in list(texts)[: 3 - len(self.examples[kind])]]


def clean_split(frame: pd.DataFrame, split: str, columns: tuple[str, ...], report: CleaningReport) -> pd.DataFrame:
    """Normalize `columns`, drop rows where one is empty, then exact and near duplicates (first kept)."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: normalize(v) if pd.notna(v) else "")
    empty = (frame[list(columns)] == "").any(axis=1)
    report.empty[split] = report.empty.get(split, 0) + int(empty.sum())
    frame = frame[~empty]
    exact = frame.duplicated(subset=list(columns), keep="first")
    report.exact_duplicates[split] = int(exact.sum())
    report.note("exact duplicate", frame.loc[exact, columns[0]])
    frame = frame[~exact]
    keys = frame[columns[0]].map(near_key)
    near = keys.duplicated(keep="first") & ~frame.duplicated(subset=list(columns), keep="first")
    report.near_duplicates[split] = int(near.sum())
    report.note("near duplicate", frame.loc[near, columns[0]])
    return frame[~near].reset_index(drop=True)


def remove_leakage(splits: dict[str, pd.DataFrame], column: str, report: CleaningReport) -> dict[str, pd.DataFrame]:
    """A row of val or test whose text (near-key) is in an earlier split is leakage: it leaves the later split."""
    seen: set[str] = set()
    out = {}
    for split in [s for s in SPLIT_ORDER if s in splits]:
        frame = splits[split]
        keys = frame[column].map(near_key)
        leaked = keys.isin(seen)
        report.leaked[split] = int(leaked.sum())
        report.note(f"in {split} and an earlier split", frame.loc[leaked, column])
        out[split] = frame[~leaked].reset_index(drop=True)
        seen |= set(keys)
    return out


def conflicting_labels(frame: pd.DataFrame, report: CleaningReport) -> None:
    """The same text under two labels: reported (the model cannot learn both), not removed."""
    labels = frame.groupby(frame["text"].map(near_key))["label"].nunique()
    report.conflicting_labels = int((labels > 1).sum())
