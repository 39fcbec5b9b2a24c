"""Weights & Biases, the run tracker: which of a run's loggers are W&B's, and closing the W&B run
with the run's real outcome (complete, pruned or failed) and its final summary."""

from __future__ import annotations

from contextlib import contextmanager


def wandb_logger(**settings):
    """Lightning's WandbLogger (conf/logger/wandb.yaml) without the `anonymous` argument it always
    hands to wandb.init: W&B answers it with "The anonymous setting has no effect" in every run."""
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(**settings)
    if logger._wandb_init.get("anonymous") is None:
        del logger._wandb_init["anonymous"]
    return logger


def wandb_loggers(loggers) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def continue_run(cfg, run_dir) -> None:
    """Resuming in the same folder: log into the W&B run that folder already holds (its id,
    read from W&B's `latest-run` link), so the curves continue in one run."""
    from pathlib import Path

    from omegaconf import open_dict

    node = (cfg.get("logger") or {}).get("wandb")
    latest = Path(run_dir) / "wandb" / "latest-run"
    if node is None or not latest.exists():
        return
    with open_dict(node):
        node.id = latest.resolve().name.rsplit("-", 1)[-1]  # offline-run-<date>_<time>-<id>
        node.resume = "allow"


def record_outcome(cfg, group: str, job_type: str, folder, summary: dict) -> None:
    """What many runs add up to, as a W&B run of its own when the runs log to W&B, in their
    group, files in `folder`: a sweep's best trial, its test and whether the search paid
    (job_type `sweep`); a learning curve's points and its sentence (`learning_curve`)."""
    node = (cfg.get("logger") or {}).get("wandb")
    if node is None or not summary:
        return
    import wandb

    run = wandb.init(
        project=node.project, group=group, job_type=job_type, name=job_type, dir=str(folder), mode=node.mode
    )
    run.summary.update(summary)
    run.finish()


def _finish(loggers, exit_code: int, summary: dict) -> None:
    found = wandb_loggers(loggers)
    for lg in found:
        lg.experiment.summary.update(summary)
    if found:
        import wandb

        wandb.finish(exit_code=exit_code)


@contextmanager
def tracked(loggers):
    """Yields a dict the caller fills with the run's final summary. On the way out the W&B run is
    closed: `complete` with that summary; or, on an exception, the exception's own `outcome` (a
    sweep's pruned trial says `pruned`, exit code 0) or `failed` with exit code 1."""
    summary: dict = {}
    try:
        yield summary
    except BaseException as error:
        outcome = getattr(error, "outcome", "failed")
        _finish(loggers, 0 if outcome != "failed" else 1, {"outcome": outcome})
        raise
    _finish(loggers, 0, {"outcome": "complete", **summary})
