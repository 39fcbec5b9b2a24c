"""Keep a model current: continue from an earlier run (`init_from`) and check that it did not
forget what it knew, on the earlier run's own test set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domaintune.errors import DataError, UserError
from domaintune.runfolder import RunFolder

log = logging.getLogger(__name__)


@dataclass
class EarlierRun:
    """The run `init_from` continues, checked: its folder, metrics, and its own data with the test
    split set up (the forgetting check tests on it)."""

    folder: Path
    metrics: dict
    datamodule: object


def check_earlier_run(cfg, folder: Path, datamodule) -> EarlierRun:
    """The earlier run must be finished, on the same base model and adapter settings, with data
    its kind can continue on (a classifier: the same labels), and its own data unchanged (the
    forgetting check rebuilds its test set from it); continuing runs on one device."""
    config, metrics = RunFolder(folder).read("init_from")
    if "ddp" in str(cfg.trainer.get("strategy")):
        raise UserError("init_from runs on one device: drop trainer=ddp")
    from omegaconf import OmegaConf

    earlier = OmegaConf.create(config)
    for key in ("model", "peft"):
        then, now = (
            OmegaConf.to_container(c, resolve=True) if c is not None else {} for c in (earlier.get(key), cfg.get(key))
        )
        if then != now:
            raise UserError(
                f"init_from={folder}: that run used another {key} setting "
                f"({then.get('_target_') or then.get('name_or_path')}); "
                f"continue it with the same {key} config"
            )
    datamodule.check_continues(folder)
    from hydra.utils import instantiate

    earlier_data = instantiate(earlier.data, _partial_=True)(tokenizer=datamodule.tokenizer)
    earlier_data.setup("test")
    if earlier_data.fingerprint != metrics["data"]["fingerprint"]:
        raise DataError(
            f"init_from={folder}: {earlier_data.path} is no longer the data that run trained and tested on "
            f"(fingerprint {earlier_data.fingerprint}, the run's {metrics['data']['fingerprint']}), so its test set "
            "cannot be rebuilt to check forgetting; restore that data, or train without init_from"
        )
    return EarlierRun(folder, metrics, earlier_data)


def update_verdicts(cfg, earlier_run: EarlierRun, on_new_rows: dict, on_earlier_rows: dict, new_data) -> dict:
    """Did the update pay, and did it forget? The earlier run's own model tested on the rows the
    updated one was: the new data's test rows (as the run's test stage had them) and the earlier
    run's test rows; on each, paired bootstrap intervals and a sentence, first metric first."""
    from domaintune import verdict
    from domaintune.runs import load_run, test_trainer

    if not on_new_rows or not on_earlier_rows:  # a kind without per-row scores
        return {}
    previous = load_run(earlier_run.folder, key="init_from").module
    out = {}
    for name, where, data, updated, limit in (
        ("new_test_rows", "the new test rows", new_data, on_new_rows, cfg.trainer.get("limit_test_batches")),
        ("earlier_test_rows", "the earlier run's test rows", earlier_run.datamodule, on_earlier_rows, None),
    ):
        trainer = test_trainer(cfg, enable_progress_bar=False, limit_test_batches=limit)
        trainer.test(previous, datamodule=data, verbose=False)
        first = cfg.optimized_metric.removeprefix("val/")
        order = sorted(updated, key=lambda metric: metric != first)
        compared = [verdict.compare_scored(metric, updated[metric], previous.scored[metric]) for metric in order]
        out[name] = {
            "line": verdict.update_line(compared[0], where),
            "method": verdict.METHOD,
            "metrics": {result["metric"]: result for result in compared},
        }
    return out


def regression_check(cfg, module, earlier_run: EarlierRun, train_set, new_data) -> dict:
    """Test the updated model on the earlier run's test set and compare with that run's own score,
    and both models on both test sets (`verdicts`). Earlier test rows that the new `train_set`
    holds (the same token ids) are counted: the model has seen them, so the check is optimistic
    by that much."""
    from domaintune.runs import test_trainer

    earlier, datamodule = earlier_run.metrics, earlier_run.datamodule
    key = "test/" + cfg.optimized_metric.removeprefix("val/")
    if key not in earlier.get("test", {}):
        return {"skipped": f"the earlier run has no {key}"}
    on_new_rows = dict(module.scored)  # the run's own test stage: the new data's test rows
    now = test_trainer(cfg, enable_progress_bar=False).test(module, datamodule=datamodule, verbose=False)[0][key]
    on_earlier_rows = dict(module.scored)
    before = earlier["test"][key]
    drop = round(float((before - now) if cfg.mode == "max" else (now - before)), 6)  # float noise is not forgetting
    seen = {np.asarray(row).tobytes() for row in train_set.ids}
    leaked = sum(np.asarray(row).tobytes() in seen for row in datamodule.datasets["test"].ids)
    if leaked:
        log.warning(
            "init_from: %d of the earlier run's %d test rows are in the new train data; the forgetting check is "
            "optimistic on them",
            leaked,
            len(datamodule.datasets["test"]),
        )
    return {
        "verdicts": update_verdicts(cfg, earlier_run, on_new_rows, on_earlier_rows, new_data),
        "metric": key,
        "data": str(datamodule.path),
        "before": before,
        "after": round(float(now), 6),
        "drop": drop,
        "tolerance": cfg.regression_tolerance,
        "regressed": bool(drop > cfg.regression_tolerance),
        "test_rows": len(datamodule.datasets["test"]),
        "test_rows_in_new_train": leaked,
    }
