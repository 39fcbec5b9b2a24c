"""Cleaning shared by `prepare` and `train`: normalization, exact and near duplicates (MinHash LSH
candidates, checked exactly), leakage between splits, label conflicts; and our shipped examples."""

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from domaintune.data.cleaning import CleaningReport, deduplicate, near_duplicates, normalize, words
from domaintune.data.splits import clean_and_carve

ROOT = Path(__file__).resolve().parents[1]


def test_normalize_and_words():
    assert normalize("  a\u200bb\x07 c\n\n d ") == "a b c d"
    assert words("Where is MY card?!") == words("where is my card") != words("where is my cards")
    assert words(":)") == [":)"] != words(":(")  # a text without words stays itself


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "The Company may end this Agreement at any time",
            "The Supplier may end this Agreement at any time",
            True,
        ),  # one word swapped
        ("please cancel my monthly plan today", "please cancel my yearly plan today", True),  # one of six words
        (
            "at any time the company may end this agreement",
            "the company may end this agreement at any time",
            True,
        ),  # reordered
        ("cancel my card now", "cancel my plan now", False),  # one of four words: a different request
        ("where is my parcel", "how do I reset my password", False),
    ],
)
def test_near_duplicates_are_what_a_person_would_call_the_same(a, b, same):
    assert near_duplicates(words(a), words(b)) is same


def test_deduplicate_counts_duplicates_leakage_and_conflicts():
    splits = {
        "train": pd.DataFrame(
            {
                "text": [
                    "please cancel my monthly plan today",
                    "Please cancel my monthly plan today",
                    "please cancel my yearly plan today",
                    "where is my parcel right now",
                    "where is my parcel right now",
                ],
                "label": ["cancel", "cancel", "cancel", "delivery", "refund"],
            }
        ),
        "val": pd.DataFrame(
            {
                "text": ["WHERE is my parcel right now?", "my card never arrived in the post"],
                "label": ["delivery", "card"],
            }
        ),
        "test": pd.DataFrame(
            {
                "text": ["my card never arrived in the mail", "how do I change my address please"],
                "label": ["card", "address"],
            }
        ),
    }
    report = CleaningReport()
    out = deduplicate(splits, "text", report, agree="label")
    assert out["train"].text.tolist() == [
        "please cancel my monthly plan today",
        "where is my parcel right now",
        "where is my parcel right now",
    ]  # the conflict is kept, and reported
    assert (report.exact_duplicates["train"], report.near_duplicates["train"], report.conflicting_labels) == (0, 2, 1)
    assert out["val"].text.tolist() == ["my card never arrived in the post"] and report.leaked["val"] == 1
    assert out["test"].text.tolist() == ["how do I change my address please"] and report.leaked["test"] == 1  # in val
    assert report.counts() == {
        "empty": 0,
        "exact_duplicates": 0,
        "near_duplicates": 2,
        "leaked": 2,
        "conflicting_labels": 1,
    }


def test_lsh_finds_every_planted_near_duplicate_among_many_rows():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(3000)]
    originals = [" ".join(rng.sample(vocabulary, rng.randint(6, 14))) for _ in range(3000)]
    planted = []
    for text in originals[:300]:
        tokens = text.split()
        tokens[rng.randrange(len(tokens))] = rng.choice(vocabulary)  # one word swapped
        planted.append(" ".join(tokens))
    frame = pd.DataFrame({"text": originals + planted})
    report = CleaningReport()
    out = deduplicate({"train": frame}, "text", report)
    assert report.near_duplicates["train"] + report.exact_duplicates["train"] == 300
    assert out["train"].text.tolist() == originals


def test_carving_after_cleaning_keeps_copies_out_of_held_out_splits():
    texts = [f"customer message number {i} about order {i * 7}" for i in range(200)]
    frame = pd.DataFrame({"text": texts + texts[:50], "label": ["a", "b"] * 100 + ["a", "b"] * 25})
    splits, report = clean_and_carve({"train": frame}, "text", 0.1, 0.1, seed=0)
    assert report.exact_duplicates["train"] == 50
    held = set(splits["val"].text) | set(splits["test"].text)
    assert not held & set(splits["train"].text) and sum(len(f) for f in splits.values()) == 200
    kept, _ = clean_and_carve({"train": frame}, "text", 0.1, 0.1, seed=0, dedupe=False)
    assert sum(len(f) for f in kept.values()) == 250


SHIPPED = [
    ("legal/data/examples.jsonl", "text"),
    ("support/data/examples.jsonl", "text"),
    ("marketing/data/examples.jsonl", "text"),
    ("legal/data/summaries.jsonl", "original_text"),
    ("support/data/replies.jsonl", "prompt"),
    ("marketing/data/copy.jsonl", "prompt"),
]


@pytest.mark.parametrize(("file", "key"), SHIPPED)
def test_shipped_examples_hold_no_duplicate_or_near_duplicate_rows(file, key):
    from rapidfuzz.distance import Levenshtein

    rows = [json.loads(line) for line in (ROOT / "plugins" / file).read_text().splitlines()]
    texts = [words(row[key]) for row in rows]
    clashes = [
        (a, b)
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
        if near_duplicates(a, b) or Levenshtein.distance(a, b) <= 1
    ]  # one swapped word, whatever the length
    assert not clashes, clashes[:3]
    if "label" not in rows[0]:  # generative examples: enough distinct rows to learn from
        assert len(rows) >= 300
