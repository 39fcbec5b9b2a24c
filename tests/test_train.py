import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from safetensors.torch import load_file

from domaintune.errors import UserError
from domaintune.runs import build_module
from domaintune.train import train
from helpers import TINY, cli, phrase, read_wandb, the_run


def test_run_writes_a_complete_run_folder(tiny_run):
    run, _ = tiny_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "legal" and metrics["best"]["metric"] == "val/macro_f1"
    history = [row["val/macro_f1"] for row in metrics["history"]]
    assert len(history) == metrics["epochs_run"] == 3
    assert metrics["best"]["value"] == max(history)
    assert metrics["best"]["epoch"] == history.index(max(history))
    assert set(metrics["test"]) == {"test/loss", "test/acc", "test/macro_f1"}
    labels = json.loads((run / "label_map.json").read_text())
    assert set(metrics["per_class"]) == set(labels) and len(labels) == 7
    assert sum(c["support"] for c in metrics["per_class"].values()) == metrics["data"]["test_rows"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert load_file(run / "head.safetensors")["1.weight"].shape == (7, 32)
    assert (run / "learning_curve.png").stat().st_size > 1000
    assert "task_name: legal" in (run / "config.yaml").read_text()
    assert not (run / "checkpoints").exists()  # the safetensors replace the Lightning checkpoint


@pytest.mark.parametrize("test", ["true", "false"])
def test_saved_weights_are_the_best_checkpoint_not_the_last_epoch(make_cfg, test):
    """optimized_metric=val/loss with no mode: the lowest validation loss is best (its declared
    direction). At these rates the loss goes down and up again (epoch 4 is lowest of 6), so the
    best epoch is not the last; the saved weights must reproduce that epoch's score."""
    cfg = make_cfg(
        *TINY,
        f"test={test}",
        "peft=none",
        "module.head_init=random",
        "module.lr=0.01",
        "module.head_lr=0.1",
        "module.warmup_ratio=0",
        "module.schedule=constant",
        "trainer.max_epochs=6",
        "trainer.limit_train_batches=1.0",
        "trainer.limit_val_batches=1.0",
        "callbacks.early_stopping.patience=10",
        "optimized_metric=val/loss",
    )
    train(cfg)
    run = Path(cfg.paths.run_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [row["val/loss"] for row in metrics["history"]]
    assert metrics["mode"] == "min" and cfg.callbacks.best_weights.mode == "min"
    assert metrics["best"]["value"] == min(losses) and losses.index(min(losses)) < len(losses) - 1
    # Rebuild the module from the saved encoder + head and re-validate: it must score the best epoch.
    backbone = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    datamodule.setup()
    module = build_module(cfg, backbone, datamodule.module_inputs())
    from transformers import AutoModel

    module.encoder = AutoModel.from_pretrained(run / "encoder")
    module.head.load_state_dict(load_file(run / "head.safetensors"))
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    (result,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert result["val/loss"] == pytest.approx(metrics["best"]["value"], abs=1e-4)


@pytest.mark.parametrize("peft", ["none", "ia3"])
def test_other_peft_methods_train(make_cfg, peft):
    cfg = make_cfg(*TINY, f"peft={peft}")
    assert train(cfg) is not None
    folder = "encoder" if peft == "none" else "adapter"
    assert any((Path(cfg.paths.run_dir) / folder).glob("*.safetensors"))


# Learning rates too small to change a prediction (lr must be > 0): the model stays as it started.
FROZEN = ["module.lr=1e-12", "module.head_lr=1e-12"]


@pytest.mark.parametrize("task", ["support", "legal"])
def test_probe_head_init_starts_from_the_probe_chosen_on_validation(make_cfg, task):
    cfg = make_cfg(*TINY, f"task={task}", "module.head_init=probe", *FROZEN, "trainer.max_epochs=1")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    baseline = metrics["baseline"]
    # With nothing trained after the probe, the fine-tuned head *is* the standardized probe: same validation scores.
    assert baseline["head_init"]["val/acc"] == pytest.approx(metrics["history"][0]["val/acc"], abs=1e-4)
    assert baseline["head_init"]["val/macro_f1"] == pytest.approx(metrics["history"][0]["val/macro_f1"], abs=1e-4)
    assert baseline["val/acc"] > 1.5 / 7  # better than chance even on a random tiny encoder
    # the base model's probe is the best of the grid on validation, by the task's metric
    key = cfg.optimized_metric
    assert len(baseline["grid"]) == 14 and baseline[key] == max(row[key] for row in baseline["grid"])
    assert {"features": baseline["features"], "C": baseline["C"], key: baseline[key]} in baseline["grid"]


def test_random_head_init_is_still_judged_against_the_probe(make_cfg):
    cfg = make_cfg(*TINY, "module.head_init=random")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    assert "head_init" not in metrics["baseline"] and metrics["verdict"]["test_rows"] == metrics["data"]["test_rows"]


def test_val_and_test_loss_are_plain_cross_entropy_and_the_objective_is_logged_apart(make_cfg):
    cfg = make_cfg(*TINY, "module.label_smoothing=0.3", "module.class_weights=balanced", "trainer.max_epochs=1")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    first = metrics["history"][0]
    assert {"train/objective", "train/loss", "val/loss"} <= set(first)
    # smoothing and weights: another number
    assert first["train/objective"] != pytest.approx(first["train/loss"], abs=1e-3)
    rows = metrics["verdict"]["metrics"]["loss"]
    assert rows["fine_tuned"] == pytest.approx(metrics["test"]["test/loss"], abs=1e-4)  # mean of per-row plain CE


def test_leaked_and_duplicate_rows_are_removed_before_training_and_reported(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train_rows = [{"text": phrase(i), "label": f"l{i % 3}"} for i in range(90)]
    val = [{"text": phrase(200 + i), "label": f"l{i % 3}"} for i in range(12)] + train_rows[:3]  # 3 exact copies
    test = [{"text": phrase(300 + i), "label": f"l{i % 3}"} for i in range(12)]
    test += [
        {"text": row["text"].upper() + "!", "label": row["label"]} for row in train_rows[3:5]
    ]  # 2 normalized copies
    for name, rows in (("train", train_rows + train_rows[:4]), ("val", val), ("test", test)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("train", *TINY, f"data.path={folder}", env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "o")})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((the_run(tmp_path / "o") / "metrics.json").read_text())["data"]
    assert data["removed"] == {
        "empty": 0,
        "exact_duplicates": 4,
        "near_duplicates": 0,
        "leaked": 5,
        "conflicting_labels": 0,
    }
    assert (data["train_rows"], data["val_rows"], data["test_rows"]) == (90, 12, 12)
    assert "data: removed 4 exact duplicates, 5 leaked before training" in result.stdout
    kept = cli(
        "train", *TINY, f"data.path={folder}", "data.dedupe=false", env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path / "k")}
    )
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert json.loads((the_run(tmp_path / "k") / "metrics.json").read_text())["data"]["test_rows"] == 14


def test_unknown_optimized_metric_fails_after_first_validation(make_cfg):
    with pytest.raises(UserError, match=r"optimized_metric 'val/nope' is not logged.*val/acc, val/loss, val/macro_f1"):
        train(make_cfg(*TINY, "optimized_metric=val/nope", "mode=max"))  # a mode given: nothing to check before


def test_finished_run_folder_is_never_overwritten(make_cfg):
    cfg = make_cfg(*TINY)
    train(cfg)
    before = (Path(cfg.paths.run_dir) / "metrics.json").read_text()
    with pytest.raises(UserError, match="already holds a finished run"):
        train(cfg)
    assert (Path(cfg.paths.run_dir) / "metrics.json").read_text() == before


def test_wandb_offline_run_holds_config_and_metrics(tiny_run):
    run, _ = tiny_run
    record = read_wandb(run)
    assert record["state"] == "finished" and record["exit_code"] == 0
    assert record["project"] == "domaintune" and record["tags"] == ["legal"]
    assert record["config"]["task_name"] == "legal"
    assert record["config"]["data"]["max_length"] == 256 and record["config"]["data_fingerprint"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert record["summary"]["test/acc"] == pytest.approx(metrics["test"]["test/acc"], abs=1e-5)
    assert record["summary"]["best/value"] == pytest.approx(metrics["best"]["value"], abs=1e-5)
    assert "val/macro_f1" in record["summary"]


def test_failed_run_is_closed_in_wandb_with_a_failure_exit_code(make_cfg):
    cfg = make_cfg("model=tiny", "trainer=debug", "logger=wandb", "optimized_metric=val/nope", "mode=max")
    with pytest.raises(UserError):
        train(cfg)
    record = read_wandb(Path(cfg.paths.run_dir))
    assert record["exit_code"] == 1 and record["state"] == "failed"


def test_early_stopping_on_a_flat_validation_metric(make_cfg):
    cfg = make_cfg(*TINY, *FROZEN, "trainer.max_epochs=6", "callbacks.early_stopping.patience=1")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stopped_early"] is True


def test_trials_in_one_process_fit_the_probe_once(make_cfg, tmp_path, monkeypatch):
    from omegaconf import open_dict

    from domaintune.modules import sequence_classification as sc
    from domaintune.modules import shared

    monkeypatch.setattr(shared, "_PROBES", {})
    calls = []
    original = sc.SequenceClassificationModule.fit_probe
    monkeypatch.setattr(
        sc.SequenceClassificationModule, "fit_probe", lambda self, dm: calls.append(1) or original(self, dm)
    )
    scores = []
    for n, lr in enumerate(["1e-3", "1e-4"]):
        cfg = make_cfg(*TINY, f"module.lr={lr}")
        with open_dict(cfg):
            cfg.paths.run_dir = str(tmp_path / f"trial-{n}")
        Path(cfg.paths.run_dir).mkdir()
        train(cfg)
        scores.append(json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())["baseline"])
    assert len(calls) == 1 and scores[0] == scores[1]
