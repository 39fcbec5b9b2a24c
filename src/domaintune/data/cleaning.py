"""Clean rows before training: normalized text, no empty rows, no duplicates, no leakage between
splits. `prepare` and every `train` use the same code; each step counts what it removed and keeps
a few examples for the report."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

log = logging.getLogger(__name__)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
LINE_SPACE = re.compile(r"[ \t]+")
SPLIT_ORDER = ("train", "val", "test")
# Two texts are near duplicates when their words (case and punctuation ignored) are the same in
# another order, or at least this similar: one word swapped in a five-word text (1 - 1/5), or a
# few words reordered and one changed in a ten-word one (word-set Jaccard 9/11). Shorter texts
# that differ in a word ("cancel my card" / "cancel my plan") usually mean different things.
SIMILARITY = 0.8
# MinHash LSH finds the candidate pairs in linear time: 32 bands of 4 hashes make a pair with
# word-set Jaccard 0.67 (one word swapped in five) a candidate with probability 0.999, one at
# 0.3 with 0.23; every candidate is then checked exactly.
LSH_BANDS, LSH_ROWS = 32, 4


def normalize(text: str, keep_lines: bool = False) -> str:
    """NFC, control and zero-width characters to spaces, runs of whitespace to one space; with
    `keep_lines` (instruction data: answers have paragraphs and lists) line breaks stay."""
    text = CONTROL.sub(" ", unicodedata.normalize("NFC", str(text)))
    if not keep_lines:
        return " ".join(text.split())
    lines = [LINE_SPACE.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def words(text: str) -> list[str]:
    """What near duplicates are compared on: the words, ignoring case, punctuation and spacing
    (text without any word, such as ':)' or ':(', stays itself)."""
    return re.findall(r"\w+", text.casefold()) or [" ".join(text.split())]


def near_duplicates(a: list[str], b: list[str]) -> bool:
    """Word lists `a` and `b` say the same: reordered, or at least SIMILARITY alike by word edits
    (Levenshtein over words) or by shared words (Jaccard)."""
    from rapidfuzz.distance import Levenshtein

    if sorted(a) == sorted(b):
        return True
    shared, union = set(a), set(b)
    jaccard = len(shared & union) / len(shared | union)
    return jaccard >= SIMILARITY or Levenshtein.normalized_similarity(a, b) >= SIMILARITY


class NearDuplicateIndex:
    """Texts seen so far, found again by exact words or by MinHash LSH candidates checked with
    `near_duplicates`: linear in the rows (100k short texts in seconds), not quadratic."""

    def __init__(self):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(num_perm=LSH_BANDS * LSH_ROWS, params=(LSH_BANDS, LSH_ROWS))
        self.exact: dict[tuple[str, ...], list[int]] = {}
        self.words: list[list[str]] = []

    @staticmethod
    def signatures(texts: list[list[str]]) -> list:
        from datasketch import MinHash

        return MinHash.bulk([[w.encode() for w in set(t)] for t in texts], num_perm=LSH_BANDS * LSH_ROWS)

    def find(self, text: list[str], signature) -> list[int]:
        """Ids of the added texts that `text` near-duplicates, exact matches first."""
        exact = self.exact.get(tuple(text), [])
        near = [i for i in self.lsh.query(signature) if i not in exact and near_duplicates(text, self.words[i])]
        return exact + sorted(near)

    def add(self, text: list[str], signature) -> None:
        row = len(self.words)
        self.words.append(text)
        self.exact.setdefault(tuple(text), []).append(row)
        self.lsh.insert(row, signature)


@dataclass
class CleaningReport:
    empty: dict[str, int] = field(default_factory=dict)
    exact_duplicates: dict[str, int] = field(default_factory=dict)
    near_duplicates: dict[str, int] = field(default_factory=dict)
    leaked: dict[str, int] = field(default_factory=dict)
    conflicting_labels: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        shown = self.examples.setdefault(kind, [])
        if len(shown) < 3:
            shown.append(text)

    def counts(self) -> dict[str, int]:
        """Rows removed (or, for conflicts, found) per kind, over all splits: what a run reports."""
        return {
            "empty": sum(self.empty.values()),
            "exact_duplicates": sum(self.exact_duplicates.values()),
            "near_duplicates": sum(self.near_duplicates.values()),
            "leaked": sum(self.leaked.values()),
            "conflicting_labels": self.conflicting_labels,
        }


def normalize_columns(
    frame: pd.DataFrame, split: str, columns: tuple[str, ...], report: CleaningReport, keep_lines: bool = False
) -> pd.DataFrame:
    """Normalize `columns` and drop the rows where one of them is empty (counted)."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: normalize(v, keep_lines) if pd.notna(v) else "")
    empty = (frame[list(columns)] == "").any(axis=1)
    report.empty[split] = report.empty.get(split, 0) + int(empty.sum())
    return frame[~empty].reset_index(drop=True)


def deduplicate(
    splits: dict[str, pd.DataFrame], key: str, report: CleaningReport, agree: str | None = None
) -> dict[str, pd.DataFrame]:
    """Rows compared on `key` (the text, or an instruction's prompt), splits in train, val, test
    order, the first of each group kept. A row that repeats an earlier row (exactly or near) and
    agrees on `agree` (the label; instruction data has none) leaves its split: as leaked when
    the earlier row is in an earlier split, as a duplicate when it is in its own. Under another
    label it is a conflict, reported and kept: a model that memorized the earlier row would get
    it wrong, so it inflates no score ("How do I locate my card?" / "How do I reactivate my
    card?" are one word apart and two intents)."""
    index, origin = NearDuplicateIndex(), []  # origin: (split, agree value, text) of each indexed row
    out = {}
    for split in [s for s in SPLIT_ORDER if s in splits]:
        frame = splits[split]
        texts = [words(t) for t in frame[key]]
        keep, counts = [], {"exact": 0, "near": 0, "leaked": 0}
        for row, text, signature in zip(frame.itertuples(index=False), texts, index.signatures(texts)):
            value, label = getattr(row, key), getattr(row, agree) if agree else None
            matches = index.find(text, signature)
            agreeing = [i for i in matches if origin[i][1] == label]
            earlier = [i for i in agreeing if origin[i][0] != split]
            same = [i for i in agreeing if origin[i][0] == split]
            dropped = "leaked" if earlier else ("exact" if origin[same[0]][2] == value else "near") if same else None
            keep.append(dropped is None)
            if dropped:
                counts[dropped] += 1
                report.note(f"in {split} and an earlier split" if earlier else f"{dropped} duplicate", value)
                continue
            if matches:  # the same text under another label: the model cannot learn both
                report.conflicting_labels += 1
                report.note("same text, another label", value)
            index.add(text, signature)
            origin.append((split, label, value))
        report.exact_duplicates[split] = counts["exact"]
        report.near_duplicates[split] = counts["near"]
        report.leaked[split] = counts["leaked"]
        out[split] = frame[keep].reset_index(drop=True)
    return out


def describe(counts: dict[str, int]) -> tuple[str, int]:
    """'3 exact duplicates, 2 leaked' for the rows cleaning removed, and the label conflicts it kept."""
    removed = ", ".join(
        f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if n and kind != "conflicting_labels"
    )
    return removed, counts.get("conflicting_labels", 0)


def log_cleaning(path, counts: dict[str, int]) -> None:
    """Log lines for what training removed from its data and the label conflicts it found."""
    removed, conflicts = describe(counts)
    if removed:
        log.warning("%s: removed %s before training (data.dedupe=false keeps them)", path, removed)
    if conflicts:
        log.warning("%s: %d texts appear under more than one label; the model cannot learn both", path, conflicts)
