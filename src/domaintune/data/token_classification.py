"""Entity recognition data: sentences of tagged words, cleaned, split, tokenized into sub-words
(a word's tag sits on its first sub-word) and cut into overlapping windows where a sentence is
longer than `max_length`, so that no word is lost."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from domaintune.api import TaskDataModule
from domaintune.data.batching import LengthGroupedBatchSampler
from domaintune.data.cleaning import CleaningReport, normalize_columns
from domaintune.data.readers import data_format
from domaintune.data.splits import clean_and_carve, split_files
from domaintune.data.tokenized import texts_fingerprint
from domaintune.data.tokens import TAGS, TOKENS, TokenReader, entities, entity_counts, tag_set
from domaintune.errors import DataError, UserError

IGNORED = -100  # a position without a tag (special tokens, later sub-words): no loss, no prediction


class Words(tuple):
    """A pre-tokenised sentence to predict on: its words, written (predictions.csv) as its text,
    the words joined by spaces, which the entities' character offsets index."""

    def __str__(self) -> str:
        return " ".join(self)


class Sentences(Dataset):
    """One item per sentence: its windows (ids, tags on first sub-words, the words each window
    decides); also its words and gold tag ids; `ids` (every window's ids, joined) identifies
    the rows."""

    def __init__(self, windows: list[list[tuple]], tags: list[list[int]], words: list[list[str]]):
        self.windows, self.tags, self.words = windows, tags, words
        self.ids = [np.concatenate([w[0] for w in sentence]) for sentence in windows]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple:
        return index, self.windows[index]


def joined(words) -> tuple[str, list[tuple[int, int]]]:
    """Words as one text, joined by spaces, and each word's character span in it."""
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return " ".join(words), spans


def window_collate(pad_id: int):
    """A batch of sentences as one batch of windows, padded to the longest: `labels` (tag ids,
    IGNORED elsewhere), `owned` (the word a position decides, -1 elsewhere) and `sentence` (the
    dataset index of each window's sentence)."""

    def collate(items: list[tuple]) -> dict[str, torch.Tensor]:
        windows = [(index, *window) for index, sentence in items for window in sentence]
        longest = max(len(w[1]) for w in windows)
        batch = {
            "input_ids": torch.full((len(windows), longest), pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(windows), longest), dtype=torch.long),
            "labels": torch.full((len(windows), longest), IGNORED, dtype=torch.long),
            "owned": torch.full((len(windows), longest), -1, dtype=torch.long),
            "sentence": torch.tensor([w[0] for w in windows], dtype=torch.long),
        }
        for row, (_, ids, labels, owned) in enumerate(windows):
            batch["input_ids"][row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            batch["attention_mask"][row, : len(ids)] = 1
            batch["labels"][row, : len(ids)] = torch.as_tensor(labels, dtype=torch.long)
            batch["owned"][row, : len(ids)] = torch.as_tensor(owned, dtype=torch.long)
        return batch

    return collate


class TokenClassificationDataModule(TaskDataModule):
    """`path` is one file (split here, seeded) or a folder of train/val(dev, devel)/test files, in
    CoNLL style or JSON lines (see `domaintune.data.tokens`). Domain plugins subclass it to set
    `default_path`."""

    labelled = False  # rows carry tag sequences, not a class: no stratified split or label balance

    def __init__(
        self,
        tokenizer,
        *,  # the rest from conf/data/token_classification.yaml, where their defaults are
        path: str | None,
        tokens_column: str | None,
        tags_column: str | None,
        tag_names: list[str] | str | None,
        strict: bool,
        max_length: int,
        stride: int,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        length_window: int,
        num_workers: int,
        dedupe: bool,
    ):
        super().__init__(
            tokenizer, path, batch_size, eval_batch_size, val_fraction, test_fraction, seed, num_workers, dedupe
        )
        if not getattr(tokenizer, "is_fast", False):
            raise UserError(
                "entity recognition needs a fast tokenizer (word ids of each sub-word); use a model that has one"
            )
        if not 0 <= stride < max_length // 2:
            raise UserError(
                f"data.stride={stride}: the sub-words two windows share must be at least 0 and below max_length/2"
            )
        settings = {
            "tokens_column": tokens_column,
            "tags_column": tags_column,
            "tag_names": tag_names,
            "strict": strict,
        }
        self.reader = TokenReader.from_data(settings, self.path)
        self.max_length, self.stride, self.length_window = max_length, stride, length_window
        probe = tokenizer([["a"]], is_split_into_words=True)
        word_ids, ids = probe.word_ids(0), probe["input_ids"][0]
        first, last = word_ids.index(0), len(word_ids) - 1 - word_ids[::-1].index(0)
        self.prefix, self.suffix = list(ids[:first]), list(ids[last + 1 :])  # the model's special tokens
        self.tags: list[str] = []
        self.found: dict = {}

    # -- reading ---------------------------------------------------------------------------------
    def cache_key(self) -> tuple:
        return self.reader, self.max_length, self.stride

    def _splits(self) -> tuple[dict[str, pd.DataFrame], dict]:
        splits, schemes, found = {}, set(), {"repaired": 0, "empty": {}}
        for split, file in split_files(self.path, "train/val/test files in CoNLL style or JSON lines").items():
            splits[split], seen = self.reader.read(file)
            if TAGS not in splits[split]:
                raise DataError(f"{file}: no tags; each token needs its tag (a second column, or a tags list)")
            found["repaired"] += seen["repaired"]
            found["empty"][split] = seen["empty"]
            schemes.add(seen["scheme"])
        return splits, {**found, "scheme": "/".join(sorted(schemes))}

    def read_raw(self, report) -> dict[str, pd.DataFrame]:
        splits, found = self._splits()
        for split, empty in found.pop("empty").items():
            report.empty[split] = report.empty.get(split, 0) + empty
        self.found = found
        return splits

    def load(self) -> dict:
        report = CleaningReport()
        splits = {  # cleaned as `prepare` cleans them: the same sentences either way
            split: normalize_columns(frame, split, self.text_columns, report)
            for split, frame in self.read_raw(report).items()
        }
        splits, _ = clean_and_carve(
            splits, "text", self.val_fraction, self.test_fraction, self.seed, self.dedupe, report
        )
        tags = tag_set([splits["train"]])
        for split, frame in splits.items():
            if frame.empty:
                raise DataError(
                    f"{self.path}: the {split} split is empty (after removing duplicates and leaked sentences); add "
                    "sentences or change data.val_fraction / data.test_fraction"
                )
            unseen = sorted({t for row in frame[TAGS] for t in row} - set(tags))
            if unseen:
                raise DataError(
                    f"{self.path}: {split} has tags that never occur in train: {unseen[:5]}; add train sentences "
                    "with them or drop those sentences"
                )
        if len(tags) == 1:
            raise DataError(f"{self.path}: no train token is tagged as an entity; entity recognition needs some")
        digest, datasets, windows = hashlib.sha256(), {}, {}
        for name, frame in splits.items():
            digest.update(f"{name}:{texts_fingerprint(frame.text.tolist())}:".encode())
            digest.update(texts_fingerprint([" ".join(t) for t in frame[TAGS]]).encode())
            datasets[name], windows[name] = self._dataset(frame, tags)
        return {
            "tags": tags,
            "found": {**self.found, "windowed_sentences": windows},
            "datasets": datasets,
            "fingerprint": digest.hexdigest()[:16],
            "cleaning": report.counts(),
        }

    def _dataset(self, frame: pd.DataFrame, tags: list[str]) -> tuple[Sentences, int]:
        index = {tag: i for i, tag in enumerate(tags)}
        ids = [[index[t] for t in row] for row in frame[TAGS]]
        words = [list(tokens) for tokens in frame[TOKENS]]
        windows = self.encode([joined(w) for w in words], ids)
        return Sentences(windows, ids, words), sum(len(w) > 1 for w in windows)

    # -- sub-words and windows ---------------------------------------------------------------------
    def encode(self, sentences: list[tuple[str, list[tuple[int, int]]]], tags=None) -> list[list[tuple]]:
        """Each sentence, given as its text and its words' character spans, as windows of (ids,
        labels, owned) arrays: the text's sub-words (the text tokenized as a whole, as the
        token-classification pipeline tokenizes it, so a raw sentence and the same words give the
        same ids; a sub-word belongs to the word whose span holds its start) between the model's
        special tokens; a word's tag id on its first sub-word (IGNORED without `tags`); and, on
        the first sub-words of the words this window decides, the word's index."""
        import bisect

        texts = [text for text, _ in sentences]
        encoded = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        out = []
        for i, (_, spans) in enumerate(sentences):
            starts, pieces = [start for start, _ in spans], [[] for _ in spans]
            for token, (begin, _) in zip(encoded["input_ids"][i], encoded["offset_mapping"][i]):
                word = bisect.bisect_right(starts, begin) - 1
                if word >= 0 and begin < spans[word][1]:
                    pieces[word].append(token)
            out.append(self._windows(pieces, tags[i] if tags is not None else None))
        return out

    def _windows(self, pieces: list[list[int]], tags: list[int] | None) -> list[tuple]:
        limit = self.max_length - len(self.prefix) - len(self.suffix)
        pieces = [p[:limit] for p in pieces]  # a word longer than a whole window keeps its first sub-words
        bounds, start = [], 0
        while True:
            end, size = start, 0
            while end < len(pieces) and size + len(pieces[end]) <= limit:
                size, end = size + len(pieces[end]), end + 1
            bounds.append((start, end))
            if end >= len(pieces):
                break
            back, shared = end, 0  # the next window starts `stride` sub-words back, at a word
            while back > start + 1 and shared + len(pieces[back - 1]) <= self.stride:
                back, shared = back - 1, shared + len(pieces[back - 1])
            start = back
        # a word is decided by the window where it sits farthest from an edge
        owner = [
            max(
                (k for k, (s, e) in enumerate(bounds) if s <= w < e),
                key=lambda k: min(w - bounds[k][0], bounds[k][1] - 1 - w),
            )
            for w in range(len(pieces))
        ]
        windows = []
        for k, (s, e) in enumerate(bounds):
            ids, labels, owned = list(self.prefix), [IGNORED] * len(self.prefix), [-1] * len(self.prefix)
            for w in range(s, e):
                if pieces[w]:
                    labels += [tags[w] if tags is not None else IGNORED] + [IGNORED] * (len(pieces[w]) - 1)
                    owned += [w if owner[w] == k else -1] + [-1] * (len(pieces[w]) - 1)
                    ids += pieces[w]
            ids += self.suffix
            labels += [IGNORED] * len(self.suffix)
            owned += [-1] * len(self.suffix)
            windows.append((np.asarray(ids, np.int32), np.asarray(labels, np.int64), np.asarray(owned, np.int32)))
        return windows

    # -- batches ------------------------------------------------------------------------------------
    def loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        lengths = [sum(len(w[0]) for w in sentence) for sentence in dataset.windows]
        return self.grouped_loader(dataset, lengths, shuffle, self.collate(), self.length_window)

    def collate(self):
        return window_collate(self.tokenizer.pad_token_id or 0)

    def gold(self, split: str) -> list[list[int]]:
        """The tag ids of every sentence of a split, as the data gives them (a word without any
        sub-word, which the model cannot tag, is still scored)."""
        return self.datasets[split].tags

    def predict_batches(self, texts: list) -> Iterator[tuple[list, list, dict]]:
        """Raw texts or `Words`: per batch of sentences (grouped by length), their row numbers,
        their (text, word spans) and the batch of their windows."""
        sentences = [self.words(text) for text in texts]
        windows = self.encode(sentences)
        lengths = [sum(len(w[0]) for w in s) for s in windows]
        collate = self.collate()
        for rows in LengthGroupedBatchSampler(lengths, self.eval_batch_size, shuffle=False):
            yield rows, [sentences[i] for i in rows], collate([(i, windows[i]) for i in rows])

    def words(self, text) -> tuple[str, list[tuple[int, int]]]:
        """A sentence as its text and its words' character spans: given words (`Words`: joined by
        spaces), or raw text split into the words the model's tokenizer sees (for BERT, at
        whitespace and punctuation, after its normalizer), as the pipeline splits them."""
        if isinstance(text, tuple):
            return joined(text)
        text = str(text)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        spans: dict[int, tuple[int, int]] = {}
        for (begin, end), word in zip(encoded["offset_mapping"], encoded.word_ids()):
            if word is not None:
                first, last = spans.get(word, (begin, end))
                spans[word] = (min(first, begin), max(last, end))
        return text, [spans[w] for w in sorted(spans)]

    # -- what the module and the commands need --------------------------------------------------------
    def module_inputs(self) -> dict:
        return {"tags": self.tags}

    def inputs_from_run(self, folder: Path) -> dict:
        return {"tags": json.loads((folder / "tag_map.json").read_text())["tags"]}

    def save_artifacts(self, folder: Path) -> None:
        (Path(folder) / "tag_map.json").write_text(json.dumps({"tags": self.tags, "scheme": "IOB2"}, indent=2))

    def check_continues(self, folder: Path) -> None:
        if self.inputs_from_run(folder)["tags"] != self.tags:
            raise UserError(
                f"init_from={folder}: the new data's tags differ from that run's; continue only on data with the same "
                "entity types"
            )

    def report(self) -> dict:
        """metrics.json's `data`: the scheme read, the tags repaired, the sentences cut into windows
        and the entities per type of each split."""
        counts = {
            split: entity_counts([self.tags[t] for t in tags] for tags in ds.tags)
            for split, ds in self.datasets.items()
        }
        return {
            "scheme": self.found.get("scheme"),
            "repaired_tags": self.found.get("repaired", 0),
            "windowed_sentences": self.found.get("windowed_sentences", {}),
            "entities": counts,
        }

    def use_as_test(self, path: Path, data: Mapping) -> None:
        """Every sentence of `path` (a file, or a folder's test file) becomes the test split, read
        with `data`'s settings; train and validation stay (`evaluate data.path=...`)."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        reader = TokenReader.from_data(data, path)
        frame, _ = reader.read(file)
        if TAGS not in frame:
            raise DataError(f"{file}: no tags; evaluate needs tagged sentences")
        unknown = sorted({t for row in frame[TAGS] for t in row} - set(self.tags))
        if unknown:
            raise DataError(
                f"{file}: tags the run never trained on: {unknown[:5]}; evaluate on data with the run's entity types"
            )
        self.datasets = {**self.datasets, "test": self._dataset(frame, self.tags)[0]}

    def read_inputs(self, path: Path, data: Mapping, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """Sentences to predict on: a `.txt` file's lines as raw text; CoNLL files and JSON lines as
        their words (`Words`), with their entities (`labels`: [type, start, end] in characters)
        where the file has tags. Token files are read whole, then yielded `chunk_rows` at a time."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        if data_format(file) == "txt":
            from domaintune.data.readers import read_chunks

            yield from read_chunks(file, chunk_rows)
            return
        reader = TokenReader.from_data(data, path)
        frame, _ = reader.read(file, tagged=False)
        rows = pd.DataFrame({"text": [Words(tokens) for tokens in frame[TOKENS]]})
        if TAGS in frame:
            rows["labels"] = [self.spans(Words(w), tags) for w, tags in zip(frame[TOKENS], frame[TAGS])]
        for start in range(0, len(rows), chunk_rows):
            yield rows.iloc[start : start + chunk_rows].reset_index(drop=True)

    def spans(self, text, tags: list[str]) -> list[list]:
        """A sentence's entities as [type, first character, character after the last]."""
        _, spans = self.words(text)
        return [[kind, spans[first][0], spans[end - 1][1]] for kind, first, end in entities(tags)]

    def prepare_report(self, splits: dict[str, pd.DataFrame]) -> tuple[dict, list[str]]:
        """`prepare`: entities per type and split, the scheme read and the tags repaired, and how
        many sentences are longer than a window (split into overlapping windows, not cut)."""
        counts = {split: entity_counts(frame[TAGS]) for split, frame in splits.items()}
        longer = sum(len(w) > 1 for w in self.encode([joined(t) for t in splits["train"][TOKENS]]))
        kinds = sorted({k for c in counts.values() for k in c})
        lines = ["## Entities", "", "| type | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(str(c.get(k, 0)) for c in counts.values()) + " |" for k in kinds]
        scheme = f"Tags read as {self.found['scheme']}" + (
            f"; {self.found['repaired']} I- tags that continued no entity were read as its start (B-)."
            if self.found["repaired"]
            else "."
        )
        lines += [
            "",
            scheme,
            "",
            f"{longer} train sentences are longer than max_length={self.max_length} sub-words: they are split into "
            f"windows that share {self.stride} sub-words, so no word is cut.",
        ]
        summary = {"entities": counts, "windowed_train_sentences": longer}
        return {**summary, "scheme": self.found["scheme"], "repaired_tags": self.found["repaired"]}, lines
