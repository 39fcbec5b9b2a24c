"""What the console shows: our log lines, Lightning's progress bar, and warnings a user can act
on. Deprecation notices raised inside the libraries we call (only their authors can act on
them) and advertisements are filtered here, each by its message; no warning is muted by
category."""

from __future__ import annotations

import logging
import warnings

LIBRARY_NOISE = (  # warnings.filterwarnings patterns (matched at the start of the message)
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # torch, about Lightning's pytree helper
    r"`\w+` is deprecated and will be removed in v6",  # transformers renames that peft and Lightning call
    # Optuna's notes on the experimental heartbeat the sweeper chose to use: only we could act on them
    r"Argument ``heartbeat_interval`` is an experimental feature",
    r"optuna\.storages\._heartbeat\.fail_stale_trials is experimental",
    r"Heartbeat of storage is supposed to be used with Study\.optimize",
    # Lightning's hint on any machine with SLURM installed; domaintune sends trials to SLURM through
    # submitit (hydra/launcher=submitit_slurm), which starts each job as SLURM expects
    r"The `srun` command is available on your system but is not used",
)
ADVERTISEMENTS = ("litlogger",)  # Lightning's "Tip: ... try installing litlogger"


class _NoAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(word in message for word in ADVERTISEMENTS)


def no_weight_loading_bar(factory, args, kwargs):
    """A transformers tqdm hook that drops its "Loading weights" bar, a blink on every load from
    disk; download bars and every other bar pass."""
    if kwargs.get("desc") == "Loading weights":
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def quiet() -> None:
    """Filter library noise for this process; call it once logging is set up (Hydra's handlers)."""
    for pattern in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    loggers = [logging.getLogger(), logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, _NoAdvertisements) for f in handler.filters):
            handler.addFilter(_NoAdvertisements())
    # A logger's filters see only what is logged to it, not what its children propagate: the
    # loggers that emit Lightning's notices get the filter themselves, whatever handler (Hydra's
    # per-job ones included) prints them.
    loggers += [logging.getLogger(f"lightning.{part}.utilities.rank_zero") for part in ("pytorch", "fabric")]
    for lg in loggers:
        if not any(isinstance(f, _NoAdvertisements) for f in lg.filters):
            lg.addFilter(_NoAdvertisements())
