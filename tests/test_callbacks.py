"""The callbacks that decide what a run keeps: the best epoch's weights (in memory, carried
through a resume), how often the resume checkpoint is written, and freed memory kept for the
next step while fitting."""

import ctypes
import math
import resource
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from domaintune import allocator, callbacks, outputs
from domaintune.callbacks import BestWeights, LastCheckpoint, ReuseFreedMemory


class Weights(torch.nn.Module):
    """A module as BestWeights sees one: `trainable_state` leaves the frozen part out."""

    def __init__(self):
        super().__init__()
        self.trained, self.frozen = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).requires_grad_(False)

    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("frozen.")}


def validate(best: BestWeights, module: Weights, epoch: int, score: float) -> None:
    with torch.no_grad():
        module.trained.weight.fill_(epoch)  # each epoch's weights say which epoch they are
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val/acc": score})
    best.on_validation_end(trainer, module)


def test_the_best_weights_are_the_strictly_best_epoch_and_survive_a_resume(tmp_path):
    module, best = Weights(), BestWeights(monitor="val/acc", mode="max")
    sanity = SimpleNamespace(sanity_checking=True, current_epoch=0, callback_metrics={"val/acc": 0.9})
    best.on_validation_end(sanity, module)  # the sanity check chooses nothing
    assert best.weights is None
    scores = [0.5, 0.7, math.nan, 0.6, 0.7]  # NaN and a tie do not replace epoch 1
    for epoch, score in enumerate(scores):
        validate(best, module, epoch, score)
    assert (best.epoch, best.score) == (1, 0.7) and set(best.weights) == {"trained.weight", "trained.bias"}
    history = [{"epoch": epoch, "val/acc": score} for epoch, score in enumerate(scores)]
    assert outputs.best_epoch(history, "val/acc", "max")["epoch"] == best.epoch  # metrics.json's best: the same

    torch.save({"best": best.state_dict()}, tmp_path / "last.ckpt")  # as last.ckpt carries it
    resumed = BestWeights(monitor="val/acc", mode="max")
    resumed.load_state_dict(torch.load(tmp_path / "last.ckpt", weights_only=True)["best"])
    validate(resumed, module, 5, 0.65)  # worse than the epoch before the interruption
    resumed.restore(module)
    assert resumed.epoch == 1 and bool((module.trained.weight == 1).all())


def test_a_loss_is_best_when_lowest_and_the_first_epoch_counts_whatever_its_score():
    module, best = Weights(), BestWeights(monitor="val/acc", mode="min")
    scores = [math.nan, 0.4, 0.3, 0.35]
    for epoch, score in enumerate(scores):
        validate(best, module, epoch, score)
        if epoch == 0:
            assert best.epoch == 0  # NaN, but nothing better yet
    assert best.epoch == 2
    history = [{"epoch": epoch, "val/acc": score} for epoch, score in enumerate(scores)]
    assert outputs.best_epoch(history, "val/acc", "min")["epoch"] == 2


def test_the_resume_checkpoint_waits_every_s_seconds_of_training_and_skips_the_last_epoch(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock[0])
    written = []
    trainer = SimpleNamespace(
        should_stop=False,
        max_epochs=6,
        is_global_zero=True,
        strategy=SimpleNamespace(barrier=lambda: None),
        save_checkpoint=lambda path, weights_only: (path.write_text("state"), written.append(trainer.current_epoch)),
    )
    last = LastCheckpoint(dirpath=str(tmp_path), every_s=100)
    last.on_train_start(trainer, None)
    for epoch in range(6):  # 40 s an epoch
        clock[0] += 40
        trainer.current_epoch = epoch
        last.on_train_epoch_end(trainer, None)
    assert written == [2]  # 120 s in; by epoch 4 only 80 s more, and epoch 5 is the last
    assert (tmp_path / "last.ckpt").read_text() == "state" and not list(tmp_path.glob(".*partial"))

    every = LastCheckpoint(dirpath=str(tmp_path), every_s=0)
    written.clear()
    for epoch in range(6):
        trainer.current_epoch = epoch
        every.on_train_epoch_end(trainer, None)
    assert written == [0, 1, 2, 3, 4]  # every epoch but the last


def faults_of_large_blocks() -> int:
    """Page faults of 5 blocks of 64 MiB, each allocated, written and freed, as a training step
    does with a large gradient."""
    libc = allocator._glibc()
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    faults = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(64 << 20)
        libc.memset(block, 1, 64 << 20)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sum(faults[1:])  # the first may grow the heap


@pytest.mark.skipif(allocator._glibc() is None, reason="the allocator setting is glibc's")
def test_while_fitting_large_blocks_are_reused_instead_of_faulted_in_again(make_cfg):
    reuse = instantiate(make_cfg().callbacks.reuse_freed_memory)  # on by default
    assert isinstance(reuse, ReuseFreedMemory)
    unmapped = faults_of_large_blocks()  # glibc's default: every 64 MiB block is a fresh mapping
    assert unmapped > 5 * 8000
    reuse.on_fit_start(None, None)
    try:
        assert faults_of_large_blocks() < unmapped / 20
    finally:
        reuse.on_fit_end(None, None)
    assert faults_of_large_blocks() > unmapped / 2  # after the fit, glibc's defaults again
