"""Clean rows before training: normalized text, no empty rows, no duplicates, no leakage between
splits. Every step counts what it removed and keeps a few examples for the report."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
LINE_SPACE = re.compile(r"[ \t]+")
SPLIT_ORDER = ("train", "val", "test")


def normalize(text: str, keep_lines: bool = False) -> str:
    """NFC, control and zero-width characters to spaces, runs of whitespace to one space; with
    `keep_lines` (instruction data: answers have paragraphs and lists) line breaks stay."""
    text = CONTROL.sub(" ", unicodedata.normalize("NFC", str(text)))
    if not keep_lines:
        return " ".join(text.split())
    lines = [LINE_SPACE.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def near_key(text: str) -> str:
    """What near-duplicates share: the same words, ignoring case, punctuation and spacing (text
    without any word, such as ':)' or ':(', stays itself)."""
    words = " ".join(re.findall(r"\w+", text.casefold()))
    return words or " ".join(text.split())


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


def clean_split(frame: pd.DataFrame, split: str, columns: tuple[str, ...], report: CleaningReport,
                keep_lines: bool = False) -> pd.DataFrame:
    """Normalize `columns`, drop rows where one is empty, then exact and near duplicates (first
    kept). Near duplicates agree on every column's near key: the same text under another label is
    a conflict to report, not a duplicate to drop."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: normalize(v, keep_lines) if pd.notna(v) else "")
    empty = (frame[list(columns)] == "").any(axis=1)
    report.empty[split] = report.empty.get(split, 0) + int(empty.sum())
    frame = frame[~empty]
    exact = frame.duplicated(subset=list(columns), keep="first")
    report.exact_duplicates[split] = int(exact.sum())
    report.note("exact duplicate", frame.loc[exact, columns[0]])
    frame = frame[~exact]
    near = pd.DataFrame({c: frame[c].map(near_key) for c in columns}).duplicated(keep="first")
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
