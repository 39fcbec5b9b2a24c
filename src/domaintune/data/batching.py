"""Length-grouped batches and dynamic padding: most of a transformer's CPU time is spent on pad
tokens otherwise (random batches padded to their longest row compute 2.9x the real tokens on
BANKING77; batches grouped by length within windows of 50 batches, about 1.06x)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset, Sampler


class TokenizedDataset(Dataset):
    def __init__(self, ids: list, labels: list):
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple:
        return self.ids[index], self.labels[index]


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Training: shuffle, sort by length inside windows of `window` batches, shuffle the batches.
    Evaluation: sort everything by length. Under DDP each process takes every world-th batch."""

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        window: int = 50,
        epoch: Callable[[], int | None] | None = None,
    ):
        """`epoch`: the epoch being trained (the trainer's), so a resumed run shuffles epoch e as
        the uninterrupted run did; where it gives None, passes are counted from 0."""
        self.lengths, self.batch_size, self.shuffle, self.seed, self.window = (
            lengths,
            batch_size,
            shuffle,
            seed,
            window,
        )
        self.epoch, self.current_epoch = 0, epoch

    def _eval_rows(self, rank: int, world: int) -> list[int]:
        """Evaluation shards rows, not batches, so every process gets some even from a tiny split."""
        return sorted(range(len(self.lengths)), key=self.lengths.__getitem__)[rank::world]

    def _train_batches(self) -> list[list[int]]:
        n, size = len(self.lengths), self.batch_size
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator).tolist()
        span = size * self.window
        order = [i for s in range(0, n, span) for i in sorted(order[s : s + span], key=self.lengths.__getitem__)]
        batches = [order[i : i + size] for i in range(0, n, size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self):
        rank, world = _world()
        if not self.shuffle:
            rows = self._eval_rows(rank, world)
            yield from (rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size))
            return
        if self.current_epoch is not None and (epoch := self.current_epoch()) is not None:
            self.epoch = epoch
        batches = self._train_batches()
        self.epoch += 1
        # every process must take the same number of optimizer steps
        yield from batches[: len(batches) - len(batches) % world][rank::world]

    def __len__(self) -> int:
        rank, world = _world()
        if not self.shuffle:
            return -(-len(range(rank, len(self.lengths), world)) // self.batch_size)
        return -(-len(self.lengths) // self.batch_size) // world


def pad_collate(pad_id: int):
    """Collate (ids, target) pairs into a batch padded to its own longest row."""

    def collate(rows: list[tuple]) -> dict[str, torch.Tensor]:
        longest = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, (ids, _) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
        labels = torch.tensor([label for _, label in rows])  # class ids (int64), or 0/1 floats per label
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    return collate
