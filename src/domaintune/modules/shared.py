"""Pieces every built-in module kind uses."""

from __future__ import annotations

import numpy as np
import torch


def gather_rows(module, values: list[torch.Tensor]) -> np.ndarray:
    """Per-row values a process collected over its shard of an evaluation split, from every
    process (DDP), as one array: the test verdict needs all the rows. Shards differ in length by
    at most a row, so each is padded to the longest for `all_gather`, and the padding dropped.
    A row may be a vector (a multi-label row's probabilities)."""
    local = torch.cat(values).detach().float().cpu() if values else torch.zeros(0)
    if module.trainer.world_size == 1:
        return local.numpy()
    sizes = module.all_gather(torch.tensor(len(local), device=module.device)).view(-1).tolist()
    padded = torch.full((max(sizes), *local.shape[1:]), float("nan"), device=module.device)
    padded[: len(local)] = local.to(module.device)
    gathered = module.all_gather(padded).cpu()
    return torch.cat([gathered[rank, :size] for rank, size in enumerate(sizes)]).numpy()
