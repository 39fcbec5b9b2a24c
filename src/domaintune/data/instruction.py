"""Instruction data for causal LMs: prompt/response columns or chat `messages`, rendered with the
tokenizer's chat template, the loss on response tokens only, optionally packed."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from domaintune.api import TaskDataModule
from domaintune.data.batching import LengthGroupedBatchSampler, TokenizedDataset
from domaintune.data.readers import find_column, read_table
from domaintune.data.splits import clean_and_carve, split_files
from domaintune.errors import DataError

log = logging.getLogger(__name__)
PROMPT_COLUMNS = ("prompt", "instruction", "input", "question", "query", "original_text", "text", "facts", "message")
RESPONSE_COLUMNS = (
    "response",
    "output",
    "answer",
    "completion",
    "reference_summary",
    "summary",
    "reply",
    "copy",
    "target",
)
CHAT_HINT = " (or data.messages_column for chat data)"


class InstructionDataModule(TaskDataModule):
    """`path` is one file (split here, seeded) or a folder of train/val/test files, each JSONL, JSON,
    CSV, TSV or Parquet with a prompt and a response column, or a chat `messages` column whose last
    assistant turn is the response. Domain plugins subclass it to set `default_path`."""

    text_columns = ("prompt", "response")
    labelled = False

    def __init__(
        self,
        tokenizer,
        *,  # the rest from conf/data/instruction.yaml, where their defaults are
        path: str | None,
        prompt_column: str | None,
        response_column: str | None,
        messages_column: str | None,
        system_prompt: str | None,
        prompt_template: str,
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        train_rows: int | None,
        packing: bool,
        pad_to_multiple_of: int,
        num_workers: int,
        dedupe: bool,
    ):
        super().__init__(
            tokenizer, path, batch_size, eval_batch_size, val_fraction, test_fraction, seed, num_workers, dedupe
        )
        if "{prompt}" not in prompt_template:
            raise DataError(f"data.prompt_template '{prompt_template}' has no {{prompt}} placeholder; add one")
        self.column_names = (prompt_column, response_column, messages_column)
        self.system_prompt, self.prompt_template, self.max_length = system_prompt, prompt_template, max_length
        self.packing, self.pad_to_multiple_of, self.train_rows = packing, pad_to_multiple_of, train_rows
        self.references: dict[str, list[str]] = {}
        self.prompts: dict[str, list[str]] = {}
        self.length_report: dict[str, int] = {}

    # -- reading and rendering ---------------------------------------------------------------
    def _conversations(self, frame: pd.DataFrame, source: Path) -> tuple[list[tuple[list[dict], str, Any]], int]:
        """(prompt messages, response, the row as the file gives it: its prompt, or its chat turns)
        per row, and the count of rows dropped for an empty prompt or response: the one parser of
        instruction files, for train, prepare and evaluate."""
        prompt_col, response_col, messages_col = self.column_names
        if messages_col or (not prompt_col and "messages" in frame.columns):
            column = messages_col or "messages"
            if column not in frame.columns:
                raise DataError(
                    f"{source}: no column '{column}' (data.messages_column); columns are {list(frame.columns)}"
                )
            rows = []
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            for number, messages in enumerate(frame[column], start=1):
                # Parquet: arrays
                messages = list(messages) if isinstance(messages, (list, tuple, np.ndarray)) else messages
                if (
                    not isinstance(messages, list)
                    or not messages
                    or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages)
                ):
                    raise DataError(f"{source}: row {number}: '{column}' must be a list of {{role, content}} messages")
                if messages[-1]["role"] != "assistant":
                    raise DataError(
                        f"{source}: row {number}: the last message must be the assistant's reply (the response)"
                    )
                turns = [dict(m) for m in messages[:-1]]
                rows.append(
                    (
                        (system if not turns or turns[0]["role"] != "system" else []) + turns,
                        str(messages[-1]["content"]),
                        messages,
                    )
                )
            return rows, 0
        prompt = find_column(frame, prompt_col, PROMPT_COLUMNS, "prompt", source, CHAT_HINT)
        response = find_column(frame, response_col, RESPONSE_COLUMNS, "response", source, CHAT_HINT)
        rows = []
        for p, r in zip(frame[prompt], frame[response]):
            if pd.isna(p) or pd.isna(r) or not str(p).strip() or not str(r).strip():
                continue
            prompt_given = str(p).strip()
            rows.append(
                (prompt_messages(prompt_given, self.system_prompt, self.prompt_template), str(r).strip(), prompt_given)
            )
        if len(rows) < len(frame):
            log.warning(
                "%s: dropped %d of %d rows with an empty prompt or response",
                source,
                len(frame) - len(rows),
                len(frame),
            )
        return rows, len(frame) - len(rows)

    def _encode(
        self, conversations: list[tuple[list[dict], str]], counts: dict[str, int]
    ) -> tuple[list, list, list, list]:
        """Token ids and prompt lengths; a response that does not fit is cut, a prompt that leaves
        no room for one drops the row (both counted)."""
        prompts = [render_prompt(self.tokenizer, messages) for messages, _ in conversations]
        eos = self.tokenizer.eos_token or ""
        prompt_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        response_ids = self.tokenizer([r + eos for _, r in conversations], add_special_tokens=False)["input_ids"]
        ids, prompt_lens, kept_prompts, references = [], [], [], []
        for p, r, text, (_, reference) in zip(prompt_ids, response_ids, prompts, conversations):
            if len(p) >= self.max_length - 8:
                counts["dropped"] += 1
                continue
            if len(p) + len(r) > self.max_length:
                counts["truncated"] += 1
                r = r[: self.max_length - len(p)]
            ids.append(np.asarray(p + r, dtype=np.int32))
            prompt_lens.append(len(p))
            kept_prompts.append(text)
            references.append(reference)
        return ids, prompt_lens, kept_prompts, references

    def cache_key(self) -> tuple:
        return (
            self.column_names,
            self.system_prompt,
            self.prompt_template,
            self.max_length,
            self.train_rows,
            getattr(self.tokenizer, "chat_template", None),
            self.tokenizer.eos_token,
        )

    def load(self) -> dict:
        frames, cleaning = self._read()
        counts = {"truncated": 0, "dropped": 0}
        datasets, references, prompts, digest = {}, {}, {}, hashlib.sha256()
        for split, frame in frames.items():
            ids, prompt_lens, prompts[split], references[split] = self._encode(frame, counts)
            if not ids:
                raise DataError(
                    f"{self.path}: the {split} split has no row that fits data.max_length={self.max_length}; "
                    "raise max_length or shorten the prompts"
                )
            datasets[split] = TokenizedDataset(ids, prompt_lens)
            for row in ids:
                digest.update(row.tobytes())
            digest.update(split.encode())
        log.info(
            "data %s: %d rows cut to max_length=%d, %d dropped (prompt too long)",
            self.path,
            counts["truncated"],
            self.max_length,
            counts["dropped"],
        )
        return {
            "datasets": datasets,
            "references": references,
            "prompts": prompts,
            "fingerprint": digest.hexdigest()[:16],
            "length_report": counts,
            "cleaning": cleaning,
        }

    def read_raw(self, report) -> dict[str, pd.DataFrame]:
        """`prompt` / `response` frames, as the file gives them (chat `messages`: earlier turns as
        the prompt text, and the turns kept as they are, since the chat template needs them)."""
        splits = {}
        for split, file in split_files(self.path).items():
            rows, report.empty[split] = self._conversations(read_table(file), file)
            chat = bool(rows) and isinstance(rows[0][2], list)
            splits[split] = pd.DataFrame(
                {
                    "prompt": [
                        "\n".join(f"{m['role']}: {m['content']}" for m in given[:-1]) if chat else given
                        for _, _, given in rows
                    ],
                    "response": [response for _, response, _ in rows],
                    **({"messages": [given for _, _, given in rows]} if chat else {}),
                }
            )
        return splits

    def _read(self) -> tuple[dict[str, list], dict[str, int]]:
        """(prompt messages, response) rows per split, duplicates and leakage removed by prompt
        (the same code as `prepare`), missing splits carved out of train; and what was removed."""
        frames = {}
        for split, file in split_files(self.path).items():
            rows, _ = self._conversations(read_table(file), file)
            frames[split] = pd.DataFrame(
                {"prompt": [prompt_text(messages) for messages, _, _ in rows], "row": [row[:2] for row in rows]}
            )
        frames, report = clean_and_carve(
            frames, "prompt", self.val_fraction, self.test_fraction, self.seed, self.dedupe
        )
        splits = {split: frame.row.tolist() for split, frame in frames.items()}
        if self.train_rows and len(splits["train"]) > self.train_rows:  # start small: a seeded share of train
            keep = set(random.Random(self.seed + 2).sample(range(len(splits["train"])), self.train_rows))
            splits["train"] = [row for i, row in enumerate(splits["train"]) if i in keep]
        for split, rows in splits.items():
            if not rows:
                raise DataError(
                    f"{self.path}: the {split} split is empty; add rows or change data.val_fraction / "
                    "data.test_fraction"
                )
        return splits, report.counts()

    def use_as_test(self, path: Path, data: Mapping) -> None:
        """Every row of `path` (a file, or a folder's test file) becomes the test split; train and
        validation stay (`evaluate data.path=...`)."""
        file = split_files(path).get("test", path) if path.is_dir() else path
        rows, _ = self._conversations(read_table(file), file)
        ids, prompt_lens, prompts, references = self._encode([row[:2] for row in rows], {"truncated": 0, "dropped": 0})
        if not ids:
            raise DataError(f"{file}: no row fits data.max_length={self.max_length}")
        self.datasets = {**self.datasets, "test": TokenizedDataset(ids, prompt_lens)}
        self.prompts, self.references = {**self.prompts, "test": prompts}, {**self.references, "test": references}

    # -- what the module and the run folder need ---------------------------------------------
    def module_inputs(self) -> dict:
        return {"tokenizer": self.tokenizer}

    def inputs_from_run(self, folder: Path) -> dict:
        return {"tokenizer": self.tokenizer}

    def report(self) -> dict:
        return self.length_report

    def prompt_ids(self, prompts: list[str]) -> list[list[int]]:
        """Raw prompts as token ids, rendered as this data's rows are (system prompt, template, chat template)."""
        texts = [
            render_prompt(self.tokenizer, prompt_messages(p, self.system_prompt, self.prompt_template))
            for p in prompts
        ]
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def generation_rows(self, split: str, count: int) -> tuple[list[list[int]], list[str], list[str]]:
        """The first `count` rows of a split (a fixed subset): prompt ids, prompt text, reference response."""
        dataset = self.datasets[split]
        count = min(count, len(dataset))
        prompt_ids = [dataset.ids[i][: dataset.labels[i]].tolist() for i in range(count)]
        return prompt_ids, self.prompts[split][:count], self.references[split][:count]

    def save_artifacts(self, folder: Path) -> None:
        rows = {split: len(ds) for split, ds in self.datasets.items()}
        (Path(folder) / "data_report.json").write_text(
            json.dumps({**rows, **self.length_report, "max_length": self.max_length}, indent=2)
        )

    # -- batches --------------------------------------------------------------------------------
    def loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        items = list(range(len(dataset)))
        if shuffle and self.packing:
            items = pack(dataset, self.max_length, self.seed)
        lengths = (
            [sum(len(dataset.ids[i]) for i in group) for group in items]
            if shuffle and self.packing
            else [len(r) for r in dataset.ids]
        )
        sampler = LengthGroupedBatchSampler(
            lengths,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            epoch=self.trained_epoch,
        )
        source = _Packs(dataset, items) if shuffle and self.packing else dataset
        collate = packed_collate if shuffle and self.packing else padded_collate
        return DataLoader(
            source,
            batch_sampler=sampler,
            collate_fn=collate(self.tokenizer.pad_token_id or 0, self.pad_to_multiple_of),
            generator=self.loader_generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


def prompt_messages(prompt: str, system_prompt: str | None, template: str) -> list[dict]:
    """A plain prompt as chat messages: the task's system prompt, then the templated user turn."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": template.format(prompt=prompt)}]


def prompt_text(messages: list[dict]) -> str:
    """What duplicates and leakage are judged on: the turns before the response, without the
    system prompt every row shares."""
    return "\n".join(m["content"] for m in messages if m["role"] != "system")


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text the model sees: the tokenizer's chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def pack(dataset: TokenizedDataset, max_length: int, seed: int) -> list[list[int]]:
    """Examples in a seeded order, greedily joined into packs of at most `max_length` tokens."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    packs, current, size = [], [], 0
    for i in order:
        length = len(dataset.ids[i])
        if current and size + length > max_length:
            packs.append(current)
            current, size = [], 0
        current.append(i)
        size += length
    return packs + ([current] if current else [])


class _Packs(torch.utils.data.Dataset):
    def __init__(self, dataset: TokenizedDataset, packs: list[list[int]]):
        self.dataset, self.packs = dataset, packs

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> list[tuple]:
        return [self.dataset[i] for i in self.packs[index]]


def _labels(ids: np.ndarray, prompt_len: int) -> torch.Tensor:
    labels = torch.as_tensor(ids, dtype=torch.long).clone()
    labels[:prompt_len] = -100  # the loss is on the response only
    return labels


def _width(longest: int, multiple: int) -> int:
    """Batch width rounded up to `multiple`: a handful of distinct shapes instead of one per batch,
    so per-shape kernel caches (oneDNN's on CPU, ~20 MB per shape for SmolLM2 in bf16) stop growing."""
    return -(-longest // multiple) * multiple


def padded_collate(pad_id: int, multiple: int = 1):
    def collate(rows: list[tuple]) -> dict[str, torch.Tensor]:
        width = _width(max(len(ids) for ids, _ in rows), multiple)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, prompt_len) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            labels[r, : len(ids)] = _labels(ids, prompt_len)
            mask[r, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    return collate


def packed_collate(pad_id: int, multiple: int = 1):
    """Packs side by side: positions restart at every example and no attention mask is passed, so
    transformers builds a block-diagonal causal mask and examples never attend to each other."""

    def collate(packs: list[list[tuple]]) -> dict[str, torch.Tensor]:
        width = _width(max(sum(len(ids) for ids, _ in pack) for pack in packs), multiple)
        input_ids = torch.full((len(packs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(packs), width), -100, dtype=torch.long)
        positions = torch.zeros((len(packs), width), dtype=torch.long)
        for r, pack in enumerate(packs):
            start = 0
            for ids, prompt_len in pack:
                end = start + len(ids)
                input_ids[r, start:end] = torch.as_tensor(ids, dtype=torch.long)
                labels[r, start:end] = _labels(ids, prompt_len)
                positions[r, start:end] = torch.arange(len(ids))
                start = end
            positions[r, start:] = torch.arange(width - start)  # padding: a sequence of its own, never in the loss
        return {"input_ids": input_ids, "position_ids": positions, "labels": labels}

    return collate
